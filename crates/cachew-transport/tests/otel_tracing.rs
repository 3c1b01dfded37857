//! With a `tracing-opentelemetry` layer, the `traceparent` a request sends
//! is the current tracing span's: the request's `http.request` span, a
//! child of the caller's span. Its own binary (a global subscriber).

mod support;

use std::sync::{Arc, Mutex};

use cachew_transport::RequestBody;
use http::{Request, Response};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use support::{client, full, serve};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test]
async fn traceparent_is_the_current_tracing_span() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let server = serve({
        let seen = seen.clone();
        move |req: Request<hyper::body::Incoming>| {
            if let Some(tp) = req.headers().get("traceparent") {
                seen.lock().unwrap().push(tp.to_str().unwrap().to_string());
            }
            async { Response::new(full("ok")) }
        }
    })
    .await;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let client = client();
    let span = tracing::info_span!("restore");
    let trace_id = span.context().span().span_context().trace_id().to_string();
    let parent_id = span.context().span().span_context().span_id().to_string();
    let req = Request::get(server.url("/obj"))
        .body(RequestBody::empty())
        .unwrap();
    client.send(req).instrument(span).await.unwrap();

    let seen = seen.lock().unwrap();
    let tp = seen.first().expect("traceparent sent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[1], trace_id, "same trace as the caller's span");
    // The current span is the request's own span, a child of "restore".
    assert_ne!(parts[2], parent_id);
    assert_ne!(parts[2], "0000000000000000");
}

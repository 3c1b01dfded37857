//! OpenTelemetry context propagation (cargo feature `otel`; the test target
//! requires it, see Cargo.toml).

mod support;

use std::sync::{Arc, Mutex};

use cachew_transport::RequestBody;
use http::{Request, Response};
use opentelemetry::context::FutureExt;
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use support::{client, full, serve};

#[tokio::test]
async fn traceparent_of_the_current_context_reaches_the_server() {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let server = serve({
        let seen = seen.clone();
        move |req: Request<hyper::body::Incoming>| {
            let tp = req
                .headers()
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_string());
            seen.lock().unwrap().push(tp);
            async { Response::new(full("ok")) }
        }
    })
    .await;
    let client = client();
    let get = || {
        Request::get(server.url("/obj"))
            .body(RequestBody::empty())
            .unwrap()
    };

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer("cachew-transport-test");

    // Outside any span: nothing to propagate.
    client.send(get()).await.unwrap();

    // Inside an active span: its trace id travels as a W3C traceparent.
    let span = tracer.start("restore");
    let cx = opentelemetry::Context::current_with_span(span);
    let trace_id = cx.span().span_context().trace_id().to_string();
    let span_id = cx.span().span_context().span_id().to_string();
    client.send(get()).with_context(cx).await.unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], None);
    let tp = seen[1].as_deref().expect("traceparent header sent");
    // version-traceid-parentid-flags
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], trace_id);
    assert_eq!(parts[2], span_id);
}

//! The `http.request` span. Kept in its own test binary: tracing caches
//! callsite interest globally, and a concurrent test hitting the same
//! callsite without a subscriber could race the capture below.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cachew_transport::RequestBody;
use http::{Request, Response};
use support::{client, full, serve};

fn get(url: String) -> Request<RequestBody> {
    Request::get(url).body(RequestBody::empty()).unwrap()
}

mod capture {
    use super::*;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::Subscriber;
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::Layer;

    /// Fields recorded on `http.request` spans, by span id.
    #[derive(Clone, Default)]
    pub(super) struct Captured(pub(super) Arc<Mutex<HashMap<u64, HashMap<String, String>>>>);

    struct Visitor<'a>(&'a mut HashMap<String, String>);

    impl Visit for Visitor<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0
                .insert(field.name().to_string(), format!("{value:?}"));
        }
    }

    impl<S: Subscriber> Layer<S> for Captured {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
            if attrs.metadata().name() != "http.request" {
                return;
            }
            let mut map = self.0.lock().unwrap();
            let fields = map.entry(id.into_u64()).or_default();
            attrs.record(&mut Visitor(fields));
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
            let mut map = self.0.lock().unwrap();
            if let Some(fields) = map.get_mut(&id.into_u64()) {
                values.record(&mut Visitor(fields));
            }
        }
    }
}

#[tokio::test]
async fn each_request_gets_a_span_with_method_path_status_bytes_retries() {
    use tracing_subscriber::layer::SubscriberExt;

    let captured = capture::Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let hits = Arc::new(AtomicUsize::new(0));
    let server = serve({
        let hits = hits.clone();
        move |_req| {
            let n = hits.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Response::builder().status(503).body(full("")).unwrap()
                } else {
                    Response::new(full("twelve bytes"))
                }
            }
        }
    })
    .await;
    let resp = client()
        .send(get(server.url("/api/v1/object/default/k?secret=1")))
        .await
        .unwrap();
    assert_eq!(resp.into_body().bytes().await.unwrap().len(), 12);

    let spans = captured.0.lock().unwrap();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let fields = spans.values().next().unwrap();
    assert_eq!(fields["http.method"], "GET");
    assert_eq!(fields["url.path"], "/api/v1/object/default/k");
    assert_eq!(fields["http.status"], "200");
    assert_eq!(fields["bytes"], "12");
    assert_eq!(fields["retries"], "1");
    assert!(!fields.contains_key("error"));
}

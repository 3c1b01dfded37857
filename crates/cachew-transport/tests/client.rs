//! Behaviour of the client stack: headers, connection reuse, the raw
//! service, body helpers, tracing and secrecy.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cachew_transport::{Error, HttpClient, RequestBody};

/// The documented default `User-Agent`: `cachew-rs/<version>`.
const DEFAULT_USER_AGENT: &str = concat!("cachew-rs/", env!("CARGO_PKG_VERSION"));
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use support::{builder, client, full, serve};
use tokio::io::AsyncReadExt;
use tower::ServiceExt;

fn get(url: String) -> Request<RequestBody> {
    Request::get(url).body(RequestBody::empty()).unwrap()
}

/// A server that records the given request header of every request.
async fn header_recorder(name: &'static str) -> (support::Server, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = serve({
        let seen = seen.clone();
        move |req: Request<hyper::body::Incoming>| {
            let value = req
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            seen.lock().unwrap().push(value);
            async { Response::new(full("ok")) }
        }
    })
    .await;
    (server, seen)
}

#[tokio::test]
async fn user_agent_defaults_to_cachew_rs_version() {
    assert_eq!(
        DEFAULT_USER_AGENT,
        concat!("cachew-rs/", env!("CARGO_PKG_VERSION"))
    );
    let (server, seen) = header_recorder("user-agent").await;
    client().send(get(server.url("/"))).await.unwrap();
    let custom = builder().user_agent("ci-bot/2").build().unwrap();
    custom.send(get(server.url("/"))).await.unwrap();
    let mut own = get(server.url("/"));
    own.headers_mut()
        .insert("user-agent", HeaderValue::from_static("mine"));
    custom.send(own).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [DEFAULT_USER_AGENT, "ci-bot/2", "mine"]
    );
}

#[tokio::test]
async fn fixed_authorization_is_sent_on_every_request() {
    let (server, seen) = header_recorder("authorization").await;
    let client = builder().authorization("Bearer fixed").build().unwrap();
    for _ in 0..2 {
        client.send(get(server.url("/"))).await.unwrap();
    }
    assert_eq!(*seen.lock().unwrap(), ["Bearer fixed", "Bearer fixed"]);
}

#[tokio::test]
async fn header_fn_is_called_for_every_request_and_every_retry() {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = serve({
        let (hits, seen) = (hits.clone(), seen.clone());
        move |req: Request<hyper::body::Incoming>| {
            let auth = req.headers()["authorization"].to_str().unwrap().to_string();
            seen.lock().unwrap().push(auth);
            let n = hits.fetch_add(1, Ordering::SeqCst);
            async move {
                let status = if n == 0 { 503 } else { 200 };
                Response::builder().status(status).body(full("")).unwrap()
            }
        }
    })
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let client = builder()
        .authorization("Bearer fixed-loses")
        .header_fn({
            let calls = calls.clone();
            move || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let mut h = HeaderMap::new();
                h.insert(
                    "authorization",
                    HeaderValue::from_str(&format!("Bearer token-{n}")).unwrap(),
                );
                h
            }
        })
        .build()
        .unwrap();
    // First request: 503 (token-0), retried with a fresh token (token-1).
    let resp = client.send(get(server.url("/a"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    client.send(get(server.url("/b"))).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["Bearer token-0", "Bearer token-1", "Bearer token-2"]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let builder = builder()
        .authorization("Bearer hunter2")
        .header_fn(HeaderMap::new);
    let shown = format!("{builder:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    let client = builder.build().unwrap();
    let shown = format!("{client:?} {:?}", client.service());
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");

    // An invalid secret is rejected without echoing it.
    let err = HttpClient::builder()
        .authorization("Bearer bad\nsecret")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }));
    assert!(!format!("{err} {err:?}").contains("secret"), "{err:?}");
}

#[tokio::test]
async fn connections_are_reused() {
    let server = serve(|_req| async { Response::new(full(vec![7u8; 10_000])) }).await;
    let client = client();
    for _ in 0..5 {
        let resp = client.send(get(server.url("/obj"))).await.unwrap();
        assert_eq!(resp.into_body().bytes().await.unwrap().len(), 10_000);
    }
    // Clones share the pool.
    let clone = client.clone();
    clone.send(get(server.url("/obj"))).await.unwrap();
    assert_eq!(server.requests(), 6);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn raw_service_applies_the_same_stack() {
    let (server, seen) = header_recorder("authorization").await;
    let client = builder().authorization("Bearer svc").build().unwrap();
    let service = client.service();
    let resp = service
        .clone()
        .oneshot(get(server.url("/git/github.com/org/repo/snapshot.tar.zst")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.into_body().bytes().await.unwrap(), "ok");
    assert_eq!(*seen.lock().unwrap(), ["Bearer svc"]);
}

#[tokio::test]
async fn non_2xx_statuses_are_responses_not_errors() {
    let server = serve(|_req| async {
        Response::builder()
            .status(404)
            .body(full("not found"))
            .unwrap()
    })
    .await;
    let resp = client().send(get(server.url("/missing"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.into_body().bytes().await.unwrap(), "not found");
}

#[tokio::test]
async fn large_body_streams_through_async_read() {
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let server = serve({
        let data = Bytes::from(data.clone());
        move |_req| {
            let data = data.clone();
            async move { Response::new(full(data)) }
        }
    })
    .await;
    let resp = client().send(get(server.url("/big"))).await.unwrap();
    let mut reader = resp.into_body().into_async_read();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    assert_eq!(reader.get_ref().bytes_received(), data.len() as u64);
    assert!(out == data);
}

#[tokio::test]
async fn bytes_limited_rejects_oversized_bodies() {
    let server = serve(|_req| async { Response::new(full(vec![1u8; 2048])) }).await;
    let client = client();
    let resp = client.send(get(server.url("/x"))).await.unwrap();
    let err = resp.into_body().bytes_limited(1024).await.unwrap_err();
    assert!(
        matches!(err, Error::BodyTooLarge { limit: 1024 }),
        "{err:?}"
    );
    let resp = client.send(get(server.url("/x"))).await.unwrap();
    assert_eq!(
        resp.into_body().bytes_limited(2048).await.unwrap().len(),
        2048
    );
}

#[tokio::test]
async fn relative_and_unsupported_urls_are_invalid_requests() {
    let client = client();
    for url in ["/api/v1/stats", "ftp://127.0.0.1/x"] {
        let err = client.send(get(url.to_string())).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidRequest { .. }),
            "{url}: {err:?}"
        );
    }
}

#[tokio::test]
async fn idle_timeout_is_per_chunk_not_total() {
    // A body delivered in 6 chunks 100 ms apart takes longer than the 300 ms
    // idle timeout in total, but never stalls for that long.
    let server = serve(|_req| async {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        tokio::spawn(async move {
            for i in 0..6u8 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = tx.send(Bytes::from(vec![i; 10])).await;
            }
        });
        Response::new(http_body_util::BodyExt::boxed(ChannelBody(rx)))
    })
    .await;
    let started = std::time::Instant::now();
    let resp = client().send(get(server.url("/slow"))).await.unwrap();
    let body = resp.into_body().bytes().await.unwrap();
    assert_eq!(body.len(), 60);
    assert!(started.elapsed() > support::TEST_IDLE);
}

/// A server-side body fed by a channel, ending when the sender is dropped.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}

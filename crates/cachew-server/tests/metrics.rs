//! `GET /metrics` on the wire: the Prometheus text format, counters that
//! move with requests, the cache's figures from its statistics, registered
//! metrics, and the token rule (like `/api/v1/stats`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cachew_client::MemoryCache;
use cachew_server::{MetricKind, Right, RunningServer, Server, Tokens};
use cachew_transport::{HttpClient, RequestBody};
use http::{Method, Request, StatusCode};

const KEY: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

async fn call(
    server: &RunningServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &'static [u8],
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.url()));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req
        .body(RequestBody::full(Bytes::from_static(body)))
        .unwrap();
    let client = HttpClient::builder().max_retries(0).build().unwrap();
    let resp = client.send(req).await.unwrap();
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().bytes().await.unwrap();
    (status, kind, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the sample `series` (name and labels) in an exposition.
fn value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(server: &RunningServer, token: Option<&str>) -> String {
    let (status, kind, text) = call(server, Method::GET, "/metrics", token, b"").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        kind.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    text
}

#[tokio::test]
async fn counters_move_with_requests() {
    let seen = Arc::new(AtomicU64::new(0));
    let read = seen.clone();
    let server = Server::builder(Arc::new(MemoryCache::new(1 << 20)))
        .metric(
            "cachew_test_things_total",
            "Things the test counted.",
            MetricKind::Counter,
            move || read.load(Ordering::Relaxed),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let before = scrape(&server, None).await;
    assert!(
        before.contains("# TYPE cachew_requests_total counter"),
        "{before}"
    );
    assert!(before.contains("# TYPE cachew_objects gauge"), "{before}");
    assert_eq!(value(&before, "cachew_hits_total"), Some(0));
    assert_eq!(value(&before, "cachew_capacity_bytes"), Some(1 << 20));
    assert_eq!(value(&before, "cachew_test_things_total"), Some(0));

    let object = format!("/api/v1/object/ci/{KEY}");
    let missing = format!("/api/v1/object/ci/{}", "0".repeat(64));
    assert_eq!(
        call(&server, Method::POST, &object, None, b"twelve bytes")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, Method::GET, &object, None, b"").await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, Method::HEAD, &object, None, b"").await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, Method::GET, &missing, None, b"").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&server, Method::GET, "/nowhere", None, b"").await.0,
        StatusCode::NOT_FOUND
    );
    seen.store(3, Ordering::Relaxed);

    let after = scrape(&server, None).await;
    assert_eq!(value(&after, "cachew_hits_total"), Some(2), "{after}");
    assert_eq!(value(&after, "cachew_misses_total"), Some(1), "{after}");
    assert_eq!(
        value(&after, "cachew_received_bytes_total"),
        Some(12),
        "{after}"
    );
    // The 12-byte body, the 404s' messages, and the first scrape.
    let sent = value(&after, "cachew_sent_bytes_total").unwrap();
    assert!(sent >= 12 + before.len() as u64, "{after}");
    // The first scrape counts as a 200 too.
    assert_eq!(
        value(&after, "cachew_requests_total{code=\"200\"}"),
        Some(4),
        "{after}"
    );
    assert_eq!(
        value(&after, "cachew_requests_total{code=\"404\"}"),
        Some(2),
        "{after}"
    );
    assert_eq!(value(&after, "cachew_objects"), Some(1));
    assert_eq!(value(&after, "cachew_stored_bytes"), Some(12));
    assert_eq!(value(&after, "cachew_test_things_total"), Some(3));
    assert!(!after.contains(KEY), "no per-key labels");
    server.shutdown().await;
}

#[tokio::test]
async fn with_tokens_metrics_need_one() {
    let mut tokens = Tokens::new();
    tokens.add("t", "scraper", Right::Read, "nothing-*");
    let server = Server::builder(Arc::new(MemoryCache::new(0)))
        .tokens(tokens)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let (status, _, _) = call(&server, Method::GET, "/metrics", None, b"").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(&server, Method::GET, "/metrics", Some("wrong"), b"").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let text = scrape(&server, Some("scraper")).await;
    assert_eq!(
        value(&text, "cachew_requests_total{code=\"401\"}"),
        Some(2),
        "{text}"
    );
    let (status, _, _) = call(&server, Method::POST, "/metrics", Some("scraper"), b"").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    server.shutdown().await;
}

//! The reference server's HTTP behaviour, checked on the wire: status codes,
//! headers, error bodies, uploads that must not commit, policy and shutdown.

mod support;

use std::time::Duration;

use bytes::Bytes;
use cachew_server::{Rejection, RunningServer, Server};
use cachew_transport::{HttpClient, RequestBody};
use http::{HeaderMap, Method, Request, StatusCode};
use support::TestCache;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

async fn start(cache: &TestCache) -> RunningServer {
    Server::new(std::sync::Arc::new(cache.clone()))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn client() -> HttpClient {
    HttpClient::builder().max_retries(0).build().unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn call(
    server: &RunningServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(RequestBody::full(Bytes::from_static(body)))
        .unwrap();
    let resp = client().send(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().bytes().await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

fn object(ns: &str) -> String {
    format!("/api/v1/object/{ns}/{KEY}")
}

async fn put(server: &RunningServer, headers: &[(&str, &str)], body: &'static [u8]) {
    let a = call(server, Method::POST, &object("default"), headers, body).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert!(a.body.is_empty());
}

#[tokio::test]
async fn liveness_and_unknown_paths() {
    let cache = TestCache::new(false);
    let server = start(&cache).await;
    let a = call(&server, Method::GET, "/_liveness", &[], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    let a = call(&server, Method::GET, "/api/v1/nope", &[], b"").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    let a = call(&server, Method::PUT, &object("default"), &[], b"").await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.header("allow"), Some("GET, HEAD, POST, DELETE"));
    server.shutdown().await;
}

#[tokio::test]
async fn create_then_open_returns_stored_headers_and_protocol_headers() {
    let cache = TestCache::new(false);
    let server = start(&cache).await;
    put(
        &server,
        &[
            ("content-type", "application/x-test"),
            ("x-custom", "one"),
            ("etag", "\"v1\""),
            ("time-to-live", "1h30m"),
            ("authorization", "Bearer secret"),
            ("user-agent", "probe/1"),
        ],
        b"hello world",
    )
    .await;
    assert_eq!(
        cache.log.lock().unwrap().ttls,
        vec![Some(Duration::from_secs(5400))]
    );
    let a = call(&server, Method::GET, &object("default"), &[], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"hello world");
    assert_eq!(a.header("content-type"), Some("application/x-test"));
    assert_eq!(a.header("x-custom"), Some("one"));
    assert_eq!(a.header("etag"), Some("\"v1\""));
    assert_eq!(a.header("accept-ranges"), Some("bytes"));
    assert_eq!(a.header("content-length"), Some("11"));
    assert_eq!(
        a.header("last-modified"),
        Some("Tue, 14 Nov 2023 22:13:20 GMT")
    );
    // Transport headers and credentials are not stored.
    assert_eq!(a.header("time-to-live"), None);
    assert_eq!(a.header("authorization"), None);
    assert_ne!(a.header("user-agent"), Some("probe/1"));

    let h = call(&server, Method::HEAD, &object("default"), &[], b"").await;
    assert_eq!(h.status, StatusCode::OK);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), Some("11"));
    assert_eq!(h.header("etag"), Some("\"v1\""));
    assert_eq!(h.header("x-custom"), Some("one"));
    assert_eq!(h.header("accept-ranges"), Some("bytes"));
    assert!(h.header("last-modified").is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn ranges_and_conditions() {
    let cache = TestCache::new(false);
    let server = start(&cache).await;
    put(&server, &[("etag", "\"v1\"")], b"0123456789").await;
    let path = object("default");

    let a = call(&server, Method::GET, &path, &[("range", "bytes=2-4")], b"").await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&a.body[..], b"234");
    assert_eq!(a.header("content-range"), Some("bytes 2-4/10"));
    assert_eq!(a.header("content-length"), Some("3"));

    let a = call(&server, Method::GET, &path, &[("range", "bytes=-3")], b"").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::PARTIAL_CONTENT, &b"789"[..])
    );

    let a = call(&server, Method::GET, &path, &[("range", "bytes=10-")], b"").await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(a.header("content-range"), Some("bytes */10"));

    // Multi-range and malformed specs get the full body.
    for spec in ["bytes=0-1,4-5", "bytes=x-", "items=0-1"] {
        let a = call(&server, Method::GET, &path, &[("range", spec)], b"").await;
        assert_eq!(
            (a.status, &a.body[..]),
            (StatusCode::OK, &b"0123456789"[..]),
            "{spec}"
        );
    }

    // If-Range: matching tag → partial; stale, weak or unparseable → full.
    let a = call(
        &server,
        Method::GET,
        &path,
        &[("range", "bytes=0-0"), ("if-range", "\"v1\"")],
        b"",
    )
    .await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::PARTIAL_CONTENT, &b"0"[..])
    );
    for if_range in [
        "\"v0\"",
        "W/\"v1\"",
        "Tue, 14 Nov 2023 22:13:20 GMT",
        "garbage",
    ] {
        let a = call(
            &server,
            Method::GET,
            &path,
            &[("range", "bytes=0-0"), ("if-range", if_range)],
            b"",
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "If-Range: {if_range}");
        assert_eq!(a.body.len(), 10);
    }

    let a = call(
        &server,
        Method::GET,
        &path,
        &[("if-none-match", "\"v0\", \"v1\"")],
        b"",
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert!(a.body.is_empty());
    assert_eq!(a.header("etag"), Some("\"v1\""));

    let a = call(&server, Method::HEAD, &path, &[("if-none-match", "*")], b"").await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);

    for method in [Method::GET, Method::HEAD] {
        let a = call(
            &server,
            method.clone(),
            &path,
            &[("if-match", "\"v0\"")],
            b"",
        )
        .await;
        assert_eq!(a.status, StatusCode::PRECONDITION_FAILED, "{method}");
    }
    let a = call(&server, Method::GET, &path, &[("if-match", "\"v1\"")], b"").await;
    assert_eq!(a.status, StatusCode::OK);

    let a = call(
        &server,
        Method::GET,
        &path,
        &[("if-match", "not-quoted")],
        b"",
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test]
async fn not_found_delete_invalidate() {
    let cache = TestCache::new(false);
    let server = start(&cache).await;
    let path = object("default");
    let a = call(&server, Method::GET, &path, &[], b"").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(&a.body[..], b"not found\n");
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        call(&server, Method::HEAD, &path, &[], b"").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&server, Method::DELETE, &path, &[], b"").await.status,
        StatusCode::NOT_FOUND
    );
    let inv = format!("{path}/invalidate");
    assert_eq!(
        call(&server, Method::POST, &inv, &[], b"").await.status,
        StatusCode::OK
    );

    put(&server, &[], b"x").await;
    assert_eq!(
        call(&server, Method::DELETE, &path, &[], b"").await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, Method::GET, &path, &[], b"").await.status,
        StatusCode::NOT_FOUND
    );

    put(&server, &[], b"x").await;
    assert_eq!(
        call(&server, Method::POST, &inv, &[], b"").await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, Method::GET, &path, &[], b"").await.status,
        StatusCode::NOT_FOUND
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_400_with_a_message() {
    let cache = TestCache::new(false);
    let server = start(&cache).await;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 4] = [
        (
            &object("default"),
            &[("time-to-live", "1d")],
            "unknown unit",
        ),
        (&object("default"), &[("time-to-live", "-5s")], "negative"),
        (&object("default"), &[("etag", "\"a b\"")], "ETag"),
        (&object("-bad"), &[], "namespace"),
    ];
    for (path, headers, why) in cases {
        let a = call(&server, Method::POST, path, headers, b"data").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{headers:?}");
        let msg = String::from_utf8_lossy(&a.body);
        assert!(msg.contains(why), "{msg:?} should mention {why}");
    }
    assert_eq!(cache.log.lock().unwrap().commits, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn namespaces_are_separate_and_listed() {
    let cache = TestCache::new(true);
    let server = start(&cache).await;
    let a = call(&server, Method::GET, "/api/v1/namespaces", &[], b"").await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"[]"[..]));
    let a = call(&server, Method::POST, &object("ci"), &[], b"in ci").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        call(&server, Method::GET, &object("default"), &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let a = call(&server, Method::GET, &object("ci"), &[], b"").await;
    assert_eq!(&a.body[..], b"in ci");
    let a = call(&server, Method::GET, "/api/v1/namespaces", &[], b"").await;
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(&a.body[..], b"[\"ci\"]");
    let a = call(&server, Method::GET, "/api/v1/stats", &[], b"").await;
    assert_eq!(&a.body[..], br#"{"objects":1,"size":5,"capacity":0}"#);
    server.shutdown().await;
}

#[tokio::test]
async fn stats_unavailable_is_501() {
    let cache = TestCache::new(false);
    let server = start(&cache).await;
    let a = call(&server, Method::GET, "/api/v1/stats", &[], b"").await;
    assert_eq!(a.status, StatusCode::NOT_IMPLEMENTED);
    server.shutdown().await;
}

#[tokio::test]
async fn ttl_is_capped_and_zero_means_default() {
    let cache = TestCache::new(false);
    let server = Server::builder(std::sync::Arc::new(cache.clone()))
        .max_ttl(Duration::from_secs(60))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    put(&server, &[("time-to-live", "2h")], b"x").await;
    put(&server, &[], b"x").await;
    assert_eq!(
        cache.log.lock().unwrap().ttls,
        vec![Some(Duration::from_secs(60)), None]
    );
    server.shutdown().await;
}

/// Sends a chunked upload by hand and returns the open socket.
async fn partial_upload(server: &RunningServer, chunk: &[u8]) -> TcpStream {
    let mut sock = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        object("default"),
        chunk.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(chunk).await.unwrap();
    sock.write_all(b"\r\n").await.unwrap();
    sock.flush().await.unwrap();
    sock
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 2s");
}

#[tokio::test]
async fn an_upload_cut_off_mid_body_is_aborted_not_committed() {
    let cache = TestCache::new(false);
    let server = start(&cache).await;
    let sock = partial_upload(&server, b"partial data").await;
    drop(sock);
    let log = cache.log.clone();
    wait_for(|| !log.lock().unwrap().aborts.is_empty()).await;
    assert_eq!(cache.log.lock().unwrap().commits, 0);
    let a = call(&server, Method::GET, &object("default"), &[], b"").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // The same upload finished properly does commit.
    let mut sock = partial_upload(&server, b"partial data").await;
    sock.write_all(b"0\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 12];
    sock.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let a = call(&server, Method::GET, &object("default"), &[], b"").await;
    assert_eq!(&a.body[..], b"partial data");
    server.shutdown().await;
}

#[tokio::test]
async fn policy_rejects_before_reading_the_body() {
    let cache = TestCache::new(false);
    let server = Server::builder(std::sync::Arc::new(cache.clone()))
        .deny_writes()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let a = call(&server, Method::POST, &object("default"), &[], b"data").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(&a.body[..], b"writes are not allowed\n");
    assert_eq!(
        call(&server, Method::DELETE, &object("default"), &[], b"")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Reads still pass.
    assert_eq!(
        call(&server, Method::GET, &object("default"), &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(
        cache.log.lock().unwrap().ttls.is_empty(),
        "create was never called"
    );
    server.shutdown().await;

    let server = Server::builder(std::sync::Arc::new(cache.clone()))
        .policy(|parts| {
            (parts.headers.get("authorization").map(|v| v.as_bytes()) != Some(b"Bearer ok"))
                .then(|| Rejection::new(StatusCode::UNAUTHORIZED, "who are you"))
        })
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let a = call(&server, Method::GET, "/api/v1/namespaces", &[], b"").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::UNAUTHORIZED, &b"who are you\n"[..])
    );
    let a = call(
        &server,
        Method::GET,
        "/api/v1/namespaces",
        &[("authorization", "Bearer ok")],
        b"",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_uploads_finish_then_refuses_connections() {
    let cache = TestCache::new(false);
    let server = start(&cache).await;
    let addr = server.addr();
    let mut sock = partial_upload(&server, b"first half ").await;
    let log = cache.log.clone();
    wait_for(|| !log.lock().unwrap().ttls.is_empty()).await;
    let shutdown = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!shutdown.is_finished(), "shutdown waits for the upload");
    sock.write_all(b"b\r\nsecond half\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    sock.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown finishes once the upload is done")
        .unwrap();
    assert_eq!(cache.log.lock().unwrap().commits, 1);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener is closed"
    );
}

#[tokio::test]
async fn shutdown_cuts_stalled_connections_after_the_grace_period() {
    let cache = TestCache::new(false);
    let server = Server::builder(std::sync::Arc::new(cache.clone()))
        .grace_period(Duration::from_millis(200))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let _sock = partial_upload(&server, b"never finished").await;
    let log = cache.log.clone();
    wait_for(|| !log.lock().unwrap().ttls.is_empty()).await;
    tokio::time::timeout(Duration::from_secs(3), server.shutdown())
        .await
        .expect("shutdown is bounded by the grace period");
    assert_eq!(cache.log.lock().unwrap().commits, 0);
}

#[tokio::test]
async fn a_rejected_upload_that_expects_continue_gets_no_100() {
    let cache = TestCache::new(false);
    let server = Server::builder(std::sync::Arc::new(cache.clone()))
        .deny_writes()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut sock = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
        object("default")
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 12];
    sock.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        &buf, b"HTTP/1.1 403",
        "the final answer comes first, without 100"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_rejected_upload_is_drained_so_the_answer_survives() {
    let cache = TestCache::new(false);
    let server = Server::builder(std::sync::Arc::new(cache.clone()))
        .deny_writes()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut sock = TcpStream::connect(server.addr()).await.unwrap();
    let len = 8 << 20;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n",
        object("default")
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    // Keep sending after the 403 was answered: the server reads and drops
    // the rest instead of resetting the connection under our feet.
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..(len / chunk.len()) {
        sock.write_all(&chunk)
            .await
            .expect("the server keeps reading");
    }
    let mut buf = [0u8; 12];
    sock.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 403");
    server.shutdown().await;
}

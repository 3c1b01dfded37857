//! The server on a network, checked with raw sockets: token outcomes
//! (401/403/200 by right and namespace glob, open health probes), the
//! header, idle and body-stall timeouts, the object size cap and the
//! per-client connection cap. Timeouts are shortened so each test takes
//! well under a few seconds.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachew_server::{Limits, RunningServer, Server, Tokens};
use support::TestCache;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const KEY: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/// A bound on every wait, so a regression fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(5);

fn object(ns: &str) -> String {
    format!("/api/v1/object/{ns}/{KEY}")
}

async fn start(
    cache: &TestCache,
    f: impl FnOnce(cachew_server::ServerBuilder) -> cachew_server::ServerBuilder,
) -> RunningServer {
    f(Server::builder(Arc::new(cache.clone())))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

/// Connects to `server` from the loopback address `from` (e.g. 127.0.0.2).
async fn connect_from(server: SocketAddr, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// Sends `request` on a fresh connection and returns the whole answer.
async fn exchange(server: &RunningServer, request: &[u8]) -> String {
    let mut sock = TcpStream::connect(server.addr()).await.unwrap();
    sock.write_all(request).await.unwrap();
    read_all(&mut sock).await
}

async fn read_all(sock: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, sock.read_to_end(&mut out))
        .await
        .expect("the server answers and closes in time")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// One request with `Connection: close`; `auth` is the bearer token.
async fn request(
    server: &RunningServer,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> String {
    let auth = auth.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(server, req.as_bytes()).await
}

fn status(answer: &str) -> u16 {
    answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// Waits until `sock` is closed by the server; returns how long it took.
async fn closed_after(sock: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, sock.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server did not close the connection"),
        }
    }
}

const TOKENS: &str = "\
admin
reader read
ci write ci-*
";

#[tokio::test]
async fn token_outcomes_by_right_and_namespace() {
    let cache = TestCache::new(true);
    let tokens = Tokens::parse("tokens", TOKENS).unwrap();
    let server = start(&cache, |b| b.tokens(tokens)).await;

    for probe in ["/_liveness", "/_readiness"] {
        let a = request(&server, "GET", probe, None, "").await;
        assert_eq!(status(&a), 200, "{probe} is open: {a}");
    }
    let a = request(&server, "GET", &object("default"), None, "").await;
    assert_eq!(status(&a), 401, "{a}");
    assert!(a.contains("www-authenticate: Bearer"), "{a}");
    let a = request(&server, "GET", &object("default"), Some("guess"), "").await;
    assert_eq!(status(&a), 401, "{a}");
    assert!(a.contains("invalid_token"), "{a}");
    let a = request(&server, "GET", "/api/v1/stats", None, "").await;
    assert_eq!(status(&a), 401, "stats need a token too");

    // A read token reads but cannot write.
    let a = request(&server, "POST", &object("default"), Some("reader"), "x").await;
    assert_eq!(status(&a), 403, "{a}");
    assert!(a.contains("does not allow"), "{a}");
    assert_eq!(cache.log.lock().unwrap().commits, 0);
    let a = request(&server, "POST", &object("default"), Some("admin"), "hello").await;
    assert_eq!(status(&a), 200, "{a}");
    let a = request(&server, "GET", &object("default"), Some("reader"), "").await;
    assert_eq!(status(&a), 200, "{a}");
    assert!(a.ends_with("hello"), "{a}");

    // `write ci-*`: writes (and reads) ci-* namespaces only.
    let a = request(&server, "POST", &object("ci-linux"), Some("ci"), "y").await;
    assert_eq!(status(&a), 200, "{a}");
    let a = request(&server, "GET", &object("ci-linux"), Some("ci"), "").await;
    assert_eq!(status(&a), 200, "{a}");
    let a = request(&server, "POST", &object("default"), Some("ci"), "y").await;
    assert_eq!(status(&a), 403, "{a}");
    let a = request(&server, "GET", &object("default"), Some("ci"), "").await;
    assert_eq!(status(&a), 403, "{a}");
    let a = request(&server, "DELETE", &object("ci-linux"), Some("reader"), "").await;
    assert_eq!(status(&a), 403, "{a}");
    let a = request(&server, "GET", "/api/v1/namespaces", Some("ci"), "").await;
    assert_eq!(status(&a), 200, "{a}");
    server.shutdown().await;
}

#[tokio::test]
async fn silent_and_dribbling_connections_hit_the_header_timeout() {
    let cache = TestCache::new(false);
    let limits = Limits::default()
        .with_header_timeout(Duration::from_millis(300))
        .with_idle_timeout(Duration::from_secs(30));
    let server = start(&cache, |b| b.limits(limits)).await;

    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    let took = closed_after(&mut silent).await;
    assert!(took < Duration::from_secs(2), "{took:?}");

    // Headers a byte at a time, faster than any per-read timeout would
    // notice, but never finished.
    let mut dribble = TcpStream::connect(server.addr()).await.unwrap();
    let started = Instant::now();
    let head =
        b"GET /_liveness HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for byte in head {
        if dribble.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    closed_after(&mut dribble).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");

    // A prompt request is served.
    assert_eq!(
        status(&request(&server, "GET", "/_liveness", None, "").await),
        200
    );
    server.shutdown().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let cache = TestCache::new(false);
    let limits = Limits::default()
        .with_header_timeout(Duration::from_millis(200))
        .with_idle_timeout(Duration::from_millis(700));
    let server = start(&cache, |b| b.limits(limits)).await;
    let mut sock = TcpStream::connect(server.addr()).await.unwrap();
    sock.write_all(b"GET /_liveness HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Idle for longer than the header timeout: still open, because the
    // idle timeout applies between requests.
    tokio::time::sleep(Duration::from_millis(400)).await;
    sock.write_all(b"GET /_liveness HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = sock.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "the keep-alive connection served a second request"
    );
    let took = closed_after(&mut sock).await;
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_upload_is_aborted_with_408_and_never_visible() {
    let cache = TestCache::new(false);
    let limits = Limits::default().with_body_timeout(Duration::from_millis(300));
    let server = start(&cache, |b| b.limits(limits)).await;
    let mut sock = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly the start",
        object("default")
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let answer = read_all(&mut sock).await;
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    {
        let log = cache.log.lock().unwrap();
        assert_eq!((log.commits, log.aborts.len()), (0, 1));
    }
    assert_eq!(
        status(&request(&server, "GET", &object("default"), None, "").await),
        404
    );
    server.shutdown().await;
}

#[tokio::test]
async fn uploads_over_the_size_cap_are_413_and_never_visible() {
    let cache = TestCache::new(false);
    let limits = Limits::default().with_max_object_size(Some(10));
    let server = start(&cache, |b| b.limits(limits)).await;

    // Declared too large: refused before anything is stored.
    let a = request(&server, "POST", &object("default"), None, "eleven byte").await;
    assert_eq!(status(&a), 413, "{a}");
    assert!(a.contains("connection: close"), "{a}");

    // Chunked, crossing the cap in the second chunk.
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsix by\r\n6\r\nmore b\r\n0\r\n\r\n",
        object("default")
    );
    let a = exchange(&server, req.as_bytes()).await;
    assert_eq!(status(&a), 413, "{a}");
    {
        let log = cache.log.lock().unwrap();
        assert_eq!(
            (log.commits, log.aborts.len()),
            (0, 1),
            "the partial object is discarded"
        );
    }
    assert_eq!(
        status(&request(&server, "GET", &object("default"), None, "").await),
        404
    );

    // At the cap is fine.
    let a = request(&server, "POST", &object("default"), None, "ten bytes!").await;
    assert_eq!(status(&a), 200, "{a}");
    server.shutdown().await;
}

#[tokio::test]
async fn one_client_address_cannot_take_every_connection() {
    let cache = TestCache::new(false);
    let limits = Limits::default()
        .with_max_connections_per_client(3)
        .with_header_timeout(Duration::from_secs(30));
    let server = start(&cache, |b| b.limits(limits)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(server.addr(), "127.0.0.2").await);
    }
    // Make sure the server accepted those three before the fourth.
    assert_eq!(
        status(&request(&server, "GET", "/_liveness", None, "").await),
        200
    );
    let mut fourth = connect_from(server.addr(), "127.0.0.2").await;
    let took = closed_after(&mut fourth).await;
    assert!(took < Duration::from_secs(1), "closed at once: {took:?}");
    // Held ones are still open, and another address is served.
    let mut buf = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(100), held[0].read(&mut buf)).await;
    assert!(still_open.is_err(), "a held connection is still open");
    let mut other = connect_from(server.addr(), "127.0.0.3").await;
    other
        .write_all(b"GET /_liveness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status(&read_all(&mut other).await), 200);
    // Closing one frees its slot.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = connect_from(server.addr(), "127.0.0.2").await;
    again
        .write_all(b"GET /_liveness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status(&read_all(&mut again).await), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_a_download_is_cut_off() {
    let cache = TestCache::new(false);
    let limits = Limits::default()
        .with_body_timeout(Duration::from_millis(300))
        .with_header_timeout(Duration::from_millis(200));
    let server = start(&cache, |b| b.limits(limits)).await;
    // More than loopback's socket buffers hold.
    let size = 64 << 20;
    let body = "x".repeat(size);
    assert_eq!(
        status(&request(&server, "POST", &object("default"), None, &body).await),
        200
    );
    let mut sock = TcpStream::connect(server.addr()).await.unwrap();
    let get = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", object("default"));
    sock.write_all(get.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, sock.read_to_end(&mut got)).await;
    assert!(
        got.len() < size,
        "the response was cut off ({} bytes)",
        got.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

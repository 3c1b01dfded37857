//! Faults seen through the remote `Cache`: the reference server (or a canned
//! responder) misbehaves and the client must report it, never a short
//! success, a hang, a committed partial upload or a lost status.

mod support;

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use cachew_client::conformance::Setup;
use cachew_client::{
    AbortCause, Body, Cache, CacheExt, CacheWriter, CreateOptions, Error, Key, Namespace, Object,
    ObjectMeta, OpenOptions, RemoteCache, Result, Stats,
};
use cachew_server::{Rejection, RunningServer, Server};
use cachew_transport::HttpClient;
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------
// A backend wrapper that breaks bodies and records what uploads did.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum BodyFault {
    /// Bodies are served faithfully.
    None,
    /// The body fails after this many bytes (the server drops the connection).
    BreakAfter(usize),
    /// The body stops sending after this many bytes, forever.
    StallAfter(usize),
}

#[derive(Debug, Clone)]
struct Faulty {
    inner: Arc<dyn Cache>,
    fault: BodyFault,
    events: Arc<Mutex<Vec<String>>>,
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "faulty({})", self.inner)
    }
}

impl Faulty {
    fn new(fault: BodyFault) -> Faulty {
        Faulty {
            inner: support::memory(&Setup::default()),
            fault,
            events: Arc::default(),
        }
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

struct BrokenBody {
    inner: Body,
    left: usize,
    stall: bool,
}

impl AsyncRead for BrokenBody {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            if self.stall {
                return Poll::Pending; // Never woken: a server that went quiet.
            }
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "backend failed mid-body",
            )));
        }
        let max = self.left.min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(max));
        let this = &mut *self;
        match this.inner.as_mut().poll_read(cx, &mut limited) {
            Poll::Ready(Ok(())) => {
                let n = limited.filled().len();
                this.left -= n;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[derive(Debug)]
struct RecordingWriter {
    inner: Box<dyn CacheWriter>,
    events: Arc<Mutex<Vec<String>>>,
    written: usize,
}

impl AsyncWrite for RecordingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = poll {
            self.written += n;
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl CacheWriter for RecordingWriter {
    async fn commit(&mut self) -> Result<()> {
        let event = format!("commit after {} bytes", self.written);
        self.events.lock().unwrap().push(event);
        self.inner.commit().await
    }

    async fn abort(&mut self, cause: AbortCause) -> Result<()> {
        let event = format!("abort after {} bytes: {cause}", self.written);
        self.events.lock().unwrap().push(event);
        self.inner.abort(cause).await
    }
}

#[async_trait]
impl Cache for Faulty {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn with_namespace(&self, namespace: Namespace) -> Arc<dyn Cache> {
        Arc::new(Faulty {
            inner: self.inner.with_namespace(namespace),
            ..self.clone()
        })
    }

    async fn stat(&self, key: &Key, options: &OpenOptions) -> Result<ObjectMeta> {
        self.inner.stat(key, options).await
    }

    async fn open(&self, key: &Key, options: &OpenOptions) -> Result<Object> {
        let object = self.inner.open(key, options).await?;
        let (left, stall) = match self.fault {
            BodyFault::None => return Ok(object),
            BodyFault::BreakAfter(n) => (n, false),
            BodyFault::StallAfter(n) => (n, true),
        };
        Ok(Object {
            meta: object.meta,
            body: Box::pin(BrokenBody {
                inner: object.body,
                left,
                stall,
            }),
        })
    }

    async fn create(
        &self,
        key: &Key,
        headers: HeaderMap,
        options: &CreateOptions,
    ) -> Result<Box<dyn CacheWriter>> {
        let inner = self.inner.create(key, headers, options).await?;
        Ok(Box::new(RecordingWriter {
            inner,
            events: self.events.clone(),
            written: 0,
        }))
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn invalidate(&self, key: &Key) -> Result<()> {
        self.inner.invalidate(key).await
    }

    async fn stats(&self) -> Result<Stats> {
        self.inner.stats().await
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        self.inner.list_namespaces().await
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

async fn serve(backend: &Faulty) -> RunningServer {
    Server::new(Arc::new(backend.clone()))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn remote(server: &RunningServer) -> RemoteCache {
    RemoteCache::builder(server.url())
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A server that answers every request with `response` verbatim and closes
/// the connection; `hits` counts requests.
async fn canned(response: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match sock.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, hits)
}

// ---------------------------------------------------------------------------
// Downloads.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_download_is_an_error_not_a_short_body() {
    // Far enough into the body that the response headers were flushed:
    // a failure before that is a failed request, which the next test covers.
    let backend = Faulty::new(BodyFault::BreakAfter(3 << 20));
    let server = serve(&backend).await;
    let cache = remote(&server);
    let key = Key::new("dropped mid-download");
    cache
        .put_bytes(
            &key,
            pattern(8 << 20),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();

    let object = cache.open(&key, &OpenOptions::default()).await.unwrap();
    assert_eq!(
        object.meta.size,
        Some(8 << 20),
        "headers promised the whole object"
    );
    let mut body = object.body;
    let mut got = Vec::new();
    let err = body
        .read_to_end(&mut got)
        .await
        .expect_err("a cut-off body must fail, not end short");
    assert!(got.len() < 8 << 20, "{} bytes", got.len());
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ),
        "{err:?}"
    );
    // The convenience reader reports it as an error too.
    let err = cache.get_bytes(&key).await.expect_err("short read");
    assert!(matches!(err, Error::Stream(_)), "{err:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_fails_with_the_idle_timeout() {
    let backend = Faulty::new(BodyFault::StallAfter(100_000));
    let server = serve(&backend).await;
    let cache = RemoteCache::builder(server.url())
        .idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let key = Key::new("stalled mid-download");
    cache
        .put_bytes(
            &key,
            pattern(1 << 20),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let object = cache.open(&key, &OpenOptions::default()).await.unwrap();
    let mut body = object.body;
    let mut got = Vec::new();
    let err = tokio::time::timeout(Duration::from_secs(10), body.read_to_end(&mut got))
        .await
        .expect("the idle timeout fires before the test's own")
        .expect_err("a stalled body must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err:?}");
    assert!(got.len() >= 100_000 && got.len() < 1 << 20, "{}", got.len());
    assert!(started.elapsed() < Duration::from_secs(5));
    // Make shutdown quick: the stalled connection is cut after the grace period.
    drop(server);
}

/// A reference server whose requests matching `matches` are answered 503
/// while `failures` (2 at first) lasts, counting them in `seen`, and a
/// remote client with fast retries.
struct Flaky {
    server: RunningServer,
    cache: RemoteCache,
    failures: Arc<AtomicUsize>,
    seen: Arc<AtomicUsize>,
}

impl Flaky {
    async fn start(
        matches: impl Fn(&http::request::Parts) -> bool + Send + Sync + 'static,
    ) -> Flaky {
        let failures = Arc::new(AtomicUsize::new(2));
        let seen = Arc::new(AtomicUsize::new(0));
        let (f, n) = (failures.clone(), seen.clone());
        let server = Server::builder(Arc::new(Faulty::new(BodyFault::None)))
            .policy(move |parts| {
                if !matches(parts) {
                    return None;
                }
                n.fetch_add(1, Ordering::SeqCst);
                let left = f.load(Ordering::SeqCst);
                (left > 0).then(|| {
                    f.store(left - 1, Ordering::SeqCst);
                    Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "warming up")
                })
            })
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let http = HttpClient::builder()
            .retry_base_delay(Duration::from_millis(20))
            .build()
            .unwrap();
        let cache = RemoteCache::builder(server.url())
            .http_client(http)
            .build()
            .unwrap();
        Flaky {
            server,
            cache,
            failures,
            seen,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_and_then_succeeds() {
    let Flaky {
        server,
        cache,
        failures,
        seen: gets,
    } = Flaky::start(|parts| parts.method == http::Method::GET).await;
    let key = Key::new("retried");
    cache
        .put_bytes(
            &key,
            Bytes::from_static(b"worth the wait"),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(cache.get_bytes(&key).await.unwrap(), &b"worth the wait"[..]);
    assert_eq!(gets.load(Ordering::SeqCst), 3, "two 503s, then the 200");

    // Without retries the 503 surfaces with the server's message.
    failures.store(1, Ordering::SeqCst);
    let once = RemoteCache::builder(server.url())
        .max_retries(0)
        .build()
        .unwrap();
    match once.get_bytes(&key).await {
        Err(Error::Status { code: 503, message }) => assert_eq!(message, "warming up"),
        other => panic!("expected a 503 status error, got {other:?}"),
    }
    server.shutdown().await;
}

/// The transport classifies idempotency by method alone; the client marks
/// `POST …/invalidate` as safe to repeat when it builds it, so a 503 on it
/// is retried like a GET's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_is_marked_idempotent_and_retried() {
    let Flaky {
        server,
        cache,
        seen: posts,
        ..
    } = Flaky::start(|parts| {
        parts.method == http::Method::POST && parts.uri.path().ends_with("/invalidate")
    })
    .await;
    let key = Key::new("invalidated-after-retries");
    cache
        .put_bytes(
            &key,
            Bytes::from_static(b"x"),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    cache.invalidate(&key).await.expect("retried past two 503s");
    assert_eq!(posts.load(Ordering::SeqCst), 3, "two 503s, then the answer");
    assert!(matches!(
        cache.stat(&key, &OpenOptions::default()).await,
        Err(Error::NotFound)
    ));
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Uploads.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_aborted_mid_stream_never_becomes_visible() {
    let backend = Faulty::new(BodyFault::None);
    let server = serve(&backend).await;
    let cache = remote(&server);
    let key = Key::new("aborted upload");
    let mut writer = cache
        .create(&key, HeaderMap::new(), &CreateOptions::default())
        .await
        .unwrap();
    writer.write_all(&pattern(2 << 20)).await.unwrap();
    writer.flush().await.unwrap();
    // The server has been receiving the upload (checked below: the abort
    // comes after bytes arrived)…
    writer
        .abort("the producer failed".into())
        .await
        .expect("abort of a live upload succeeds");
    // …and discards it when the body fails.
    wait_for("the server-side abort", || !backend.events().is_empty()).await;
    let events = backend.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("abort after "), "{events:?}");
    assert!(
        !events[0].starts_with("abort after 0 "),
        "bytes reached the server first: {events:?}"
    );
    assert!(matches!(
        backend.inner.stat(&key, &OpenOptions::default()).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        cache.stat(&key, &OpenOptions::default()).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(writer.commit().await, Err(Error::WriterClosed(_))));

    // Dropping an unfinished writer is an abort too.
    let key = Key::new("dropped upload");
    let mut writer = cache
        .create(&key, HeaderMap::new(), &CreateOptions::default())
        .await
        .unwrap();
    writer.write_all(&pattern(1 << 20)).await.unwrap();
    writer.flush().await.unwrap();
    drop(writer);
    wait_for("the second server-side abort", || {
        backend.events().len() == 2
    })
    .await;
    assert!(
        backend.events()[1].starts_with("abort after "),
        "{:?}",
        backend.events()
    );
    assert!(matches!(
        backend.inner.stat(&key, &OpenOptions::default()).await,
        Err(Error::NotFound)
    ));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_answered_mid_upload_surfaces_as_403() {
    let backend = Faulty::new(BodyFault::None);
    let server = Server::builder(Arc::new(backend.clone()))
        .deny_writes()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let cache = remote(&server);
    let key = Key::new("forbidden");

    // A big upload: the 403 arrives while the body is still being sent.
    let mut writer = cache
        .create(&key, HeaderMap::new(), &CreateOptions::default())
        .await
        .expect("create only starts the request");
    let chunk = pattern(256 * 1024);
    let mut write_error = None;
    for _ in 0..256 {
        if let Err(e) = writer.write_all(&chunk).await {
            write_error = Some(e);
            break;
        }
    }
    let write_error = write_error.expect("64 MiB cannot all be queued after a 403");
    assert!(
        write_error.to_string().contains("403"),
        "the write error names the status: {write_error}"
    );
    let inner = write_error
        .get_ref()
        .and_then(|e| e.downcast_ref::<Error>())
        .expect("the write error carries the typed error");
    assert_eq!(inner.status(), Some(403));
    match writer.commit().await {
        Err(Error::Status { code: 403, message }) => {
            assert_eq!(message, "writes are not allowed")
        }
        other => panic!("commit after a 403: expected Status 403, got {other:?}"),
    }

    // A small upload learns at its first write or at commit; either way the
    // typed 403 travels with the error.
    let mut writer = cache
        .create(&key, HeaderMap::new(), &CreateOptions::default())
        .await
        .unwrap();
    let err = match writer.write_all(b"tiny").await {
        Err(io) => *io
            .into_inner()
            .expect("an inner error")
            .downcast::<Error>()
            .expect("the typed error"),
        Ok(()) => writer.commit().await.expect_err("a denied upload"),
    };
    assert_eq!(err.status(), Some(403), "{err:?}");
    match cache
        .put_bytes(
            &key,
            Bytes::from_static(b"tiny"),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
    {
        Err(e) => assert!(e.to_string().contains("403"), "{e}"),
        Ok(()) => panic!("a denied upload succeeded"),
    }

    // The caller aborting because of the 403 still sees the 403.
    let mut writer = cache
        .create(&key, HeaderMap::new(), &CreateOptions::default())
        .await
        .unwrap();
    let mut last = None;
    for _ in 0..256 {
        if let Err(e) = writer.write_all(&chunk).await {
            last = Some(e);
            break;
        }
    }
    match writer.abort("giving up".into()).await {
        Err(Error::Status { code: 403, .. }) => {}
        other => {
            panic!("abort after a 403: expected the 403, got {other:?} (write error: {last:?})")
        }
    }
    assert!(backend.events().is_empty(), "the backend never saw a write");
    assert!(matches!(
        backend.inner.stat(&key, &OpenOptions::default()).await,
        Err(Error::NotFound)
    ));
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Connections, statuses and headers.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_unreachable_server_is_a_connect_error_naming_the_url() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}");
    let cache = RemoteCache::builder(format!("{url}/"))
        .max_retries(0)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert_eq!(cache.base_url(), url, "the trailing slash is trimmed");
    assert_eq!(cache.to_string(), format!("remote:{url}"));
    let err = cache
        .stat(&Key::new("x"), &OpenOptions::default())
        .await
        .expect_err("nothing listens there");
    match &err {
        Error::Transport(t) => assert!(t.is_connect(), "{t:?}"),
        other => panic!("expected a transport error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&url), "{text}");
    assert!(text.contains("connect"), "{text}");

    let mut writer = cache
        .create(&Key::new("x"), HeaderMap::new(), &CreateOptions::default())
        .await
        .unwrap();
    let _ = writer.write_all(b"data").await;
    let err = writer.commit().await.expect_err("upload to nowhere");
    assert!(err.to_string().contains(&url), "{err}");
}

#[tokio::test]
async fn statuses_map_to_errors_with_the_servers_message() {
    let (url, _) = canned(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 13\r\nconnection: close\r\n\r\ndisk on fire\n",
    )
    .await;
    let cache = RemoteCache::builder(&url).max_retries(0).build().unwrap();
    match cache.get_bytes(&Key::new("k")).await {
        Err(e @ Error::Status { .. }) => {
            assert_eq!(e.status(), Some(500));
            assert_eq!(e.to_string(), "server returned 500: disk on fire");
        }
        other => panic!("expected Status 500, got {other:?}"),
    }
    assert!(matches!(
        cache.delete(&Key::new("k")).await,
        Err(Error::Status { code: 500, .. })
    ));

    let (url, hits) =
        canned("HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
    let cache = RemoteCache::new(&url).unwrap();
    assert!(matches!(cache.stats().await, Err(Error::StatsUnavailable)));
    assert_eq!(hits.load(Ordering::SeqCst), 1, "501 is never retried");

    let (url, _) = canned(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnull",
    )
    .await;
    let cache = RemoteCache::new(&url).unwrap();
    assert_eq!(cache.list_namespaces().await.unwrap(), Vec::<String>::new());

    let (url, _) = canned(
        "HTTP/1.1 416 Range Not Satisfiable\r\ncontent-range: bytes */42\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    let cache = RemoteCache::new(&url).unwrap();
    let opts = OpenOptions::default().with_range(cachew_client::ByteRange::from_offset(100));
    assert!(matches!(
        cache.open(&Key::new("k"), &opts).await,
        Err(Error::RangeNotSatisfiable { size: Some(42) })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_goes_with_every_request_and_never_into_text() {
    let backend = Faulty::new(BodyFault::None);
    let server = Server::builder(Arc::new(backend.clone()))
        .policy(|parts| {
            let ok = parts.headers.get("authorization").map(|v| v.as_bytes())
                == Some(b"Bearer s3cret-token")
                && parts.headers.get("x-build-id").map(|v| v.as_bytes()) == Some(b"42");
            (!ok).then(|| Rejection::new(StatusCode::FORBIDDEN, "bad credentials"))
        })
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let cache = RemoteCache::builder(server.url())
        .authorization("Bearer s3cret-token")
        .header_fn(|| {
            let mut h = HeaderMap::new();
            h.insert("x-build-id", "42".parse().unwrap());
            h
        })
        .namespace(Namespace::new("ci").unwrap())
        .build()
        .unwrap();
    let key = Key::new("authorised");
    cache
        .put_bytes(
            &key,
            Bytes::from_static(b"secret stuff"),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(cache.get_bytes(&key).await.unwrap(), &b"secret stuff"[..]);
    assert!(cache.exists(&key).await.unwrap());
    assert_eq!(
        cache.list_namespaces().await.unwrap(),
        vec!["ci".to_owned()]
    );
    assert_eq!(cache.stats().await.unwrap().objects, 1);
    cache.invalidate(&key).await.unwrap();
    cache.delete(&key).await.expect_err("already invalidated");
    // The stored object does not carry the credentials.
    cache
        .put_bytes(
            &key,
            Bytes::from_static(b"again"),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    let meta = cache.stat(&key, &OpenOptions::default()).await.unwrap();
    assert!(
        meta.headers.get("authorization").is_none(),
        "{:?}",
        meta.headers
    );

    let anonymous = RemoteCache::builder(server.url()).build().unwrap();
    match anonymous.get_bytes(&key).await {
        Err(Error::Status { code: 403, message }) => assert_eq!(message, "bad credentials"),
        other => panic!("expected 403, got {other:?}"),
    }
    for text in [format!("{cache:?}"), cache.to_string()] {
        assert!(!text.contains("s3cret"), "{text}");
    }
    cache.close().unwrap();
    cache.close().unwrap();
    server.shutdown().await;
}

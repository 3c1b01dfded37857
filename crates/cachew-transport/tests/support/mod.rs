//! In-process servers on 127.0.0.1:0 and helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cachew_transport::{HttpClient, HttpClientBuilder};
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};

/// The idle timeout used by tests that exercise it.
pub const TEST_IDLE: Duration = Duration::from_millis(300);

/// A response body type for test servers.
pub type TestBody = BoxBody<Bytes, std::io::Error>;

/// A buffered test response body.
pub fn full(data: impl Into<Bytes>) -> TestBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A builder with test-friendly timeouts and quick retries.
pub fn builder() -> HttpClientBuilder {
    HttpClient::builder()
        .connect_timeout(Duration::from_secs(2))
        .idle_timeout(TEST_IDLE)
        .response_header_timeout(TEST_IDLE)
        .retry_base_delay(Duration::from_millis(10))
}

/// A client from [`builder`].
pub fn client() -> HttpClient {
    builder().build().expect("client builds")
}

/// A running hyper server (HTTP/1.1 and HTTP/2 prior knowledge).
pub struct Server {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests handled so far.
    pub requests: Arc<AtomicUsize>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Serves `handler` for every request on a fresh port until the test ends.
pub async fn serve<F, Fut>(handler: F) -> Server
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (conns, reqs) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            conns.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let reqs = reqs.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    reqs.fetch_add(1, Ordering::SeqCst);
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Server {
        addr,
        connections,
        requests,
    }
}

/// Runs `handler` on each raw TCP connection, for fault injection.
pub async fn serve_raw<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(handler(stream));
        }
    });
    addr
}

/// Reads an HTTP/1 request head (through the blank line) and returns it.
pub async fn read_head<R: AsyncRead + Unpin>(stream: &mut R) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A port on 127.0.0.1 with nothing listening.
pub async fn unused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Collects a server-side request body, reporting whether it ended cleanly.
pub async fn collect_body(req: Request<Incoming>) -> Result<Bytes, hyper::Error> {
    req.into_body().collect().await.map(|c| c.to_bytes())
}

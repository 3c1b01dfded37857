//! `cachew-server`: a reference Cachew server that serves any
//! [`Cache`] over the `/api/v1` object API.
//!
//! It answers with the Go `cachewd` server's status codes and headers
//! (`PROTOCOL.md` §3): `200`/`206`/`304`/`412`/`416` on Open, `Accept-Ranges`,
//! `ETag`, `Last-Modified` and `Content-Length` on every Open and Stat, `400`
//! for an invalid `Time-To-Live`, ETag or namespace, short `text/plain` error
//! bodies, `501` when the backend has no statistics, and `GET /_liveness`.
//!
//! An upload is streamed into the backend's
//! [`CacheWriter`](cachew_client::CacheWriter) and committed only when the
//! request body ended cleanly; a client that aborts or a connection that
//! breaks mid-upload leaves nothing visible.
//!
//! Its main users are tests (the remote client runs the shared conformance
//! suite against it) and `cargo xtask conformance`; it is also a small,
//! complete server for a single machine.
//!
//! ```no_run
//! use std::sync::Arc;
//! use cachew_client::Cache;
//! use cachew_server::Server;
//!
//! # async fn demo(cache: Arc<dyn Cache>) -> std::io::Result<()> {
//! // Bind an ephemeral loopback port, serve in the background…
//! let server = Server::builder(cache).bind("127.0.0.1:0").await?;
//! println!("serving on {}", server.url());
//! // …and stop accepting, letting in-flight requests finish.
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! **API boundary:** [`Server`], [`ServerBuilder`], [`RunningServer`],
//! [`Policy`] and [`Rejection`].

mod body;
mod git;
mod handler;
mod throttle;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cachew_client::Cache;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

pub use body::ResponseBody;
use handler::State;

/// A request filter run before routing: `Some(rejection)` answers the request
/// with that status and message instead of serving it (e.g. a `403` for
/// callers without the right `Authorization`).
pub type Policy = Arc<dyn Fn(&http::request::Parts) -> Option<Rejection> + Send + Sync>;

/// A request refused by a [`Policy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The status to answer with.
    pub status: http::StatusCode,
    /// The short message sent as the `text/plain` body.
    pub message: String,
}

impl Rejection {
    /// A rejection with `status` and `message`.
    pub fn new(status: http::StatusCode, message: impl Into<String>) -> Rejection {
        Rejection {
            status,
            message: message.into(),
        }
    }
}

/// How long [`RunningServer::shutdown`] waits for in-flight requests by
/// default before cutting their connections.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// A configured server, ready to serve a listener. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
    grace: Duration,
    rate_limit: Option<u64>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("cache", &self.state.cache.to_string())
            .field("policy", &self.state.policy.is_some())
            .field("max_ttl", &self.state.max_ttl)
            .field("grace", &self.grace)
            .finish()
    }
}

/// Builds a [`Server`].
#[must_use]
pub struct ServerBuilder {
    cache: Arc<dyn Cache>,
    policy: Option<Policy>,
    max_ttl: Option<Duration>,
    grace: Duration,
    git_root: Option<PathBuf>,
    rate_limit: Option<u64>,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("cache", &self.cache.to_string())
            .field("policy", &self.policy.is_some())
            .field("max_ttl", &self.max_ttl)
            .field("grace", &self.grace)
            .finish()
    }
}

impl ServerBuilder {
    /// Runs `policy` on every request before it is routed.
    pub fn policy(
        mut self,
        policy: impl Fn(&http::request::Parts) -> Option<Rejection> + Send + Sync + 'static,
    ) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// Answers every Create, Delete and Invalidate with `403 Forbidden`, as a
    /// Go server does for a caller its policy does not allow to write.
    pub fn deny_writes(self) -> Self {
        self.policy(|parts| {
            let write = matches!(parts.method, http::Method::POST | http::Method::DELETE);
            (write && parts.uri.path().starts_with("/api/v1/object/"))
                .then(|| Rejection::new(http::StatusCode::FORBIDDEN, "writes are not allowed"))
        })
    }

    /// Caps the time to live callers may ask for, as Go servers do.
    pub fn max_ttl(mut self, max: Duration) -> Self {
        self.max_ttl = Some(max);
        self
    }

    /// How long shutdown waits for in-flight requests (default
    /// [`DEFAULT_GRACE_PERIOD`]).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Serves the `/git/` endpoints from the plain git repositories under
    /// `root` (`{root}/{host}/{path}`), keeping mirrors and snapshots in
    /// `{root}/.cachew`; see the `git` module. For tests and local use.
    pub fn git_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.git_root = Some(root.into());
        self
    }

    /// Limits what the server sends on each connection to `bytes_per_sec`,
    /// like a network whose single TCP streams are slow. For benchmarks and
    /// tests of parallel downloads (`cargo xtask bench parallel`).
    pub fn rate_limit_per_connection(mut self, bytes_per_sec: u64) -> Self {
        self.rate_limit = Some(bytes_per_sec);
        self
    }

    /// The configured server.
    pub fn build(self) -> Server {
        Server {
            state: Arc::new(State {
                cache: self.cache,
                policy: self.policy,
                max_ttl: self.max_ttl,
                git: self.git_root.map(git::GitState::new),
            }),
            grace: self.grace,
            rate_limit: self.rate_limit,
        }
    }

    /// Builds the server, binds `addr` (e.g. `127.0.0.1:0`) and serves it in
    /// the background.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> io::Result<RunningServer> {
        self.build().bind(addr).await
    }
}

impl Server {
    /// A builder serving `cache`.
    pub fn builder(cache: Arc<dyn Cache>) -> ServerBuilder {
        ServerBuilder {
            cache,
            policy: None,
            max_ttl: None,
            grace: DEFAULT_GRACE_PERIOD,
            git_root: None,
            rate_limit: None,
        }
    }

    /// A server for `cache` with default settings.
    pub fn new(cache: Arc<dyn Cache>) -> Server {
        Server::builder(cache).build()
    }

    /// Binds `addr` and serves it on a background task until
    /// [`RunningServer::shutdown`] (or until the handle is dropped).
    pub async fn bind(self, addr: impl ToSocketAddrs) -> io::Result<RunningServer> {
        let listener = TcpListener::bind(addr).await?;
        self.spawn(listener)
    }

    /// Serves `listener` on a background task.
    pub fn spawn(self, listener: TcpListener) -> io::Result<RunningServer> {
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // A dropped sender is a shutdown request too.
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) = self.serve(listener, shutdown).await {
                tracing::error!(error = %e, "cachew server stopped");
            }
        });
        Ok(RunningServer {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Serves `listener` until `shutdown` completes, then stops accepting,
    /// lets in-flight requests finish (for at most the grace period) and
    /// returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().max_buf_size(1 << 20);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Usually out of file descriptors: back off rather
                        // than spin, and keep serving the connections we have.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let state = self.state.clone();
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handler::handle(state, req).await) }
            });
            let conn = builder
                .serve_connection(
                    TokioIo::new(throttle::Throttled::new(stream, self.rate_limit)),
                    service,
                )
                .into_owned();
            let mut stop = stop_rx.clone();
            connections.spawn(async move {
                tokio::pin!(conn);
                let stopping = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    () = stopping => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(self.grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = connections.len(),
                "grace period over; closing connections"
            );
            connections.shutdown().await;
        }
        Ok(())
    }
}

/// A server serving on a background task; see [`Server::bind`].
///
/// Dropping the handle starts a graceful shutdown without waiting for it.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, waits for in-flight requests (at most the
    /// grace period) and returns once the server is stopped.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

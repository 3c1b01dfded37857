//! `cachew-server`: a reference Cachew server that serves any
//! [`Cache`] over the `/api/v1` object API.
//!
//! It answers with the Go `cachewd` server's status codes and headers
//! (`PROTOCOL.md` §3): `200`/`206`/`304`/`412`/`416` on Open, `Accept-Ranges`,
//! `ETag`, `Last-Modified` and `Content-Length` on every Open and Stat, `400`
//! for an invalid `Time-To-Live`, ETag or namespace, short `text/plain` error
//! bodies, `501` when the backend has no statistics, and `GET /_liveness`
//! and `GET /_readiness`.
//!
//! For a network it has bearer tokens with read/write rights over
//! namespace globs ([`Tokens`], [`ServerBuilder::tokens`]), header, idle
//! and upload-stall timeouts, connection caps overall and per client
//! address and an object size cap ([`Limits`]), TLS ([`TlsConfig`]), an
//! access log line per request (target `cachew_server::access`), and a
//! graceful shutdown that finishes in-flight requests up to a deadline
//! ([`signal`], [`RunningServer::shutdown`]), and Prometheus metrics at
//! `GET /metrics` ([`ServerBuilder::metric`] adds the backend's own).
//! `docs/SERVER.md` describes them for operators.
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
//! [`Tokens`], [`Limits`], [`TlsConfig`], [`signal`], [`Policy`],
//! [`Rejection`], [`MetricKind`] and [`LogHeaders`].

mod access_log;
mod auth;
mod body;
mod connection;
mod git;
mod git_http;
mod git_lfs;
mod handler;
mod limits;
mod log_headers;
mod metrics;
mod request_body;
mod shutdown;
#[cfg(feature = "bench")]
mod throttle;
mod tls;
mod watchdog;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cachew_client::Cache;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use auth::{bearer_token, Right, TokenFileError, TokenId, Tokens};
pub use body::ResponseBody;
pub use limits::{
    Limits, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
};
pub use log_headers::{InvalidLogHeader, LogHeaders, REDACTED};
pub use metrics::MetricKind;
pub use shutdown::signal;
pub use tls::TlsConfig;

use connection::Shared;
use handler::State;
use limits::ConnectionCaps;
use shutdown::Connections;

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
    shared: Arc<Shared>,
    grace: Duration,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = &self.shared.state;
        f.debug_struct("Server")
            .field("cache", &state.cache.to_string())
            .field("tokens", &state.tokens)
            .field("policy", &state.policy.is_some())
            .field("max_ttl", &state.max_ttl)
            .field("limits", &self.shared.limits)
            .field("tls", &self.shared.tls.is_some())
            .field("grace", &self.grace)
            .finish()
    }
}

/// Builds a [`Server`].
#[must_use]
pub struct ServerBuilder {
    cache: Arc<dyn Cache>,
    tokens: Option<Tokens>,
    policy: Option<Policy>,
    max_ttl: Option<Duration>,
    grace: Duration,
    git_root: Option<PathBuf>,
    rate_limit: Option<u64>,
    limits: Limits,
    tls: Option<TlsConfig>,
    metrics: Vec<metrics::Extra>,
    log_headers: Option<LogHeaders>,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("cache", &self.cache.to_string())
            .field("tokens", &self.tokens)
            .field("policy", &self.policy.is_some())
            .field("max_ttl", &self.max_ttl)
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .field("grace", &self.grace)
            .field("log_headers", &self.log_headers)
            .finish()
    }
}

impl ServerBuilder {
    /// Requires a bearer token from `tokens` on every request but the
    /// health probes (`GET /_liveness`, `GET /_readiness`): `401` with a
    /// `WWW-Authenticate: Bearer` challenge without a valid token, `403`
    /// for a token without the right. Runs before any [`policy`](Self::policy).
    pub fn tokens(mut self, tokens: Tokens) -> Self {
        self.tokens = Some(tokens);
        self
    }

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

    /// Timeouts and caps (default [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves HTTPS with `tls` instead of plain HTTP.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
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
    /// tests of parallel downloads (`cargo xtask bench parallel`); only with
    /// the `bench` feature.
    #[cfg(feature = "bench")]
    pub fn rate_limit_per_connection(mut self, bytes_per_sec: u64) -> Self {
        self.rate_limit = Some(bytes_per_sec);
        self
    }

    /// Serves each request in a `request` span (target
    /// `cachew_server::access`, as the access log's, level info) whose fields are the
    /// attributes `headers` names, valued from the request's headers (the
    /// Go server's `--log-headers`): the access log entry and every event
    /// logged while serving the request carry them. Credential headers
    /// are logged as [`REDACTED`].
    pub fn log_headers(mut self, headers: LogHeaders) -> Self {
        self.log_headers = (!headers.is_empty()).then_some(headers);
        self
    }

    /// Adds a metric to `GET /metrics`, read by `read` at every scrape:
    /// e.g. the disk cache's evictions, which the [`Cache`] trait does not
    /// report. `name` must be a valid Prometheus name (`cachew_…_total`
    /// for a counter).
    pub fn metric(
        mut self,
        name: &'static str,
        help: &'static str,
        kind: MetricKind,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        self.metrics.push(metrics::Extra {
            name,
            help,
            kind,
            read: Box::new(read),
        });
        self
    }

    /// The configured server.
    pub fn build(self) -> Server {
        let state = Arc::new(State {
            cache: self.cache,
            tokens: self.tokens,
            policy: self.policy,
            max_ttl: self.max_ttl,
            max_object_size: self.limits.max_object_size,
            git: self.git_root.map(git::GitState::new),
            metrics: metrics::Metrics::new(self.metrics),
        });
        Server {
            shared: Arc::new(Shared {
                state,
                limits: self.limits,
                tls: self.tls,
                rate_limit: self.rate_limit,
                http: Shared::http_builder(),
                log_headers: self.log_headers,
            }),
            grace: self.grace,
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
            tokens: None,
            policy: None,
            max_ttl: None,
            grace: DEFAULT_GRACE_PERIOD,
            git_root: None,
            rate_limit: None,
            limits: Limits::default(),
            tls: None,
            metrics: Vec::new(),
            log_headers: None,
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
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
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
            scheme,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Serves `listener` until `shutdown` completes, then stops accepting,
    /// lets in-flight requests finish (for at most the grace period) and
    /// returns.
    ///
    /// Connections beyond [`Limits::max_connections`] wait in the listen
    /// backlog; those beyond [`Limits::max_connections_per_client`] from one
    /// address are closed at once. Failing to accept (typically out of file
    /// descriptors) never stops the server: it backs off and tries again.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let caps = ConnectionCaps::new(&self.shared.limits);
        let mut connections = Connections::new();
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                () = &mut shutdown => break,
                () = connections.reap(), if !connections.is_empty() => continue,
                slot = caps.slot() => slot,
            };
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                () = connections.reap(), if !connections.is_empty() => continue,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: back off rather
                    // than spin, and keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            };
            let Some(admission) = caps.admit(slot, peer.ip()) else {
                // Logged at debug only: an attacker must not be able to
                // flood the log either.
                tracing::debug!(%peer, "too many connections from this client; closing");
                drop(stream);
                continue;
            };
            let shared = self.shared.clone();
            connections.spawn(move |stopping| {
                connection::serve(shared, stream, peer, admission, stopping)
            });
        }
        drop(listener);
        connections.drain(self.grace).await;
        Ok(())
    }
}

/// How long the accept loop waits after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A server serving on a background task; see [`Server::bind`].
///
/// Dropping the handle starts a graceful shutdown without waiting for it.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    scheme: &'static str,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL, e.g. `http://127.0.0.1:41234` (`https://`
    /// with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
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

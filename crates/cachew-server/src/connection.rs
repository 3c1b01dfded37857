//! Serving one accepted connection: the TLS handshake (bounded by the
//! header timeout), hyper's HTTP/1.1 and HTTP/2 connection, the header and
//! idle timers, and per request the body limits and the access log entry.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::access_log::{Entry, Logged};
use crate::handler::{self, State};
use crate::limits::{Admission, Limits};
use crate::log_headers::LogHeaders;
use crate::request_body::RequestBody;
use crate::shutdown::Stopping;
#[cfg(feature = "bench")]
use crate::throttle::Throttled;
use crate::tls::TlsConfig;
use crate::watchdog::{Activity, Expired, Timeouts, Watched};

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) state: Arc<State>,
    pub(crate) limits: Limits,
    pub(crate) tls: Option<TlsConfig>,
    #[cfg_attr(not(feature = "bench"), allow(dead_code))]
    pub(crate) rate_limit: Option<u64>,
    pub(crate) http: auto::Builder<TokioExecutor>,
    /// Request headers logged as attributes, if configured.
    pub(crate) log_headers: Option<LogHeaders>,
}

impl Shared {
    pub(crate) fn http_builder() -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper's own header timer is off: it would also run while a
        // keep-alive connection is idle (see `watchdog.rs`).
        builder
            .http1()
            .max_buf_size(1 << 20)
            .header_read_timeout(None);
        builder
    }
}

/// How long an idle connection that was asked to close may take to do so.
const CLOSE_TIME: Duration = Duration::from_secs(5);

/// Serves `stream` from `peer` until it closes, times out, or the server
/// stops (then gracefully). `admission` holds its connection slots.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    admission: Admission,
    stopping: Stopping,
) {
    let _admission = admission;
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    #[cfg(feature = "bench")]
    let stream = Throttled::new(stream, shared.rate_limit);
    let io = Watched::new(stream, activity.clone());
    let Some(tls) = shared.tls.clone() else {
        return run(shared, io, peer, activity, stopping).await;
    };
    let handshake = tokio::time::timeout(shared.limits.header_timeout, tls.acceptor.accept(io));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = stopping.clone().wait() => return,
    };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        activity.set_http2();
    }
    run(shared, stream, peer, activity, stopping).await;
}

async fn run<I>(
    shared: Arc<Shared>,
    io: I,
    peer: SocketAddr,
    activity: Activity,
    stopping: Stopping,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let shared = shared.clone();
        let activity = activity.clone();
        service_fn(move |req: Request<Incoming>| {
            let shared = shared.clone();
            let activity = activity.clone();
            async move {
                let busy = activity.request();
                if req.version() == Version::HTTP_2 {
                    activity.set_http2();
                }
                let received = Arc::new(AtomicU64::new(0));
                let span = match &shared.log_headers {
                    Some(log_headers) => log_headers.span(req.headers()),
                    None => tracing::Span::none(),
                };
                let entry = Entry::start(
                    req.method(),
                    req.uri().path(),
                    peer,
                    received.clone(),
                    shared.state.metrics.clone(),
                    span.clone(),
                );
                let limits = &shared.limits;
                let req = req.map(|body| {
                    RequestBody::new(body, limits.body_timeout, limits.max_object_size, received)
                });
                let response = tracing::Instrument::instrument(
                    handler::handle(shared.state.clone(), req),
                    span,
                )
                .await;
                Ok::<_, Infallible>(Logged::wrap(response, entry, busy))
            }
        })
    };
    let conn = shared
        .http
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    tokio::pin!(conn);
    let limits = &shared.limits;
    let timeouts = Timeouts {
        header: limits.header_timeout,
        idle: limits.idle_timeout,
        send: limits.body_timeout,
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping.wait() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        expired = activity.expired(timeouts) => match expired {
            Expired::Header => {
                tracing::debug!(%peer, "no request headers in time; closing the connection");
                return;
            }
            Expired::Send => {
                tracing::debug!(%peer, "the client stopped reading; closing the connection");
                return;
            }
            Expired::Idle => {
                tracing::debug!(%peer, "idle connection; closing it");
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(CLOSE_TIME, conn).await {
                    Ok(r) => r,
                    Err(_) => return,
                }
            }
        },
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

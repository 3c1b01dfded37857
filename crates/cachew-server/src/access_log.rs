//! The access log: one `tracing` event at `info` per request, written when
//! its response is done (sent, or cut off), with method, path, status,
//! bytes received and sent, duration, client address and token id — never
//! the token itself, and never the query string (it may carry one).
//!
//! Every field is a `tracing` field, so a structured (e.g. JSON) subscriber
//! gets them as such; the event's target is `cachew_server::access`. It is
//! logged inside the request's span, which carries the `--log-headers`
//! attributes (`log_headers.rs`).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::auth::TokenId;
use crate::metrics::Metrics;
use crate::watchdog::Busy;

/// A request being served, logged when dropped.
#[derive(Debug)]
pub(crate) struct Entry {
    method: Method,
    path: String,
    peer: SocketAddr,
    started: Instant,
    received: Arc<AtomicU64>,
    /// `None` until the handler answered: a request cut off before its
    /// answer (shutdown deadline, broken connection) logs status `-`.
    status: Option<StatusCode>,
    token: Option<TokenId>,
    sent: u64,
    complete: bool,
    metrics: Arc<Metrics>,
    /// The request's span (its `--log-headers` attributes), entered to log.
    span: tracing::Span,
}

impl Entry {
    /// Starts the entry of a request from `peer`; `received` counts its
    /// body bytes. When done it is also counted in `metrics`; it is logged
    /// inside `span`.
    pub(crate) fn start(
        method: &Method,
        path: &str,
        peer: SocketAddr,
        received: Arc<AtomicU64>,
        metrics: Arc<Metrics>,
        span: tracing::Span,
    ) -> Entry {
        Entry {
            method: method.clone(),
            path: path.to_owned(),
            peer,
            started: Instant::now(),
            received,
            status: None,
            token: None,
            sent: 0,
            complete: false,
            metrics,
            span,
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let received = self.received.load(Ordering::Relaxed);
        self.metrics
            .record(&self.method, &self.path, self.status, received, self.sent);
        let token = self.token.as_ref().map_or("-", TokenId::as_str);
        let status = self
            .status
            .map_or_else(|| "-".to_owned(), |s| s.as_u16().to_string());
        let _entered = self.span.enter();
        tracing::info!(
            target: "cachew_server::access",
            method = %self.method,
            path = %self.path,
            status = %status,
            received,
            sent = self.sent,
            ms = self.started.elapsed().as_millis() as u64,
            client = %self.peer,
            token = %token,
            complete = self.complete,
            "request"
        );
    }
}

/// A response body that counts what it sends and, when done or dropped,
/// writes the access log entry and lets the connection go idle.
#[derive(Debug)]
pub(crate) struct Logged<B> {
    inner: B,
    entry: Entry,
    _busy: Busy,
}

impl<B: Body> Logged<B> {
    /// Finishes `entry` with the response's status and token id.
    pub(crate) fn wrap(
        response: http::Response<B>,
        mut entry: Entry,
        busy: Busy,
    ) -> http::Response<Logged<B>> {
        entry.status = Some(response.status());
        entry.token = response.extensions().get::<TokenId>().cloned();
        entry.complete = response.body().is_end_stream();
        response.map(|inner| Logged {
            inner,
            entry,
            _busy: busy,
        })
    }
}

impl<B> Body for Logged<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.entry.sent += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.entry.complete = true;
                }
            }
            Poll::Ready(None) => this.entry.complete = true,
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

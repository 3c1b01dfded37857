//! The request body every handler reads: hyper's body with a stall
//! timeout (no bytes for [`Limits::body_timeout`](crate::Limits)), a size
//! cap ([`Limits::max_object_size`](crate::Limits)) and a byte count for
//! the access log.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Why reading a request body failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The connection broke or the client sent a malformed body.
    #[error("{0}")]
    Incoming(#[from] hyper::Error),
    /// No bytes arrived for the stall timeout.
    #[error("no request body bytes for {0:?}")]
    Stalled(Duration),
    /// The body is longer than the cap.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
}

/// A request body with the server's limits applied.
pub(crate) struct RequestBody {
    inner: Incoming,
    stall: Duration,
    timer: Pin<Box<Sleep>>,
    /// Whether `timer` runs for the current wait.
    waiting: bool,
    max: Option<u64>,
    received: Arc<AtomicU64>,
    failed: bool,
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("received", &self.received.load(Ordering::Relaxed))
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl RequestBody {
    /// Wraps `inner`; bytes read are added to `received`.
    pub(crate) fn new(
        inner: Incoming,
        stall: Duration,
        max: Option<u64>,
        received: Arc<AtomicU64>,
    ) -> RequestBody {
        RequestBody {
            inner,
            stall,
            timer: Box::pin(tokio::time::sleep(stall)),
            waiting: false,
            max,
            received,
            failed: false,
        }
    }

    /// The body without limits, for draining what is left after an early
    /// answer (`handler::linger`, which bounds it itself).
    pub(crate) fn into_inner(self) -> Incoming {
        self.inner
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // The stall clock starts again at the next wait, not here:
                // time the handler spends writing the last frame to disk is
                // not the client's.
                this.waiting = false;
                let Some(frame) = frame else {
                    return Poll::Ready(None);
                };
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(e) => {
                        this.failed = true;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                };
                if let Some(data) = frame.data_ref() {
                    let total = this
                        .received
                        .fetch_add(data.len() as u64, Ordering::Relaxed)
                        + data.len() as u64;
                    if let Some(max) = this.max.filter(|max| total > *max) {
                        this.failed = true;
                        return Poll::Ready(Some(Err(BodyError::TooLarge(max))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = Instant::now() + this.stall;
                    this.timer.as_mut().reset(deadline);
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.failed = true;
                    return Poll::Ready(Some(Err(BodyError::Stalled(this.stall))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

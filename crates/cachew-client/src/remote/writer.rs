//! [`RemoteWriter`]: a Create streamed as a chunked request body.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cachew_transport::{BodySender, ResponseBody};
use futures_util::FutureExt;
use http::{Response, StatusCode};
use tokio::io::AsyncWrite;
use tokio::task::JoinHandle;

use super::client::status_error;
use crate::cache::{AbortCause, CacheWriter};
use crate::error::{Error, Result};

/// Bytes gathered before they are handed to the connection as one chunk:
/// small writes are coalesced, big ones split, so framing costs stay small
/// and memory stays bounded. (On loopback, 256 KiB beat 64 KiB and 1 MiB.)
pub(super) const CHUNK: usize = 256 * 1024;
/// Chunks queued between the writer and the connection; with [`CHUNK`] this
/// bounds an upload's buffering to about 1 MiB plus one chunk in flight.
pub(super) const QUEUE: usize = 4;

type ResponseTask =
    JoinHandle<std::result::Result<Response<ResponseBody>, cachew_transport::Error>>;
type SendFuture = Pin<
    Box<dyn Future<Output = (BodySender, std::result::Result<(), cachew_transport::Error>)> + Send>,
>;
type ErrorFuture = Pin<Box<dyn Future<Output = Error> + Send>>;

/// The writer [`RemoteCache::create`](crate::Cache::create) returns.
///
/// Writes are coalesced into chunks and queued to the request body with
/// backpressure; the server stores the object only when the body ends
/// cleanly, which happens in [`commit`](CacheWriter::commit) alone. An abort
/// or a drop fails the body, so the server discards the upload.
///
/// When the server answers before the upload is complete (a `403` from its
/// policy, a `400` for a bad header), the next write fails with an
/// [`io::Error`] whose inner error is the typed [`Error`], and `commit` or
/// `abort` return that typed error: the server's status is never reduced to
/// a broken pipe.
pub(super) struct RemoteWriter {
    url: String,
    buf: BytesMut,
    phase: Phase,
}

enum Phase {
    Streaming {
        sender: Option<BodySender>,
        sending: Option<SendFuture>,
        response: ResponseTask,
    },
    /// The request ended before commit; waiting for its outcome.
    Ending(ErrorFuture),
    /// The request ended before commit with this error, not yet returned by
    /// commit or abort.
    Failed(Option<Error>),
    Committed,
    CommitFailed,
    Aborted,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Streaming { .. } => "streaming",
            Phase::Ending(_) => "ending",
            Phase::Failed(_) => "failed",
            Phase::Committed => "committed",
            Phase::CommitFailed => "failed",
            Phase::Aborted => "aborted",
        }
    }
}

impl fmt::Debug for RemoteWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteWriter")
            .field("url", &super::redact_url(&self.url))
            .field("buffered", &self.buf.len())
            .field("phase", &self.phase.name())
            .finish()
    }
}

/// The error to report for a request that ended without committing.
async fn outcome_error(response: ResponseTask, url: String) -> Error {
    match response.await {
        Ok(Ok(resp)) if resp.status() == StatusCode::OK => Error::Backend(format!(
            "{} answered 200 before the upload was finished",
            super::redact_url(&url)
        )),
        Ok(Ok(resp)) => status_error(resp).await,
        Ok(Err(e)) => Error::Transport(e),
        Err(e) => Error::Backend(format!("the upload task failed: {e}")),
    }
}

/// A copy of `err` to hand out as an `io::Error` while the original waits
/// for commit or abort.
fn duplicate(err: &Error) -> Error {
    match err {
        Error::NotFound => Error::NotFound,
        Error::PreconditionFailed => Error::PreconditionFailed,
        Error::Status { code, message } => Error::Status {
            code: *code,
            message: message.clone(),
        },
        other => Error::Backend(other.to_string()),
    }
}

fn to_io(err: &Error) -> io::Error {
    let kind = match err {
        Error::Transport(e) if e.is_timeout() => io::ErrorKind::TimedOut,
        Error::Transport(_) => io::ErrorKind::BrokenPipe,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, duplicate(err))
}

fn closed(phase: &Phase) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, Error::WriterClosed(phase.name()))
}

impl RemoteWriter {
    pub(super) fn new(url: String, sender: BodySender, response: ResponseTask) -> RemoteWriter {
        RemoteWriter {
            url,
            buf: BytesMut::new(),
            phase: Phase::Streaming {
                sender: Some(sender),
                sending: None,
                response,
            },
        }
    }

    /// Moves a streaming writer whose request ended to [`Phase::Ending`].
    fn end_request(&mut self) {
        let old = std::mem::replace(&mut self.phase, Phase::Failed(None));
        if let Phase::Streaming { response, .. } = old {
            self.buf.clear();
            self.phase = Phase::Ending(Box::pin(outcome_error(response, self.url.clone())));
        } else {
            self.phase = old;
        }
    }

    /// Drives the request to an end state when it ended early, returning
    /// the I/O form of its error.
    fn poll_failure(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if let Phase::Ending(fut) = &mut self.phase {
            let err = ready!(fut.as_mut().poll(cx));
            self.phase = Phase::Failed(Some(err));
        }
        match &self.phase {
            Phase::Failed(Some(err)) => Poll::Ready(to_io(err)),
            other => Poll::Ready(closed(other)),
        }
    }

    /// Drives the chunk in flight, if any, into the queue. `Ready(Ok)` means
    /// the writer is streaming with no chunk in flight.
    fn poll_sending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.phase {
                Phase::Streaming {
                    sender,
                    sending,
                    response,
                } => {
                    if let Some(fut) = sending {
                        let (tx, result) = ready!(fut.as_mut().poll(cx));
                        *sending = None;
                        *sender = Some(tx);
                        if result.is_err() {
                            self.end_request();
                            continue;
                        }
                    }
                    if response.is_finished() {
                        // The server answered before the upload was over.
                        self.end_request();
                        continue;
                    }
                    return Poll::Ready(Ok(()));
                }
                Phase::Ending(_) | Phase::Failed(_) => {
                    return Poll::Ready(Err(ready!(self.poll_failure(cx))))
                }
                other => return Poll::Ready(Err(closed(other))),
            }
        }
    }

    /// Queues `chunk`, polling it once; the writer must be streaming with
    /// nothing in flight.
    fn start_send(&mut self, chunk: Bytes, cx: &mut Context<'_>) {
        if let Phase::Streaming {
            sender, sending, ..
        } = &mut self.phase
        {
            if let Some(mut tx) = sender.take() {
                *sending = Some(Box::pin(async move {
                    let result = tx.send(chunk).await;
                    (tx, result)
                }));
                // The chunk counts as accepted; a failure shows on the next
                // call.
                let _ = self.poll_sending(cx);
            }
        }
    }

    /// Takes the body sender for finishing or aborting, abandoning a chunk
    /// still waiting for queue space (dropping it fails the body).
    fn take_sender(&mut self) -> Option<(BodySender, ResponseTask)> {
        let old = std::mem::replace(&mut self.phase, Phase::Aborted);
        match old {
            Phase::Streaming {
                sender,
                sending,
                response,
            } => {
                let sender = match (sender, sending) {
                    (Some(tx), _) => Some(tx),
                    (None, Some(fut)) => fut.now_or_never().map(|(tx, _)| tx),
                    (None, None) => None,
                };
                sender.map(|tx| (tx, response))
            }
            other => {
                self.phase = other;
                None
            }
        }
    }
}

impl AsyncWrite for RemoteWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_sending(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.buf.is_empty() && this.buf.capacity() < CHUNK {
            // One allocation per chunk instead of a doubling series.
            this.buf = BytesMut::with_capacity(CHUNK);
        }
        let n = data.len().min(CHUNK - this.buf.len());
        this.buf.extend_from_slice(&data[..n]);
        if this.buf.len() >= CHUNK {
            let chunk = this.buf.split().freeze();
            this.start_send(chunk, cx);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(
            this.phase,
            Phase::Committed | Phase::Aborted | Phase::CommitFailed
        ) {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_sending(cx))?;
        if !this.buf.is_empty() {
            let chunk = this.buf.split().freeze();
            this.start_send(chunk, cx);
            ready!(this.poll_sending(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Flushes; it does not commit (only [`CacheWriter::commit`] does).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[async_trait]
impl CacheWriter for RemoteWriter {
    async fn commit(&mut self) -> Result<()> {
        match &mut self.phase {
            Phase::Committed => return Ok(()),
            Phase::Aborted => return Err(Error::WriterClosed("aborted")),
            Phase::CommitFailed => return Err(Error::WriterClosed("failed")),
            _ => {}
        }
        if std::future::poll_fn(|cx| Pin::new(&mut *self).poll_flush(cx))
            .await
            .is_err()
        {
            // The request ended early: report its typed error once.
            std::future::poll_fn(|cx| self.poll_failure(cx).map(|_| ())).await;
            let err = match std::mem::replace(&mut self.phase, Phase::CommitFailed) {
                Phase::Failed(Some(err)) => err,
                other => Error::WriterClosed(other.name()),
            };
            return Err(err);
        }
        let Some((tx, response)) = self.take_sender() else {
            self.phase = Phase::CommitFailed;
            return Err(Error::WriterClosed("failed"));
        };
        tx.finish();
        let outcome = match response.await {
            Ok(Ok(resp)) if resp.status() == StatusCode::OK => Ok(()),
            Ok(Ok(resp)) => Err(status_error(resp).await),
            Ok(Err(e)) => Err(Error::Transport(e)),
            Err(e) => Err(Error::Backend(format!("the upload task failed: {e}"))),
        };
        self.phase = if outcome.is_ok() {
            Phase::Committed
        } else {
            Phase::CommitFailed
        };
        outcome
    }

    async fn abort(&mut self, cause: AbortCause) -> Result<()> {
        match &mut self.phase {
            Phase::Committed | Phase::Aborted | Phase::CommitFailed => return Ok(()),
            Phase::Ending(_) | Phase::Failed(_) => {
                std::future::poll_fn(|cx| self.poll_failure(cx).map(|_| ())).await;
                let old = std::mem::replace(&mut self.phase, Phase::Aborted);
                // The server's answer (e.g. 403) is why the caller aborts;
                // keep it rather than reporting a clean abort.
                return match old {
                    Phase::Failed(Some(err @ Error::Status { .. })) => Err(err),
                    _ => Ok(()),
                };
            }
            Phase::Streaming { .. } => {}
        }
        self.buf.clear();
        let Some((tx, response)) = self.take_sender() else {
            return Ok(());
        };
        tx.abort(cause);
        self.phase = Phase::Aborted;
        match response.await {
            Ok(Ok(resp)) if resp.status() != StatusCode::OK => match status_error(resp).await {
                err @ Error::Status { .. } => Err(err),
                _ => Ok(()),
            },
            // The expected outcome: the request failed with the abort.
            _ => Ok(()),
        }
    }
}

//! Request and response bodies.
//!
//! [`RequestBody`] is what callers send: nothing, a buffered [`Bytes`] (which
//! the retry layer can replay), or a channel fed by a [`BodySender`] for
//! streaming uploads (never replayed). [`ResponseBody`] wraps hyper's
//! incoming body with the idle timeout and the request's tracing span.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use crate::error::{AbortMarker, BoxError, Error, SenderDropped, TimeoutKind};

// ---------------------------------------------------------------------------
// Request body
// ---------------------------------------------------------------------------

/// The body of a request sent through [`HttpClient`](crate::HttpClient).
///
/// - [`RequestBody::empty`] and [`RequestBody::full`] are buffered and can be
///   replayed, so requests carrying them are eligible for retries.
/// - [`RequestBody::channel`] streams chunks pushed through a [`BodySender`];
///   such a request is never retried (the data is gone once sent).
///
/// A streaming body ends cleanly only through [`BodySender::finish`]. An
/// [`abort`](BodySender::abort), or dropping the sender without finishing,
/// makes the body yield an error so that hyper tears the connection down and
/// the server never sees a clean end of the upload.
pub struct RequestBody {
    kind: Kind,
    /// Set by the timeout layer: records when the body last made progress so
    /// that the wait for response headers is measured from there.
    progress: Option<Arc<Progress>>,
}

/// The largest frame handed to hyper at once. Bigger buffers are sliced
/// (without copying) so that hyper asks for the next frame only when its
/// write buffer drained: the body's progress then tracks what actually
/// reached the socket, which is what the response-header timer measures.
const MAX_FRAME: usize = 64 * 1024;

enum Kind {
    Empty,
    Full { data: Bytes, offset: usize },
    Channel(ChannelBody),
}

struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    /// The rest of a chunk larger than [`MAX_FRAME`].
    pending: Bytes,
    end: Arc<OnceLock<End>>,
    done: bool,
}

/// Takes the next frame of at most [`MAX_FRAME`] bytes off `buf`.
fn next_frame(buf: &mut Bytes) -> Bytes {
    let n = buf.len().min(MAX_FRAME);
    buf.split_to(n)
}

/// How a streaming body ended, decided by the sender.
enum End {
    Finished,
    Aborted(Arc<dyn StdError + Send + Sync + 'static>),
}

impl RequestBody {
    /// A body without content.
    pub fn empty() -> Self {
        RequestBody {
            kind: Kind::Empty,
            progress: None,
        }
    }

    /// A buffered body, sent with a `Content-Length`. It can be replayed, so a
    /// request carrying it may be retried.
    pub fn full(data: impl Into<Bytes>) -> Self {
        RequestBody {
            kind: Kind::Full {
                data: data.into(),
                offset: 0,
            },
            progress: None,
        }
    }

    /// A streaming body (sent with chunked transfer encoding over HTTP/1.1)
    /// and the [`BodySender`] that feeds it. `capacity` is the number of
    /// chunks buffered between the sender and the connection (at least 1).
    /// A request carrying this body is never retried.
    pub fn channel(capacity: usize) -> (BodySender, RequestBody) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let end = Arc::new(OnceLock::new());
        let sender = BodySender {
            tx: Some(tx),
            end: end.clone(),
        };
        let body = RequestBody {
            kind: Kind::Channel(ChannelBody {
                rx,
                pending: Bytes::new(),
                end,
                done: false,
            }),
            progress: None,
        };
        (sender, body)
    }

    /// True if the body can be replayed (it is empty or buffered).
    pub fn is_replayable(&self) -> bool {
        !matches!(self.kind, Kind::Channel(_))
    }

    /// A fresh copy of a replayable body (from its start), or `None` for a
    /// streaming body.
    pub fn try_clone(&self) -> Option<RequestBody> {
        let kind = match &self.kind {
            Kind::Empty => Kind::Empty,
            Kind::Full { data, .. } => Kind::Full {
                data: data.clone(),
                offset: 0,
            },
            Kind::Channel(_) => return None,
        };
        Some(RequestBody {
            kind,
            progress: None,
        })
    }

    pub(crate) fn set_progress(&mut self, progress: Arc<Progress>) {
        self.progress = Some(progress);
    }

    fn poll_kind(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full { data, offset } => {
                if *offset >= data.len() {
                    return Poll::Ready(None);
                }
                let end = (*offset + MAX_FRAME).min(data.len());
                let frame = data.slice(*offset..end);
                *offset = end;
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            Kind::Channel(ch) => {
                if ch.done {
                    return Poll::Ready(None);
                }
                // An abort wins over data still queued: the upload is being
                // discarded, so there is no point in sending more of it.
                if let Some(End::Aborted(cause)) = ch.end.get() {
                    ch.done = true;
                    return Poll::Ready(Some(Err(Box::new(AbortMarker(cause.clone())))));
                }
                if !ch.pending.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(next_frame(&mut ch.pending)))));
                }
                match ready!(ch.rx.poll_recv(cx)) {
                    Some(mut data) => {
                        let frame = next_frame(&mut data);
                        ch.pending = data;
                        Poll::Ready(Some(Ok(Frame::data(frame))))
                    }
                    None => {
                        ch.done = true;
                        match ch.end.get() {
                            Some(End::Finished) => Poll::Ready(None),
                            Some(End::Aborted(cause)) => {
                                Poll::Ready(Some(Err(Box::new(AbortMarker(cause.clone())))))
                            }
                            // Unreachable in practice (the sender records an
                            // end before its channel closes), but never end
                            // cleanly by accident.
                            None => Poll::Ready(Some(Err(Box::new(AbortMarker(Arc::new(
                                SenderDropped,
                            )))))),
                        }
                    }
                }
            }
        }
    }
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::empty()
    }
}

impl From<Bytes> for RequestBody {
    fn from(data: Bytes) -> Self {
        RequestBody::full(data)
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(data: Vec<u8>) -> Self {
        RequestBody::full(data)
    }
}

impl From<&'static str> for RequestBody {
    fn from(data: &'static str) -> Self {
        RequestBody::full(data)
    }
}

impl From<String> for RequestBody {
    fn from(data: String) -> Self {
        RequestBody::full(data)
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Empty => f.write_str("RequestBody::Empty"),
            Kind::Full { data, .. } => f
                .debug_struct("RequestBody::Full")
                .field("len", &data.len())
                .finish(),
            Kind::Channel(_) => f.write_str("RequestBody::Channel"),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let poll = this.poll_kind(cx);
        if let Some(progress) = &this.progress {
            match &poll {
                // Waiting for the caller to produce data is not the server's
                // fault: the response-header timer is paused meanwhile.
                Poll::Pending => progress.waiting_on_caller(),
                Poll::Ready(Some(Err(err))) => {
                    progress.touch();
                    if let Some(marker) = err.downcast_ref::<AbortMarker>() {
                        progress.record_abort(marker.0.clone());
                    }
                }
                Poll::Ready(_) => progress.touch(),
            }
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full { data, offset } => *offset >= data.len(),
            Kind::Channel(ch) => ch.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full { data, offset } => {
                SizeHint::with_exact(data.len().saturating_sub(*offset) as u64)
            }
            Kind::Channel(_) => SizeHint::default(),
        }
    }
}

/// Progress of a request body, shared between the body and the timeout
/// layer's wait for response headers.
#[derive(Debug)]
pub(crate) struct Progress {
    state: Mutex<ProgressState>,
}

#[derive(Debug)]
struct ProgressState {
    last: Instant,
    waiting_on_caller: bool,
    /// The cause, once the body yielded an abort. hyper reports a failed
    /// body differently per protocol (HTTP/2 only says the stream was
    /// reset); this lets the timeout layer return the caller's cause anyway.
    aborted: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            state: Mutex::new(ProgressState {
                last: Instant::now(),
                waiting_on_caller: false,
                aborted: None,
            }),
        }
    }

    fn touch(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last = Instant::now();
        state.waiting_on_caller = false;
    }

    fn waiting_on_caller(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.waiting_on_caller = true;
    }

    fn record_abort(&self, cause: Arc<dyn StdError + Send + Sync + 'static>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.aborted.get_or_insert(cause);
    }

    /// The abort cause, if the body was aborted.
    pub(crate) fn aborted(&self) -> Option<Arc<dyn StdError + Send + Sync + 'static>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.aborted.clone()
    }

    /// When the wait for the server times out, or `None` while the body is
    /// waiting for the caller (the clock is paused then).
    pub(crate) fn deadline(&self, idle: Duration) -> Option<Instant> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.waiting_on_caller {
            None
        } else {
            Some(state.last + idle)
        }
    }
}

/// Feeds a streaming [`RequestBody`] created by [`RequestBody::channel`].
///
/// Exactly one of [`finish`](BodySender::finish) (clean end) and
/// [`abort`](BodySender::abort) (failed body) ends the upload; dropping the
/// sender without either aborts it, so a partial upload never ends cleanly
/// by accident.
pub struct BodySender {
    tx: Option<mpsc::Sender<Bytes>>,
    end: Arc<OnceLock<End>>,
}

impl BodySender {
    /// Queues a chunk, waiting while the channel is full.
    ///
    /// Fails with [`Error::BodyClosed`] when the request has already ended
    /// (the connection dropped the body, e.g. because the server answered
    /// early and closed); look at the request's result for the reason.
    pub async fn send(&mut self, data: Bytes) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        match &self.tx {
            Some(tx) => tx.send(data).await.map_err(|_| Error::BodyClosed),
            None => Err(Error::BodyClosed),
        }
    }

    /// True when the request no longer accepts data (it ended or failed).
    pub fn is_closed(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_closed())
    }

    /// Ends the body cleanly after the chunks already queued.
    pub fn finish(mut self) {
        let _ = self.end.set(End::Finished);
        self.tx = None;
    }

    /// Aborts the upload: the body yields an error instead of its end, hyper
    /// closes the connection without finishing the message, and the pending
    /// request fails with [`Error::BodyAborted`] carrying `cause` (unless the
    /// server already answered, in which case that response stands).
    pub fn abort(mut self, cause: impl Into<BoxError>) {
        let cause: Arc<dyn StdError + Send + Sync + 'static> = Arc::from(cause.into());
        let _ = self.end.set(End::Aborted(cause));
        self.tx = None;
    }
}

impl Drop for BodySender {
    fn drop(&mut self) {
        if self.tx.take().is_some() {
            let _ = self.end.set(End::Aborted(Arc::new(SenderDropped)));
        }
    }
}

impl fmt::Debug for BodySender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodySender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Response body
// ---------------------------------------------------------------------------

/// The body of a response, with the idle timeout applied: each wait for the
/// next chunk fails with [`Error::Timeout`] ([`TimeoutKind::BodyIdle`]) once it
/// exceeds the client's idle timeout, so a stalled transfer never hangs.
///
/// A connection that drops before the body is complete yields an error
/// (never a short success) whenever the length is known (`Content-Length`,
/// chunked encoding, HTTP/2). Only a legacy HTTP/1.0-style body delimited by
/// connection close cannot be told apart from its end.
///
/// Read it as an [`http_body::Body`], collect it with
/// [`bytes`](ResponseBody::bytes) /
/// [`bytes_limited`](ResponseBody::bytes_limited), or turn it into a
/// [`tokio::io::AsyncRead`] with [`into_async_read`](ResponseBody::into_async_read).
pub struct ResponseBody {
    inner: Inner,
    idle: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// True while a poll is waiting for the next frame; the idle clock starts
    /// when the caller asks for a frame, not when the previous one arrived,
    /// so a slow consumer is never blamed on the server.
    waiting: bool,
    origin: String,
    received: u64,
    span: Option<tracing::Span>,
    finished: bool,
}

enum Inner {
    Incoming(Incoming),
    Full(Option<Bytes>),
}

impl ResponseBody {
    pub(crate) fn incoming(inner: Incoming, idle: Duration, origin: String) -> Self {
        ResponseBody {
            inner: Inner::Incoming(inner),
            idle: Some(idle),
            sleep: None,
            waiting: false,
            origin,
            received: 0,
            span: None,
            finished: false,
        }
    }

    /// An empty body (useful for tests and synthetic responses).
    pub fn empty() -> Self {
        ResponseBody::full(Bytes::new())
    }

    /// A body made of one buffer (useful for tests and synthetic responses).
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        ResponseBody {
            inner: Inner::Full((!data.is_empty()).then_some(data)),
            idle: None,
            sleep: None,
            waiting: false,
            origin: String::new(),
            received: 0,
            span: None,
            finished: false,
        }
    }

    /// Attaches the request's span; the received byte count is recorded on
    /// it when the body ends or is dropped.
    pub(crate) fn attach_span(&mut self, span: tracing::Span) {
        self.span = Some(span);
    }

    /// Number of body bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// Collects the whole body into memory. Prefer
    /// [`bytes_limited`](ResponseBody::bytes_limited) for bodies from
    /// untrusted sizes.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        self.collect_limited(None).await
    }

    /// Collects the whole body, failing with [`Error::BodyTooLarge`] once it
    /// exceeds `limit` bytes.
    pub async fn bytes_limited(self, limit: u64) -> Result<Bytes, Error> {
        self.collect_limited(Some(limit)).await
    }

    async fn collect_limited(mut self, limit: Option<u64>) -> Result<Bytes, Error> {
        if let (Some(limit), Some(upper)) = (limit, self.size_hint().upper()) {
            if upper > limit {
                return Err(Error::BodyTooLarge { limit });
            }
        }
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut self).poll_frame(cx)).await
        {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            if let Some(limit) = limit {
                if self.received > limit {
                    return Err(Error::BodyTooLarge { limit });
                }
            }
            // Avoid a copy for the common single-chunk body.
            match first.take() {
                None if buf.is_empty() => first = Some(data),
                None => buf.extend_from_slice(&data),
                Some(prev) => {
                    buf.extend_from_slice(&prev);
                    buf.extend_from_slice(&data);
                }
            }
        }
        Ok(first.unwrap_or_else(|| buf.freeze()))
    }

    /// Turns the body into a [`tokio::io::AsyncRead`], for streaming it into a
    /// file or a decompressor. Errors become [`io::Error`]s whose inner error
    /// is the transport [`Error`] (retrieve it with `get_ref` and
    /// `downcast_ref`); an idle timeout has kind [`io::ErrorKind::TimedOut`].
    pub fn into_async_read(self) -> BodyReader {
        BodyReader {
            body: self,
            chunk: Bytes::new(),
        }
    }

    fn record_end(&mut self, error: Option<&Error>) {
        self.finished = true;
        self.sleep = None;
        if let Some(span) = &self.span {
            span.record("bytes", self.received);
            if let Some(err) = error {
                span.record("error", tracing::field::display(err));
            }
        }
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match &mut self.inner {
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Inner::Incoming(incoming) => match ready!(Pin::new(incoming).poll_frame(cx)) {
                Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
                Some(Err(err)) => Poll::Ready(Some(Err(Error::from_boxed(Box::new(err))))),
                None => Poll::Ready(None),
            },
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        match this.poll_inner(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                if let Some(data) = frame.data_ref() {
                    this.received += data.remaining() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.record_end(Some(&err));
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                this.record_end(None);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(idle) = this.idle else {
                    return Poll::Pending;
                };
                let deadline = tokio::time::Instant::now() + idle;
                if !this.waiting {
                    this.waiting = true;
                    match &mut this.sleep {
                        Some(sleep) => sleep.as_mut().reset(deadline),
                        None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(sleep.as_mut().poll(cx));
                let err = Error::Timeout {
                    kind: TimeoutKind::BodyIdle,
                    after: idle,
                    url: this.origin.clone(),
                };
                this.record_end(Some(&err));
                // Dropping hyper's body tells the connection to close rather
                // than be reused with a half-read response on it.
                this.inner = Inner::Full(None);
                Poll::Ready(Some(Err(err)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
            || match &self.inner {
                Inner::Incoming(b) => b.is_end_stream(),
                Inner::Full(d) => d.is_none(),
            }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Incoming(b) => b.size_hint(),
            Inner::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if !self.finished {
            if let Some(span) = &self.span {
                span.record("bytes", self.received);
            }
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("received", &self.received)
            .field("idle_timeout", &self.idle)
            .field("finished", &self.finished)
            .finish()
    }
}

/// A [`tokio::io::AsyncRead`] over a [`ResponseBody`], from
/// [`ResponseBody::into_async_read`].
pub struct BodyReader {
    body: ResponseBody,
    chunk: Bytes,
}

impl BodyReader {
    /// The body being read (e.g. to ask for [`ResponseBody::bytes_received`]).
    pub fn get_ref(&self) -> &ResponseBody {
        &self.body
    }
}

impl fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyReader")
            .field("body", &self.body)
            .field("buffered", &self.chunk.len())
            .finish()
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.chunk.is_empty() {
                let n = this.chunk.len().min(buf.remaining());
                buf.put_slice(&this.chunk.split_to(n));
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.chunk = data;
                    }
                }
                Some(Err(err)) => return Poll::Ready(Err(into_io_error(err))),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// Wraps a transport error into an `io::Error` with a fitting kind, keeping
/// the original as the inner error.
pub(crate) fn into_io_error(err: Error) -> io::Error {
    let kind = match &err {
        Error::Timeout { .. } => io::ErrorKind::TimedOut,
        Error::Io { source } => source.kind(),
        Error::Protocol { source }
            if crate::error::find_in_chain::<hyper::Error>(&**source)
                .is_some_and(hyper::Error::is_incomplete_message) =>
        {
            io::ErrorKind::UnexpectedEof
        }
        Error::BodyTooLarge { .. } => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn frames(body: &mut RequestBody) -> Vec<Result<Bytes, String>> {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.push(
                frame
                    .map(|f| f.into_data().unwrap())
                    .map_err(|e| e.to_string()),
            );
        }
        out
    }

    #[tokio::test]
    async fn full_body_is_sliced_and_replayable() {
        let data = Bytes::from(vec![3u8; MAX_FRAME * 2 + 10]);
        let mut body = RequestBody::full(data.clone());
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        let copy = body.try_clone().expect("replayable");
        let got = frames(&mut body).await;
        let lens: Vec<usize> = got.iter().map(|f| f.as_ref().unwrap().len()).collect();
        assert_eq!(lens, [MAX_FRAME, MAX_FRAME, 10]);
        assert!(body.is_end_stream());
        let mut copy = copy;
        assert!(!copy.is_end_stream());
        assert_eq!(frames(&mut copy).await.len(), 3);
        assert!(RequestBody::empty().is_end_stream());
    }

    #[tokio::test]
    async fn channel_body_ends_cleanly_only_on_finish() {
        let (mut tx, mut body) = RequestBody::channel(4);
        assert!(body.try_clone().is_none());
        tx.send(Bytes::from(vec![1u8; MAX_FRAME + 1]))
            .await
            .unwrap();
        tx.finish();
        let got = frames(&mut body).await;
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(Result::is_ok));

        let (mut tx, mut body) = RequestBody::channel(4);
        tx.send(Bytes::from_static(b"part")).await.unwrap();
        drop(tx);
        let got = frames(&mut body).await;
        assert!(got.last().unwrap().is_err(), "{got:?}");

        let (mut tx, mut body) = RequestBody::channel(4);
        tx.send(Bytes::from_static(b"part")).await.unwrap();
        tx.abort("cancelled by caller");
        let got = frames(&mut body).await;
        // The abort wins over queued data.
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().unwrap_err().contains("cancelled by caller"));
    }

    #[tokio::test]
    async fn send_fails_once_the_body_is_gone() {
        let (mut tx, body) = RequestBody::channel(1);
        drop(body);
        assert!(tx.is_closed());
        let err = tx.send(Bytes::from_static(b"x")).await.unwrap_err();
        assert!(matches!(err, Error::BodyClosed));
    }

    #[tokio::test]
    async fn full_response_body_collects() {
        let body = ResponseBody::full("abc");
        assert_eq!(body.bytes().await.unwrap(), "abc");
        assert_eq!(ResponseBody::empty().bytes().await.unwrap(), "");
        let err = ResponseBody::full("abcdef")
            .bytes_limited(3)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BodyTooLarge { limit: 3 }));
    }
}

//! The response body type of the server.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use cachew_client::Body as ObjectBody;
use http_body::{Frame, SizeHint};

/// How much an object body is read from its backend per frame. Big enough
/// that a gigabyte over loopback is a few thousand frames, small enough to
/// keep per-connection memory modest.
const READ_CHUNK: usize = 256 * 1024;

/// The body of every response the server sends: empty, a small in-memory
/// payload (error messages, JSON), an object streamed from the backend or
/// the output of a child process (git smart HTTP), whose length is unknown.
pub struct ResponseBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream {
        reader: ObjectBody,
        buf: BytesMut,
        remaining: u64,
    },
    /// Sent chunked until `reader` ends; a reader error fails the body.
    Unsized {
        reader: ObjectBody,
        buf: BytesMut,
        done: bool,
    },
}

impl ResponseBody {
    /// A body with no bytes.
    pub(crate) fn empty() -> ResponseBody {
        ResponseBody {
            kind: Kind::Full(None),
        }
    }

    /// A body of `bytes`.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        let bytes = bytes.into();
        ResponseBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// A body streamed from `reader`, which must yield exactly `len` bytes.
    /// A reader that fails or ends early fails the body, so hyper aborts the
    /// connection and the client sees an error instead of a short success.
    pub(crate) fn stream(reader: ObjectBody, len: u64) -> ResponseBody {
        ResponseBody {
            kind: Kind::Stream {
                reader,
                buf: BytesMut::new(),
                remaining: len,
            },
        }
    }

    /// A body of unknown length streamed from `reader` until it ends. The
    /// reader reports a failure (e.g. a child that exited badly) as an
    /// error, which aborts the response instead of ending it cleanly.
    pub(crate) fn unsized_stream(reader: ObjectBody) -> ResponseBody {
        ResponseBody {
            kind: Kind::Unsized {
                reader,
                buf: BytesMut::new(),
                done: false,
            },
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => f
                .debug_struct("ResponseBody")
                .field("len", &bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream { remaining, .. } => f
                .debug_struct("ResponseBody")
                .field("remaining", remaining)
                .finish_non_exhaustive(),
            Kind::Unsized { done, .. } => f
                .debug_struct("ResponseBody")
                .field("done", done)
                .finish_non_exhaustive(),
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream {
                reader,
                buf,
                remaining,
            } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                if buf.capacity() < READ_CHUNK {
                    buf.reserve(READ_CHUNK);
                }
                let n = match tokio_util::io::poll_read_buf(reader.as_mut(), cx, buf) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(n)) => n as u64,
                };
                if n == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("object body ended {remaining} bytes early"),
                    ))));
                }
                if n > *remaining {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "object body is longer than its metadata says",
                    ))));
                }
                *remaining -= n;
                Poll::Ready(Some(Ok(Frame::data(buf.split().freeze()))))
            }
            Kind::Unsized { reader, buf, done } => {
                if *done {
                    return Poll::Ready(None);
                }
                if buf.capacity() < READ_CHUNK {
                    buf.reserve(READ_CHUNK);
                }
                match tokio_util::io::poll_read_buf(reader.as_mut(), cx, buf) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => {
                        *done = true;
                        Poll::Ready(Some(Err(e)))
                    }
                    Poll::Ready(Ok(0)) => {
                        *done = true;
                        Poll::Ready(None)
                    }
                    Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(Frame::data(buf.split().freeze())))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream { remaining, .. } => *remaining == 0,
            Kind::Unsized { done, .. } => *done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream { remaining, .. } => SizeHint::with_exact(*remaining),
            Kind::Unsized { .. } => SizeHint::default(),
        }
    }
}

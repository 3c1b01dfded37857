//! [`parallel_reader`]: one sequential stream reassembled from chunks
//! fetched concurrently, at most a bounded window ahead of the reader; and
//! [`open_object`], its drop-in for [`Cache::open`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use cachew_proto::{Key, OpenOptions};
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::get::request_chunk;
use super::plan::{discover, Discovery, Plan};
use super::source::CacheSource;
use super::{long_body, short_body, DownloadInfo, ParallelOptions, RangedSource};
use crate::cache::{Body, Cache, Object};
use crate::error::{Error, Result};

/// Size of the blocks a chunk is buffered in by [`parallel_reader`].
const SEGMENT: usize = 1 << 20;

/// Reads a chunk body of exactly `len` bytes into memory, in segments of
/// [`SEGMENT`] bytes: same-sized, modest blocks are reused by the allocator
/// as chunks come and go, so the resident size follows what is buffered
/// (whole-chunk blocks of 16 MiB end up spread over per-thread arenas and
/// keep the resident size near its worst case).
async fn read_chunk(mut body: Body, start: u64, len: u64) -> Result<VecDeque<Bytes>> {
    let mut parts = VecDeque::new();
    let mut got = 0u64;
    while got < len {
        let want = (len - got).min(SEGMENT as u64);
        let mut segment = Vec::with_capacity(want as usize);
        (&mut body).take(want).read_to_end(&mut segment).await?;
        got += segment.len() as u64;
        if (segment.len() as u64) < want {
            return Err(short_body(start, len, got).into());
        }
        parts.push_back(Bytes::from(segment));
    }
    let mut probe = [0u8; 1];
    if body.read(&mut probe).await? != 0 {
        return Err(long_body(start, len).into());
    }
    Ok(parts)
}

/// Fetches one chunk into memory.
async fn fetch_chunk(
    source: &dyn RangedSource,
    plan: &Plan,
    index: u64,
) -> Result<VecDeque<Bytes>> {
    let (start, len) = plan.range(index);
    let body = request_chunk(source, plan, start, len).await?;
    read_chunk(body, start, len).await
}

/// Downloads the object of `source` as one sequential stream reassembled
/// from concurrent ranged requests; see the [module documentation](crate::parallel).
///
/// Returns once the first response arrived, with what it revealed (size,
/// ETag, headers). Reading yields exactly the object's bytes or an error
/// (`io::Error` wrapping the facade's [`Error`]); it never ends early
/// without one. Dropping the reader cancels all fetches.
pub async fn parallel_reader(
    source: Arc<dyn RangedSource>,
    opts: &ParallelOptions,
) -> Result<(DownloadInfo, ParallelReader)> {
    match discover(&*source, opts).await? {
        Discovery::Single {
            body,
            size,
            etag,
            headers,
        } => Ok((
            DownloadInfo {
                size,
                etag,
                headers,
                parallel: false,
            },
            ParallelReader {
                state: State::Single(Checked::new(body, 0, size)),
            },
        )),
        Discovery::Split {
            plan,
            first,
            headers,
        } => {
            let info = DownloadInfo {
                size: Some(plan.total),
                etag: Some(plan.etag.clone()),
                headers,
                parallel: true,
            };
            let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
            // The discovery body is one of the concurrent requests while it
            // streams.
            let first_permit = permits.clone().try_acquire_owned().ok();
            let first_len = plan.first_len;
            let mut split = SplitReader {
                source,
                plan: Arc::new(plan),
                current: Current::First(Checked::new(first, 0, Some(first_len))),
                first_permit,
                pending: VecDeque::new(),
                next_spawn: 1,
                window: opts.window(),
                permits,
                first_error: Arc::default(),
                failed: false,
            };
            split.top_up();
            Ok((
                info,
                ParallelReader {
                    state: State::Split(Box::new(split)),
                },
            ))
        }
    }
}

/// Opens `key` of `cache` like [`Cache::open`], with the body downloaded
/// by [`parallel_reader`] when the object is at least
/// [`ParallelOptions::min_size`] bytes and the concurrency is above 1: a
/// drop-in for whole-object reads such as `restore`.
///
/// A Stat comes first (for the size and the metadata), so the returned
/// [`Object`] carries the object's full metadata. Works with a borrowed
/// `&dyn Cache` (the fetchers use an owned handle from
/// [`Cache::with_namespace`]). Should the object change between the Stat and
/// the first ranged request, it is read with one plain request instead; so
/// is an object whose Stat has no ETag (chunks cannot be pinned to it) or
/// no size (older servers, `PROTOCOL.md` §5).
pub async fn open_object(cache: &dyn Cache, key: &Key, opts: &ParallelOptions) -> Result<Object> {
    if opts.concurrency <= 1 {
        return cache.open(key, &OpenOptions::default()).await;
    }
    let meta = cache.stat(key, &OpenOptions::default()).await?;
    let pinnable = meta.etag.is_some() && meta.size.is_some_and(|s| s >= opts.min_size.max(1));
    if !pinnable {
        return cache.open(key, &OpenOptions::default()).await;
    }
    let owned = cache.with_namespace(cache.namespace().clone());
    let source = Arc::new(CacheSource::new(owned, *key));
    let (info, reader) = parallel_reader(source, opts).await?;
    if info.etag != meta.etag || info.size != meta.size {
        drop(reader);
        return cache.open(key, &OpenOptions::default()).await;
    }
    Ok(Object {
        meta,
        body: Box::pin(reader),
    })
}

fn into_io(e: Error) -> io::Error {
    match e {
        Error::Stream(io) => io,
        other => io::Error::other(other),
    }
}

/// A body whose length is checked: exactly `expected` bytes when known.
struct Checked {
    body: Body,
    start: u64,
    expected: Option<u64>,
    read: u64,
    done: bool,
}

impl Checked {
    fn new(body: Body, start: u64, expected: Option<u64>) -> Self {
        Checked {
            body,
            start,
            expected,
            read: 0,
            done: false,
        }
    }

    /// Like `poll_read`; reading nothing means the (verified) end.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.done || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let Some(expected) = self.expected else {
            let before = buf.filled().len();
            std::task::ready!(self.body.as_mut().poll_read(cx, buf))?;
            let n = buf.filled().len() - before;
            self.read += n as u64;
            self.done = n == 0;
            return Poll::Ready(Ok(()));
        };
        let remaining = expected - self.read;
        if remaining == 0 {
            // One more read must find the end: anything else is overlong.
            let mut probe = [0u8; 1];
            let mut probe = ReadBuf::new(&mut probe);
            std::task::ready!(self.body.as_mut().poll_read(cx, &mut probe))?;
            if !probe.filled().is_empty() {
                return Poll::Ready(Err(long_body(self.start, expected)));
            }
            self.done = true;
            return Poll::Ready(Ok(()));
        }
        // Read at most `remaining` bytes straight into the caller's buffer,
        // without initialising it first: the pattern of tokio's `Take`.
        let limit = usize::try_from(remaining).unwrap_or(usize::MAX);
        let mut sub = buf.take(limit);
        let ptr = sub.filled().as_ptr();
        std::task::ready!(self.body.as_mut().poll_read(cx, &mut sub))?;
        // The inner reader must not have swapped the buffer out.
        assert_eq!(ptr, sub.filled().as_ptr(), "reader replaced the buffer");
        let n = sub.filled().len();
        if n == 0 {
            return Poll::Ready(Err(short_body(self.start, expected, self.read)));
        }
        // SAFETY: the inner reader initialised the first `n` bytes of `sub`,
        // which are the first `n` unfilled bytes of `buf`.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        self.read += n as u64;
        Poll::Ready(Ok(()))
    }
}

/// A sequential stream of an object downloaded by [`parallel_reader`].
pub struct ParallelReader {
    state: State,
}

enum State {
    Single(Checked),
    Split(Box<SplitReader>),
}

impl fmt::Debug for ParallelReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Single(c) => f
                .debug_struct("ParallelReader")
                .field("parallel", &false)
                .field("read", &c.read)
                .finish_non_exhaustive(),
            State::Split(s) => f
                .debug_struct("ParallelReader")
                .field("parallel", &true)
                .field("size", &s.plan.total)
                .field("pending", &s.pending.len())
                .finish_non_exhaustive(),
        }
    }
}

impl AsyncRead for ParallelReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Single(c) => c.poll_read(cx, buf),
            State::Split(s) => s.poll_read(cx, buf),
        }
    }
}

enum Current {
    /// Chunk 0, streaming from the discovery response.
    First(Checked),
    /// A fetched chunk being handed out.
    Buffer(VecDeque<Bytes>),
    /// Between chunks.
    Idle,
}

struct SplitReader {
    source: Arc<dyn RangedSource>,
    plan: Arc<Plan>,
    current: Current,
    first_permit: Option<OwnedSemaphorePermit>,
    /// Fetches of the next chunks, in order; at most `window - 1`.
    pending: VecDeque<JoinHandle<Result<VecDeque<Bytes>>>>,
    next_spawn: u64,
    window: usize,
    /// Bounds the requests in flight to the concurrency.
    permits: Arc<Semaphore>,
    /// The first fetch error, reported at once rather than when the reader
    /// reaches that chunk.
    first_error: Arc<FirstError>,
    failed: bool,
}

/// Where fetch tasks leave the first error and wake the reader.
#[derive(Default)]
struct FirstError {
    error: Mutex<Option<Error>>,
    waker: AtomicWaker,
}

impl FirstError {
    fn set(&self, e: Error) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        drop(slot);
        self.waker.wake();
    }

    fn take(&self) -> Option<Error> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl SplitReader {
    /// Starts fetches until `window` chunks (counting the current one) are
    /// buffered or in flight.
    fn top_up(&mut self) {
        while self.next_spawn < self.plan.chunks() && self.pending.len() + 1 < self.window {
            let index = self.next_spawn;
            self.next_spawn += 1;
            let (source, plan, permits, first_error) = (
                self.source.clone(),
                self.plan.clone(),
                self.permits.clone(),
                self.first_error.clone(),
            );
            self.pending.push_back(tokio::spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::Backend("download cancelled".into()))?;
                match fetch_chunk(&*source, &plan, index).await {
                    Ok(bytes) => Ok(bytes),
                    Err(e) => {
                        first_error.set(e);
                        Err(Error::Backend(
                            "another chunk of the download failed".into(),
                        ))
                    }
                }
            }));
        }
    }

    fn fail(&mut self, e: io::Error) -> Poll<io::Result<()>> {
        self.failed = true;
        self.current = Current::Idle;
        self.first_permit = None;
        for handle in self.pending.drain(..) {
            handle.abort();
        }
        Poll::Ready(Err(e))
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Err(io::Error::other("the parallel download failed")));
        }
        // A failed fetch ends the download now, whichever chunk it was
        // (register before checking, so that no wake-up is lost).
        self.first_error.waker.register(cx.waker());
        if let Some(e) = self.first_error.take() {
            return self.fail(into_io(e));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut self.current {
                Current::First(stream) => {
                    let before = buf.filled().len();
                    match stream.poll_read(cx, buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return self.fail(e),
                        Poll::Ready(Ok(())) if buf.filled().len() > before => {
                            return Poll::Ready(Ok(()))
                        }
                        Poll::Ready(Ok(())) => {
                            self.current = Current::Idle;
                            self.first_permit = None;
                        }
                    }
                }
                Current::Buffer(parts) => {
                    let Some(front) = parts.front_mut() else {
                        self.current = Current::Idle;
                        continue;
                    };
                    let n = front.len().min(buf.remaining());
                    buf.put_slice(&front.split_to(n));
                    if front.is_empty() {
                        // Free each segment as soon as it is handed out.
                        parts.pop_front();
                    }
                    return Poll::Ready(Ok(()));
                }
                Current::Idle => {
                    self.top_up();
                    let Some(front) = self.pending.front_mut() else {
                        return Poll::Ready(Ok(()));
                    };
                    match Pin::new(front).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(Ok(parts))) => {
                            self.pending.pop_front();
                            self.current = Current::Buffer(parts);
                            self.top_up();
                        }
                        Poll::Ready(Ok(Err(e))) => return self.fail(into_io(e)),
                        Poll::Ready(Err(e)) => return self.fail(io::Error::other(e)),
                    }
                }
            }
        }
    }
}

impl Drop for SplitReader {
    fn drop(&mut self) {
        for handle in &self.pending {
            handle.abort();
        }
    }
}

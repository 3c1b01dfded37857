//! Parallel ranged downloads (`PROTOCOL.md` §6).
//!
//! A download is split into chunks fetched with concurrent `Range` requests
//! from any [`RangedSource`]: an object of a [`Cache`] ([`CacheSource`]) or a
//! plain URL ([`HttpSource`], used for git snapshots).
//!
//! - **Discovery**: the first request asks for the first chunk. A `206`
//!   reveals the total size (`Content-Range`) and the ETag; a `200` (the range
//!   was ignored, e.g. a cold server still generating the object) is accepted
//!   as a single-stream download and never retried (LESSONS 6). A first
//!   response that already holds the whole object is the whole download
//!   (LESSONS 7). `416 bytes */0` is an empty object. A first answer without
//!   an ETag (chunks could not be pinned) or without the total size in its
//!   `Content-Range` is dropped in favour of one plain `GET`.
//! - **Chunks**: every further request carries `If-Match` with the first
//!   ETag. A `412` or a different ETag means the object changed: the download
//!   fails with an error that says so. A `200`, or a `206` whose
//!   `Content-Range` does not start at the requested offset, is retried (up to
//!   [`MAX_CHUNK_ATTEMPTS`] attempts). A chunk body shorter or longer than
//!   announced is an error.
//! - **Bounded memory**: [`parallel_reader`] reassembles a sequential stream
//!   from chunks fetched at most `2 × concurrency` chunks ahead of the reader
//!   (LESSONS 4): fetchers never run further ahead, so a failed or slow chunk
//!   can never leave others blocked, and buffering stays below about
//!   `2 × concurrency × chunk_size` whatever the object size. The first
//!   failed fetch fails the reader at once, not when it reaches that chunk.
//!   [`parallel_get`] writes chunks at their offsets through a
//!   [`PositionalWriter`] (e.g. a [`std::fs::File`]) and buffers almost nothing.
//! - Concurrency 1 is one plain `GET`, without `Range`.
//! - Dropping a [`ParallelReader`] (or the future of [`parallel_get`])
//!   cancels every fetch.
//!
//! ```no_run
//! use std::sync::Arc;
//! use cachew_client::parallel::{parallel_reader, CacheSource, ParallelOptions};
//! use cachew_client::{Cache, Key};
//! use tokio::io::AsyncReadExt;
//!
//! # async fn example(cache: Arc<dyn Cache>) -> cachew_client::Result<()> {
//! let source = Arc::new(CacheSource::new(cache, Key::new("big-object")));
//! let (info, mut reader) = parallel_reader(source, &ParallelOptions::default()).await?;
//! let mut sink = Vec::new();
//! reader.read_to_end(&mut sink).await?;
//! assert_eq!(Some(sink.len() as u64), info.size);
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use cachew_proto::header::ContentRange;
use cachew_proto::{ByteRange, EntityTag, EtagCondition, Key, OpenOptions};
use cachew_transport::{HttpClient, RequestBody};
use futures_util::task::AtomicWaker;
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::cache::{Body, Cache, Object};
use crate::error::{Error, Result};

/// Attempts per chunk when the server answers a chunk request with the wrong
/// part (a `200`, or a `Content-Range` that starts elsewhere).
pub const MAX_CHUNK_ATTEMPTS: u32 = 4;

/// Default number of concurrent requests.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Default chunk size: 16 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;

/// Buffer size for streaming a body into a [`PositionalWriter`].
const WRITE_BUFFER: usize = 1 << 20;

/// Size of the blocks a chunk is buffered in by [`parallel_reader`].
const SEGMENT: usize = 1 << 20;

/// How a parallel download is split.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParallelOptions {
    /// Concurrent requests (default 8). `0` and `1` mean one plain `GET`.
    pub concurrency: usize,
    /// Bytes per ranged request (default 16 MiB, at least 1).
    pub chunk_size: u64,
    /// Objects smaller than this are read with one plain request by
    /// [`open_parallel`], which then needs a Stat first; `0` (the default)
    /// always splits.
    pub min_size: u64,
}

impl Default for ParallelOptions {
    fn default() -> Self {
        ParallelOptions {
            concurrency: DEFAULT_CONCURRENCY,
            chunk_size: DEFAULT_CHUNK_SIZE,
            min_size: 0,
        }
    }
}

impl ParallelOptions {
    /// Sets the number of concurrent requests.
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets the chunk size in bytes.
    #[must_use]
    pub fn with_chunk_size(mut self, chunk_size: u64) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// Sets the size below which [`open_parallel`] does not split.
    #[must_use]
    pub fn with_min_size(mut self, min_size: u64) -> Self {
        self.min_size = min_size;
        self
    }

    fn chunk(&self) -> u64 {
        self.chunk_size.max(1)
    }

    /// Chunks kept between the reader and the fetchers, counting the one
    /// being read: `2 × concurrency`.
    fn window(&self) -> usize {
        self.concurrency.saturating_mul(2).max(2)
    }
}

/// What the server sent for one request of a [`RangedSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangedKind {
    /// The whole object (`200`); `size` from `Content-Length` when known.
    Full {
        /// The object's size, when the response announced it.
        size: Option<u64>,
    },
    /// A part of it (`206`), as its `Content-Range` says.
    Partial(ContentRange),
}

/// One response of a [`RangedSource`].
pub struct RangedResponse {
    /// Whole or partial.
    pub kind: RangedKind,
    /// The object's ETag, if the response carried one.
    pub etag: Option<EntityTag>,
    /// The response headers.
    pub headers: HeaderMap,
    /// The (possibly partial) body.
    pub body: Body,
}

impl fmt::Debug for RangedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RangedResponse")
            .field("kind", &self.kind)
            .field("etag", &self.etag)
            .finish_non_exhaustive()
    }
}

/// Something that serves byte ranges of one object: an HTTP URL, a cache
/// entry. Object-safe, so downloads take `Arc<dyn RangedSource>`.
///
/// Errors follow the facade: [`Error::NotFound`] (404),
/// [`Error::PreconditionFailed`] (412, `If-Match` failed),
/// [`Error::RangeNotSatisfiable`] (416).
#[async_trait]
pub trait RangedSource: Send + Sync + fmt::Debug + 'static {
    /// Requests `range` (or the whole object), served only if the object's
    /// ETag is `if_match` when that is given.
    async fn get(
        &self,
        range: Option<ByteRange>,
        if_match: Option<&EntityTag>,
    ) -> Result<RangedResponse>;
}

/// An object of a [`Cache`] as a [`RangedSource`]: every request is an
/// [`open`](Cache::open) with `range` and `if_match` set. Works for every
/// backend; it pays off for remote ones.
#[derive(Debug, Clone)]
pub struct CacheSource {
    cache: Arc<dyn Cache>,
    key: Key,
}

impl CacheSource {
    /// The object `key` of `cache` (in the cache handle's namespace).
    pub fn new(cache: Arc<dyn Cache>, key: Key) -> Self {
        CacheSource { cache, key }
    }
}

#[async_trait]
impl RangedSource for CacheSource {
    async fn get(
        &self,
        range: Option<ByteRange>,
        if_match: Option<&EntityTag>,
    ) -> Result<RangedResponse> {
        let mut options = OpenOptions::default();
        options.range = range;
        options.if_match = if_match.cloned().map(EtagCondition::one);
        let object = self.cache.open(&self.key, &options).await?;
        let meta = object.meta;
        let kind = match meta.range {
            Some((start, len)) => RangedKind::Partial(ContentRange {
                start,
                len,
                total: Some(meta.size),
            }),
            None => RangedKind::Full {
                size: Some(meta.size),
            },
        };
        Ok(RangedResponse {
            kind,
            etag: Some(meta.etag),
            headers: meta.headers,
            body: object.body,
        })
    }
}

/// A plain URL fetched with `GET` through an [`HttpClient`] (its
/// authorization, retries and idle timeout apply), e.g. a git snapshot.
#[derive(Debug, Clone)]
pub struct HttpSource {
    http: HttpClient,
    url: String,
}

impl HttpSource {
    /// `GET url` through `http`.
    pub fn new(http: HttpClient, url: impl Into<String>) -> Self {
        HttpSource {
            http,
            url: url.into(),
        }
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait]
impl RangedSource for HttpSource {
    async fn get(
        &self,
        range: Option<ByteRange>,
        if_match: Option<&EntityTag>,
    ) -> Result<RangedResponse> {
        let mut req = http::Request::get(&self.url);
        if let Some(range) = range {
            req = req.header(http::header::RANGE, range.to_header());
        }
        if let Some(tag) = if_match {
            req = req.header(http::header::IF_MATCH, tag.to_header());
        }
        let req = req
            .body(RequestBody::empty())
            .map_err(|e| Error::InvalidInput(format!("invalid download request: {e}")))?;
        let resp = self.http.send(req).await.map_err(transport_error)?;
        let status = resp.status();
        let (parts, body) = resp.into_parts();
        let headers = parts.headers;
        let header = |name: http::header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let kind = match status {
            StatusCode::OK => RangedKind::Full {
                size: header(http::header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
            },
            StatusCode::PARTIAL_CONTENT => {
                let value = header(http::header::CONTENT_RANGE).unwrap_or_default();
                let range = ContentRange::parse(&value).ok_or_else(|| {
                    Error::Backend(format!(
                        "206 response with an invalid Content-Range {value:?}"
                    ))
                })?;
                RangedKind::Partial(range)
            }
            StatusCode::NOT_FOUND => return Err(Error::NotFound),
            StatusCode::PRECONDITION_FAILED => return Err(Error::PreconditionFailed),
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let size = header(http::header::CONTENT_RANGE).and_then(|v| {
                    v.trim()
                        .strip_prefix("bytes */")
                        .and_then(|n| n.trim().parse().ok())
                });
                return Err(Error::RangeNotSatisfiable { size });
            }
            other => {
                let message = body.bytes_limited(4096).await.unwrap_or_default();
                return Err(Error::Status {
                    code: other.as_u16(),
                    message: String::from_utf8_lossy(&message).trim().to_owned(),
                });
            }
        };
        let etag = header(http::header::ETAG).and_then(|v| EntityTag::parse_header(&v).ok());
        Ok(RangedResponse {
            kind,
            etag,
            headers,
            body: Box::pin(body.into_async_read()),
        })
    }
}

/// Converts a transport error into the facade's, as the remote cache does.
pub(crate) fn transport_error(e: cachew_transport::Error) -> Error {
    Error::from(e)
}

/// What the first response of a download revealed.
#[derive(Debug, Clone)]
pub struct DownloadInfo {
    /// The object's size, when known (always, unless a server ignored the
    /// range and sent no `Content-Length`).
    pub size: Option<u64>,
    /// The ETag chunks were pinned to.
    pub etag: Option<EntityTag>,
    /// Headers of the first response.
    pub headers: HeaderMap,
    /// Whether the download is split into concurrent ranged requests
    /// (`false` for a single stream).
    pub parallel: bool,
}

/// An object an [`PositionalWriter`] can write at any offset, from several
/// tasks at once.
pub trait PositionalWriter: Send + Sync + 'static {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;

    /// Called once the object's size is known, before any write; a file
    /// sets its length. The default does nothing.
    fn set_len(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

impl PositionalWriter for std::fs::File {
    fn write_all_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        std::fs::File::set_len(self, len)
    }
}

impl PositionalWriter for Mutex<Vec<u8>> {
    fn write_all_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut data = self
            .lock()
            .map_err(|_| io::Error::other("poisoned buffer"))?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        self.lock()
            .map_err(|_| io::Error::other("poisoned buffer"))?
            .resize(len, 0);
        Ok(())
    }
}

/// The chunk plan after a successful discovery.
#[derive(Debug, Clone)]
struct Plan {
    total: u64,
    chunk: u64,
    etag: EntityTag,
    /// Bytes the discovery response carries (chunk 0).
    first_len: u64,
}

impl Plan {
    fn chunks(&self) -> u64 {
        self.total.div_ceil(self.chunk)
    }

    fn range(&self, index: u64) -> (u64, u64) {
        let start = index * self.chunk;
        (start, self.chunk.min(self.total - start))
    }
}

/// The outcome of the discovery request.
enum Discovery {
    /// One stream holds the whole object (`size` if known).
    Single {
        body: Body,
        size: Option<u64>,
        etag: Option<EntityTag>,
        headers: HeaderMap,
    },
    /// Split: `first` is chunk 0's body.
    Split {
        plan: Plan,
        first: Body,
        headers: HeaderMap,
    },
}

/// Sends the discovery request and decides how to continue.
async fn discover(source: &dyn RangedSource, opts: &ParallelOptions) -> Result<Discovery> {
    if opts.concurrency <= 1 {
        return plain(source).await;
    }
    let chunk = opts.chunk();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = match source.get(ByteRange::new(0, chunk), None).await {
            Ok(resp) => resp,
            // An empty object has no first byte to ask for.
            Err(Error::RangeNotSatisfiable { size: Some(0) }) => {
                return Ok(Discovery::Single {
                    body: Box::pin(tokio::io::empty()),
                    size: Some(0),
                    etag: None,
                    headers: HeaderMap::new(),
                })
            }
            Err(e) => return Err(e),
        };
        let range = match resp.kind {
            // The range was ignored: a whole stream, never retried.
            RangedKind::Full { size } => {
                return Ok(Discovery::Single {
                    body: resp.body,
                    size,
                    etag: resp.etag,
                    headers: resp.headers,
                })
            }
            RangedKind::Partial(range) => range,
        };
        if range.start != 0 {
            if attempt < MAX_CHUNK_ATTEMPTS {
                tracing::debug!(
                    start = range.start,
                    "discovery answered the wrong range; retrying"
                );
                continue;
            }
            return Err(wrong_range(0, range.start));
        }
        let Some(total) = range.total else {
            // Without the size (`bytes 0-N/*`) there is no chunk plan.
            tracing::debug!("no size in Content-Range; downloading as one stream");
            drop(resp.body);
            return plain(source).await;
        };
        if range.len == total {
            // A small object arrives whole in the first answer (LESSONS 7).
            return Ok(Discovery::Single {
                body: resp.body,
                size: Some(total),
                etag: resp.etag,
                headers: resp.headers,
            });
        }
        let expected = chunk.min(total);
        if range.len != expected {
            return Err(Error::Backend(format!(
                "short chunk: asked for {expected} bytes at offset 0, the server announced {}",
                range.len
            )));
        }
        let Some(etag) = resp.etag else {
            // Without an ETag the chunks cannot be pinned to one version of
            // the object, so mixing versions would go unnoticed: fall back
            // to one plain request.
            tracing::debug!("no ETag on the first response; downloading as one stream");
            drop(resp.body);
            return plain(source).await;
        };
        return Ok(Discovery::Split {
            plan: Plan {
                total,
                chunk,
                etag,
                first_len: range.len,
            },
            first: resp.body,
            headers: resp.headers,
        });
    }
}

async fn plain(source: &dyn RangedSource) -> Result<Discovery> {
    let resp = source.get(None, None).await?;
    let size = match resp.kind {
        RangedKind::Full { size } => size,
        RangedKind::Partial(range) => range.total.filter(|t| *t == range.len),
    };
    Ok(Discovery::Single {
        body: resp.body,
        size,
        etag: resp.etag,
        headers: resp.headers,
    })
}

fn wrong_range(expected: u64, got: u64) -> Error {
    Error::Backend(format!(
        "the server kept answering the range at offset {expected} with data from offset {got} \
         ({MAX_CHUNK_ATTEMPTS} attempts)"
    ))
}

fn changed(pinned: &EntityTag, now: Option<&EntityTag>) -> Error {
    match now {
        Some(now) => Error::Backend(format!(
            "the object changed during the download: its ETag was {pinned}, now {now}"
        )),
        None => Error::Backend(format!(
            "the object changed during the download: If-Match {pinned} failed (412)"
        )),
    }
}

/// Requests chunk `(start, len)` pinned to the plan's ETag, retrying wrong
/// parts, and returns its body (not yet read).
async fn request_chunk(
    source: &dyn RangedSource,
    plan: &Plan,
    start: u64,
    len: u64,
) -> Result<Body> {
    let range = ByteRange::new(start, start + len)
        .ok_or_else(|| Error::InvalidInput("empty chunk".into()))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = match source.get(Some(range), Some(&plan.etag)).await {
            Ok(resp) => resp,
            Err(Error::PreconditionFailed) => return Err(changed(&plan.etag, None)),
            Err(e) => return Err(e),
        };
        if let Some(etag) = &resp.etag {
            if *etag != plan.etag {
                return Err(changed(&plan.etag, Some(etag)));
            }
        }
        let got = match resp.kind {
            RangedKind::Full { .. } => None,
            RangedKind::Partial(r) => Some(r),
        };
        match got {
            Some(r) if r.start == start => {
                if let Some(total) = r.total {
                    if total != plan.total {
                        return Err(Error::Backend(format!(
                            "the object changed during the download: its size was {}, now {total}",
                            plan.total
                        )));
                    }
                }
                if r.len != len {
                    return Err(Error::Backend(format!(
                        "short chunk: asked for {len} bytes at offset {start}, the server announced {}",
                        r.len
                    )));
                }
                return Ok(resp.body);
            }
            _ if attempt < MAX_CHUNK_ATTEMPTS => {
                tracing::debug!(
                    start,
                    attempt,
                    "chunk answered with the wrong part; retrying"
                );
            }
            Some(r) => return Err(wrong_range(start, r.start)),
            None => {
                return Err(Error::Backend(format!(
                    "the server kept ignoring the range at offset {start} \
                     ({MAX_CHUNK_ATTEMPTS} attempts)"
                )))
            }
        }
    }
}

fn short_body(start: u64, expected: u64, got: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("short chunk at offset {start}: expected {expected} bytes, got {got}"),
    )
}

fn long_body(start: u64, expected: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("overlong chunk at offset {start}: more than the {expected} bytes announced"),
    )
}

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

/// Downloads the object of `source` with concurrent ranged requests and
/// writes every chunk at its offset through `writer`. Returns what the first
/// response revealed; on success exactly `info.size` bytes were written
/// (when the size is known, `writer.set_len` was called with it first).
///
/// Nothing is reordered, so memory stays at one small buffer per request.
/// The first error cancels the other requests.
pub async fn parallel_get<W: PositionalWriter>(
    source: Arc<dyn RangedSource>,
    writer: Arc<W>,
    opts: &ParallelOptions,
) -> Result<DownloadInfo> {
    match discover(&*source, opts).await? {
        Discovery::Single {
            body,
            size,
            etag,
            headers,
        } => {
            if let Some(size) = size {
                set_len(&writer, size).await?;
            }
            let written = write_stream(body, &writer, 0, size).await?;
            Ok(DownloadInfo {
                size: Some(size.unwrap_or(written)),
                etag,
                headers,
                parallel: false,
            })
        }
        Discovery::Split {
            plan,
            first,
            headers,
        } => {
            set_len(&writer, plan.total).await?;
            let next = AtomicU64::new(1);
            let worker = |first: Option<Body>| {
                let (source, writer, plan, next) = (&source, &writer, &plan, &next);
                async move {
                    if let Some(body) = first {
                        write_stream(body, writer, 0, Some(plan.first_len)).await?;
                    }
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= plan.chunks() {
                            return Ok::<(), Error>(());
                        }
                        let (start, len) = plan.range(index);
                        let body = request_chunk(&**source, plan, start, len).await?;
                        write_stream(body, writer, start, Some(len)).await?;
                    }
                }
            };
            // Worker 0 finishes the discovery body (chunk 0) first.
            let mut first = Some(first);
            let workers: Vec<_> = (0..opts.concurrency.max(1))
                .map(|_| worker(first.take()))
                .collect();
            futures_util::future::try_join_all(workers).await?;
            Ok(DownloadInfo {
                size: Some(plan.total),
                etag: Some(plan.etag),
                headers,
                parallel: true,
            })
        }
    }
}

async fn set_len<W: PositionalWriter>(writer: &Arc<W>, len: u64) -> Result<()> {
    let writer = writer.clone();
    tokio::task::spawn_blocking(move || writer.set_len(len))
        .await
        .map_err(io::Error::other)??;
    Ok(())
}

/// Streams `body` into `writer` at `offset`; with `expected`, the body must
/// hold exactly that many bytes. Returns the number of bytes written.
async fn write_stream<W: PositionalWriter>(
    mut body: Body,
    writer: &Arc<W>,
    offset: u64,
    expected: Option<u64>,
) -> Result<u64> {
    let mut buf = vec![0u8; WRITE_BUFFER];
    let mut pos = 0u64;
    loop {
        let want = match expected {
            Some(total) => (total - pos).min(WRITE_BUFFER as u64) as usize,
            None => WRITE_BUFFER,
        };
        if want == 0 {
            let mut probe = [0u8; 1];
            if body.read(&mut probe).await? != 0 {
                return Err(long_body(offset, pos).into());
            }
            return Ok(pos);
        }
        // Fill the buffer before writing, so writes are large.
        let mut filled = 0;
        while filled < want {
            let n = body.read(&mut buf[filled..want]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            if let Some(total) = expected {
                return Err(short_body(offset, total, pos).into());
            }
            return Ok(pos);
        }
        let w = writer.clone();
        let at = offset + pos;
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = w.write_all_at(at, &buf[..filled]);
            (buf, result)
        })
        .await
        .map_err(io::Error::other)?;
        result?;
        buf = back;
        pos += filled as u64;
    }
}

/// Downloads the object of `source` as one sequential stream reassembled
/// from concurrent ranged requests; see the [module documentation](self).
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

/// Opens `key` of `cache` with [`parallel_reader`] over a [`CacheSource`].
///
/// With [`ParallelOptions::min_size`] set, a Stat comes first and objects
/// below that size are read with one plain request. Meant for remote caches
/// (local backends gain nothing from splitting).
pub async fn open_parallel(
    cache: Arc<dyn Cache>,
    key: &Key,
    opts: &ParallelOptions,
) -> Result<(DownloadInfo, ParallelReader)> {
    let mut opts = opts.clone();
    if opts.min_size > 0 && opts.concurrency > 1 {
        let meta = cache.stat(key, &OpenOptions::default()).await?;
        if meta.size < opts.min_size {
            opts.concurrency = 1;
        }
    }
    parallel_reader(Arc::new(CacheSource::new(cache, *key)), &opts).await
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
/// the first ranged request, it is read with one plain request instead.
pub async fn open_object(cache: &dyn Cache, key: &Key, opts: &ParallelOptions) -> Result<Object> {
    if opts.concurrency <= 1 {
        return cache.open(key, &OpenOptions::default()).await;
    }
    let meta = cache.stat(key, &OpenOptions::default()).await?;
    if meta.size < opts.min_size.max(1) {
        return cache.open(key, &OpenOptions::default()).await;
    }
    let owned = cache.with_namespace(cache.namespace().clone());
    let source = Arc::new(CacheSource::new(owned, *key));
    let (info, reader) = parallel_reader(source, opts).await?;
    if info.etag.as_ref() != Some(&meta.etag) || info.size != Some(meta.size) {
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

impl ParallelReader {
    /// A reader of a single stream of `size` bytes (checked when known).
    pub fn single(body: Body, size: Option<u64>) -> Self {
        ParallelReader {
            state: State::Single(Checked::new(body, 0, size)),
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

//! Parallel ranged downloads (`PROTOCOL.md` §6).
//!
//! A download is split into chunks fetched with concurrent `Range` requests
//! from any [`RangedSource`]: an object of a [`Cache`](crate::Cache) ([`CacheSource`]) or a
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

mod get;
mod plan;
mod reader;
mod source;

use std::io;

use cachew_proto::EntityTag;
use http::HeaderMap;

pub use get::{parallel_get, PositionalWriter};
pub use reader::{open_object, parallel_reader, ParallelReader};
pub use source::{CacheSource, HttpSource, RangedKind, RangedResponse, RangedSource};

/// Attempts per chunk when the server answers a chunk request with the wrong
/// part (a `200`, or a `Content-Range` that starts elsewhere).
pub const MAX_CHUNK_ATTEMPTS: u32 = 4;

/// Default number of concurrent requests ([`ParallelOptions::default`]);
/// also the default of `cachew git restore --download-concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Default chunk size: 16 MiB ([`ParallelOptions::default`]); also the
/// default of `cachew git restore --download-chunk-size-mb`.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;

/// How a parallel download is split.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParallelOptions {
    /// Concurrent requests (default 8). `0` and `1` mean one plain `GET`.
    pub concurrency: usize,
    /// Bytes per ranged request (default 16 MiB, at least 1).
    pub chunk_size: u64,
    /// Objects smaller than this are read with one plain request by
    /// [`open_object`] (which makes a Stat first anyway); `0` (the default)
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

    /// Sets the size below which [`open_object`] does not split.
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

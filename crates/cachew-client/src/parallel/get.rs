//! Fetching chunks pinned to the discovery's ETag with `If-Match`
//! ([`request_chunk`]), and [`parallel_get`], which writes them at their
//! offsets through a [`PositionalWriter`].

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cachew_proto::{ByteRange, EntityTag};
use tokio::io::AsyncReadExt;

use super::plan::{discover, wrong_range, Discovery, Plan};
use super::source::{RangedKind, RangedSource};
use super::{long_body, short_body, DownloadInfo, ParallelOptions, MAX_CHUNK_ATTEMPTS};
use crate::cache::Body;
use crate::error::{Error, Result};

/// Buffer size for streaming a body into a [`PositionalWriter`].
const WRITE_BUFFER: usize = 1 << 20;

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
pub(super) async fn request_chunk(
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

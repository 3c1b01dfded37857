//! Range planning: the discovery request, which decides between one stream
//! and a split download, and the chunk [`Plan`] that follows from it.

use cachew_proto::{ByteRange, EntityTag};
use http::HeaderMap;

use super::source::{RangedKind, RangedSource};
use super::{ParallelOptions, MAX_CHUNK_ATTEMPTS};
use crate::cache::Body;
use crate::error::{Error, Result};

/// The chunk plan after a successful discovery.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) total: u64,
    pub(super) chunk: u64,
    pub(super) etag: EntityTag,
    /// Bytes the discovery response carries (chunk 0).
    pub(super) first_len: u64,
}

impl Plan {
    pub(super) fn chunks(&self) -> u64 {
        self.total.div_ceil(self.chunk)
    }

    pub(super) fn range(&self, index: u64) -> (u64, u64) {
        let start = index * self.chunk;
        (start, self.chunk.min(self.total - start))
    }
}

/// The outcome of the discovery request.
pub(super) enum Discovery {
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
pub(super) async fn discover(
    source: &dyn RangedSource,
    opts: &ParallelOptions,
) -> Result<Discovery> {
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

pub(super) fn wrong_range(expected: u64, got: u64) -> Error {
    Error::Backend(format!(
        "the server kept answering the range at offset {expected} with data from offset {got} \
         ({MAX_CHUNK_ATTEMPTS} attempts)"
    ))
}

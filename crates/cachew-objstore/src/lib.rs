//! A [`Cache`] backend over Apache Arrow's [`object_store`]: S3 (and
//! S3-compatible servers), Google Cloud Storage and Azure Blob Storage
//! behind the `s3`, `gcs` and `azure` features, and object_store's
//! in-memory store always.
//!
//! [`ObjectStoreCache`] keeps no state of its own besides its
//! configuration, so any number of processes (`cachew serve` replicas, CI
//! jobs with `--url s3://…`) can share one bucket: a write through one is
//! readable through every other.
//!
//! # Layout
//!
//! Under the root prefix, an object is `NAMESPACE/KEY` (the key's 64 hex
//! digits). Its record (stored headers, ETag, `Last-Modified`, expiry) is
//! the base64url JSON value of the user metadata entry `cachew`
//! (`x-amz-meta-cachew` on S3), written with the object in the same
//! request, so a reader never sees one object's bytes with another's
//! record. A record too large for S3's 2 KB of user metadata goes into a
//! sidecar `_meta/NAMESPACE/KEY.ID`, written before the object, which names
//! it in its `cachew-ref` entry. (`_` cannot start a namespace, so the
//! sidecars never pass for one.)
//!
//! # Writes
//!
//! A body up to one part ([`ObjectStoreOptions::part_size`], 8 MiB) is
//! buffered and sent in one `PUT` at commit. A larger one becomes a
//! multipart upload with up to [`ObjectStoreOptions::part_concurrency`]
//! parts in flight, completed at commit. Either way the object appears
//! whole at commit, and an abort or a dropped writer leaves none (an
//! aborted multipart upload is aborted; one a crash left behind is
//! invisible and removed by the bucket's `AbortIncompleteMultipartUpload`
//! lifecycle rule). Two writers of one key: the last to commit wins, whole.
//! The ETag of an object created without one is fixed at Create (random,
//! 128 bits), because the record goes out before the body.
//!
//! # Reads
//!
//! A whole-object Open is one `GET`; the record's conditions are checked
//! on its headers. A ranged Open is a `HEAD` (to resolve the range against
//! the size and `If-Range`) and a ranged `GET` pinned to the object's
//! storage ETag with `If-Match`, so the bytes are from the version whose
//! record was checked (an object replaced in between is read again).
//!
//! # Expiry
//!
//! An expired object reads as absent. [`ObjectStoreCache::sweep`] deletes
//! expired objects and orphaned sidecars; a bucket lifecycle rule does the
//! same without requests (`docs/SCALING.md`).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use cachew_client::proto::Stats;
use cachew_client::{
    Body, Cache, CacheWriter, CreateOptions, Error, Key, Namespace, Object, ObjectMeta,
    OpenOptions, Result,
};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use http::HeaderMap;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncRead, ReadBuf};

#[cfg(feature = "cloud")]
mod http_client;
mod meta;
mod sweep;
mod url;
mod writer;

pub use sweep::SweepReport;
pub use url::{is_object_store_url, open_url};

use meta::Loaded;

/// The path segment under the root that holds sidecar records.
const SIDECARS: &str = "_meta";

/// How an [`ObjectStoreCache`] writes and what TTLs it gives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ObjectStoreOptions {
    /// The TTL of objects created without one; `None`: they never expire.
    pub default_ttl: Option<Duration>,
    /// The cap on every object's TTL.
    pub max_ttl: Option<Duration>,
    /// The size of one multipart part, and the largest body sent in a
    /// single `PUT`. Default 8 MiB (S3 wants at least 5 MiB and at most
    /// 10 000 parts, so objects up to 80 GB at the default).
    pub part_size: usize,
    /// How many parts of one upload are in flight at once. Default 4.
    pub part_concurrency: usize,
}

impl Default for ObjectStoreOptions {
    fn default() -> ObjectStoreOptions {
        ObjectStoreOptions {
            default_ttl: None,
            max_ttl: None,
            part_size: 8 << 20,
            part_concurrency: 4,
        }
    }
}

impl ObjectStoreOptions {
    /// Sets [`ObjectStoreOptions::default_ttl`] (zero: none).
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl).filter(|d| !d.is_zero());
        self
    }

    /// Sets [`ObjectStoreOptions::max_ttl`] (zero: none).
    #[must_use]
    pub fn with_max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = Some(ttl).filter(|d| !d.is_zero());
        self
    }

    /// Sets [`ObjectStoreOptions::part_size`] (at least 5 MiB for S3).
    #[must_use]
    pub fn with_part_size(mut self, size: usize) -> Self {
        self.part_size = size.max(1);
        self
    }

    /// Sets [`ObjectStoreOptions::part_concurrency`] (at least 1).
    #[must_use]
    pub fn with_part_concurrency(mut self, parts: usize) -> Self {
        self.part_concurrency = parts.max(1);
        self
    }
}

/// A [`Cache`] over any [`ObjectStore`], under a root prefix. See the
/// crate documentation for the layout and the guarantees.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use cachew_client::{CacheExt, CreateOptions, Key};
/// use cachew_objstore::{ObjectStoreCache, ObjectStoreOptions};
/// use object_store::memory::InMemory;
///
/// let cache = ObjectStoreCache::new(
///     Arc::new(InMemory::new()),
///     "cache",
///     "memory-store",
///     ObjectStoreOptions::default(),
/// )
/// .unwrap();
/// let key = Key::new("greeting");
/// cache.put_bytes(&key, "hello".into(), Default::default(), &CreateOptions::default()).await.unwrap();
/// assert_eq!(cache.get_bytes(&key).await.unwrap(), "hello");
/// # });
/// ```
#[derive(Clone)]
pub struct ObjectStoreCache {
    shared: Arc<Shared>,
    namespace: Namespace,
}

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) root: Path,
    /// What `Display` shows: the URL without credentials.
    description: String,
    pub(crate) options: ObjectStoreOptions,
}

impl fmt::Debug for ObjectStoreCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreCache")
            .field("store", &self.shared.description)
            .field("root", &self.shared.root.as_ref())
            .field("namespace", &self.namespace)
            .field("options", &self.shared.options)
            .finish()
    }
}

impl fmt::Display for ObjectStoreCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shared.description)
    }
}

impl ObjectStoreCache {
    /// A cache in `store` under the prefix `root` (`a/b`; empty for the
    /// whole store), shown as `description` (e.g. the URL).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: &str,
        description: impl Into<String>,
        options: ObjectStoreOptions,
    ) -> Result<ObjectStoreCache> {
        let root = Path::parse(root.trim_matches('/')).map_err(|e| {
            Error::InvalidInput(format!(
                "object store prefix {root:?} is not a valid object path: {e}"
            ))
        })?;
        Ok(ObjectStoreCache {
            shared: Arc::new(Shared {
                store,
                root,
                description: description.into(),
                options,
            }),
            namespace: Namespace::default(),
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.shared.store
    }

    /// The path of `key`'s object in this handle's namespace.
    pub fn object_path(&self, key: &Key) -> Path {
        self.shared.object_path(&self.namespace, key)
    }

    /// Deletes every expired object and every sidecar no object refers to
    /// (older than an hour, so none of an upload in progress), in every
    /// namespace under the root.
    pub async fn sweep(&self) -> Result<SweepReport> {
        sweep::sweep(&self.shared).await
    }

    async fn load(&self, key: &Key, options: GetOptions) -> Result<Loaded> {
        meta::load(&self.shared, &self.object_path(key), options).await
    }
}

impl Shared {
    pub(crate) fn object_path(&self, namespace: &Namespace, key: &Key) -> Path {
        self.root
            .clone()
            .join(namespace.as_str())
            .join(key.to_hex())
    }

    pub(crate) fn sidecar_path(&self, namespace: &Namespace, key: &Key, id: &str) -> Path {
        self.root
            .clone()
            .join(SIDECARS)
            .join(namespace.as_str())
            .join(format!("{}.{id}", key.to_hex()))
    }

    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// A backend error naming the store and what was being done.
    pub(crate) fn error(&self, what: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound,
            e => Error::Backend(format!("{}: {what}: {e}", self.description)),
        }
    }
}

/// How many times a ranged read starts over when the object is replaced
/// between its `HEAD` and its `GET`.
const REPLACED_RETRIES: usize = 5;

#[async_trait]
impl Cache for ObjectStoreCache {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn with_namespace(&self, namespace: Namespace) -> Arc<dyn Cache> {
        Arc::new(ObjectStoreCache {
            shared: Arc::clone(&self.shared),
            namespace,
        })
    }

    async fn stat(&self, key: &Key, options: &OpenOptions) -> Result<ObjectMeta> {
        let loaded = self
            .load(
                key,
                GetOptions {
                    head: true,
                    ..GetOptions::default()
                },
            )
            .await?;
        loaded.record.stat(options)
    }

    async fn open(&self, key: &Key, options: &OpenOptions) -> Result<Object> {
        if options.range.is_none() {
            let loaded = self.load(key, GetOptions::default()).await?;
            let meta = loaded.record.open(options)?;
            let body = loaded
                .body
                .ok_or_else(|| Error::Backend(format!("{self}: GET of {key} returned no body")))?;
            return Ok(Object {
                body: reader(body, meta.size.unwrap_or(0)),
                meta,
            });
        }
        for _ in 0..REPLACED_RETRIES {
            let head = self
                .load(
                    key,
                    GetOptions {
                        head: true,
                        ..GetOptions::default()
                    },
                )
                .await?;
            let meta = head.record.open(options)?;
            let (range, len) = match meta.range {
                Some((start, len)) => (Some(GetRange::Bounded(start..start + len)), len),
                None => (None, head.record.size),
            };
            let get = GetOptions {
                if_match: head.storage_etag.clone(),
                range,
                ..GetOptions::default()
            };
            let path = self.object_path(key);
            match self.shared.store.get_opts(&path, get).await {
                Ok(result) => {
                    return Ok(Object {
                        meta,
                        body: reader(result.into_stream().boxed(), len),
                    })
                }
                // Replaced (or deleted) since the HEAD: look again.
                Err(object_store::Error::Precondition { .. }) => continue,
                Err(e) => return Err(self.shared.error(&format!("ranged GET of {path}"), e)),
            }
        }
        Err(Error::Backend(format!(
            "{self}: {key} was replaced {REPLACED_RETRIES} times while being opened"
        )))
    }

    async fn create(
        &self,
        key: &Key,
        headers: HeaderMap,
        options: &CreateOptions,
    ) -> Result<Box<dyn CacheWriter>> {
        let writer = writer::ObjectStoreWriter::start(
            Arc::clone(&self.shared),
            self.namespace.clone(),
            *key,
            headers,
            options,
        )
        .await?;
        Ok(Box::new(writer))
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        // Deletes in object stores succeed on absent objects: look first.
        self.stat(key, &OpenOptions::default()).await?;
        self.invalidate(key).await
    }

    async fn invalidate(&self, key: &Key) -> Result<()> {
        let path = self.object_path(key);
        match self.shared.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.shared.error(&format!("DELETE of {path}"), e)),
        }
    }

    async fn stats(&self) -> Result<Stats> {
        let sidecars = self.shared.root.clone().join(SIDECARS);
        let mut listing = self.shared.store.list(Some(&self.shared.root));
        let (mut objects, mut size) = (0i64, 0i64);
        while let Some(item) = listing.next().await {
            let item = item.map_err(|e| self.shared.error("LIST", e))?;
            if !item.location.prefix_matches(&sidecars) {
                objects += 1;
                size += i64::try_from(item.size).unwrap_or(i64::MAX);
            }
        }
        Ok(Stats {
            objects,
            size,
            capacity: 0,
        })
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let listing = self
            .shared
            .store
            .list_with_delimiter(Some(&self.shared.root))
            .await
            .map_err(|e| self.shared.error("LIST of the namespaces", e))?;
        let mut names = Vec::new();
        for prefix in &listing.common_prefixes {
            let Some(name) = prefix.filename() else {
                continue;
            };
            if name == SIDECARS || Namespace::new(name).is_err() {
                continue;
            }
            // A store over a file system (SeaweedFS's filer) may list an
            // emptied "directory" as a prefix: only one with an object
            // counts.
            match self.shared.store.list(Some(prefix)).next().await {
                Some(Ok(_)) => names.push(name.to_owned()),
                None => {}
                Some(Err(e)) => return Err(self.shared.error(&format!("LIST of {prefix}"), e)),
            }
        }
        names.sort();
        Ok(names)
    }
}

/// A body stream as an [`AsyncRead`] that fails, rather than ends, if the
/// store sends fewer than `len` bytes.
fn reader(stream: BoxStream<'static, object_store::Result<Bytes>>, len: u64) -> Body {
    Box::pin(StreamReader {
        stream: stream.map_err(std::io::Error::other).boxed(),
        chunk: Bytes::new(),
        remaining: len,
    })
}

struct StreamReader {
    stream: BoxStream<'static, std::io::Result<Bytes>>,
    chunk: Bytes,
    remaining: u64,
}

impl AsyncRead for StreamReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.chunk.is_empty() {
            match self.stream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(chunk))) => self.chunk = chunk,
                Poll::Ready(None) if self.remaining > 0 => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "the object store ended the body {} bytes short",
                            self.remaining
                        ),
                    )))
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
            }
        }
        let n = self.chunk.len().min(buf.remaining());
        let part = self.chunk.split_to(n);
        self.remaining = self.remaining.saturating_sub(n as u64);
        buf.put_slice(&part);
        Poll::Ready(Ok(()))
    }
}

/// Seconds since the epoch, as records store times.
pub(crate) fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;

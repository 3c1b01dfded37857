//! [`DiskCache`]: the embedded backend behind `--url file:///path`.
//!
//! The layout, the crash-safety invariant and the eviction rules are
//! documented on [`DiskCache`].
//!
//! - `trailer.rs`: the object file format (body, JSON metadata trailer).
//! - `read.rs`: loading an object file (trailer, expiry, corruption).
//! - `writer.rs`: [`DiskWriter`](writer::DiskWriter) and publishing a
//!   finished upload by rename.
//! - `lock.rs`: temporary upload files, their `flock`, file identity and the
//!   removal of abandoned ones.
//! - `index.rs`: the LRU index, its rebuild from the files and eviction.
//! - `sweep.rs`: removing expired objects and abandoned uploads in bulk,
//!   and the eviction and expiry counters.

mod index;
mod lock;
mod read;
mod sweep;
mod trailer;
mod writer;

use std::fmt;
use std::fs;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cachew_proto::{CreateOptions, Key, Namespace, OpenOptions, Stats};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt};

use self::index::{scan, Index};
use self::lock::clean_temp;
use self::sweep::Counters;
pub use self::sweep::{DiskCounters, SweepReport};
use self::writer::{DiskWriter, WRITE_BUFFER};
use crate::cache::{Cache, CacheWriter, Object, ObjectMeta};
use crate::error::{Error, Result};
use crate::record::{PendingRecord, WriterState};

/// Configuration of a [`DiskCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskCacheOptions {
    /// Maximum bytes on disk (bodies and metadata), 0 for unlimited.
    /// Default: unlimited.
    pub capacity: u64,
    /// TTL of objects created without one; `None`: they never expire.
    /// Default: 7 days.
    pub default_ttl: Option<Duration>,
    /// Cap on every object's TTL; `None`: no cap. Default: none.
    pub max_ttl: Option<Duration>,
}

impl Default for DiskCacheOptions {
    fn default() -> DiskCacheOptions {
        DiskCacheOptions {
            capacity: 0,
            default_ttl: Some(Duration::from_secs(7 * 24 * 3600)),
            max_ttl: None,
        }
    }
}

impl DiskCacheOptions {
    /// Sets [`capacity`](DiskCacheOptions::capacity) in bytes (0: unlimited).
    #[must_use]
    pub fn with_capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }

    /// Sets [`default_ttl`](DiskCacheOptions::default_ttl); zero means
    /// objects without a TTL never expire.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl).filter(|d| !d.is_zero());
        self
    }

    /// Sets [`max_ttl`](DiskCacheOptions::max_ttl); zero means no cap.
    #[must_use]
    pub fn with_max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = Some(ttl).filter(|d| !d.is_zero());
        self
    }
}

/// A cache in a local directory, safe to share between processes and
/// between tasks.
///
/// # Layout
///
/// ```text
/// {root}/objects/{namespace}/{kk}/{key-hex}   one file per object
/// {root}/tmp/cachew-tmp-{pid}-{nanos}-{n}     uploads in progress
/// ```
///
/// `kk` is the first two hex digits of the key, so no directory grows past a
/// few thousand entries. An object file is the body followed by a metadata
/// trailer: the metadata as JSON (ETag, `Last-Modified`, expiry, stored
/// headers, the key), then the JSON's length and the body's length as
/// little-endian `u64`s, then the 8-byte magic `CACHEWD1`. A file whose
/// length is not `body + json + 24`, or whose magic, JSON or key is wrong,
/// is corrupt: it is treated as absent and removed. A file ending in another
/// version's magic (`CACHEWD2`, …) is treated as absent and left alone.
///
/// # Crash safety
///
/// **Invariant:** a path under `objects/` only ever names a complete file —
/// body and trailer written and `fsync`ed in `tmp/`, then published with one
/// atomic `rename`. Because data and metadata are one file, a reader can
/// never see a body without its metadata or with another version's; a reader
/// opens the file once and serves everything (trailer, then a `seek` to the
/// range) from that handle, so a concurrent replace or delete never tears
/// it. A crash leaves at worst a file in `tmp/`, never a partial object.
/// (The directory is not `fsync`ed after the rename, so after a power loss a
/// just-committed object may be missing — a cache miss, never a torn object.)
///
/// Every upload holds an exclusive `flock` on its temporary file from
/// creation until it is published or discarded. [`DiskCache::open`] removes
/// the temporary files whose lock it can take: their writer is gone (a lock
/// dies with its process), while files of live writers — in this process or
/// another one sharing the root — stay.
///
/// # Capacity and expiry
///
/// The capacity counts bytes on disk, trailers included. Each `DiskCache`
/// keeps an index of objects in least-recently-used order, rebuilt from the
/// files' sizes and modification times when the root is opened.
///
/// **Last access is the object file's modification time.** Opening an
/// object sets it to now (`futimens` on the open handle); publishing sets
/// it too. The body and metadata never change after publishing, and
/// `Last-Modified` lives in the trailer, so the file's own mtime is free to
/// record use — and unlike the access time it is not subject to
/// `relatime`/`noatime`, so the order survives restarts with no extra file
/// or write-back index. (A file this process may not change keeps its old
/// time: it only looks older.) A commit that takes the total over capacity
/// evicts least recently used objects; an object bigger than the capacity
/// is refused. Eviction unlinks the file: a reader that has it open keeps
/// reading the whole, unchanged body (the conformance check
/// `eviction_spares_open_readers`), and its space is freed when the reader
/// closes it.
///
/// Expired objects behave as absent and are removed when touched;
/// [`DiskCache::sweep`] removes all of them, and abandoned uploads, in one
/// pass over the files (their expiry is read from each trailer, so it finds
/// what a previous process wrote). [`DiskCache::counters`] counts
/// evictions and expiries. Objects that another
/// process writes enter this process's index when read, so with several
/// processes the capacity is enforced approximately, never by deleting an
/// object this process has not seen (removals check the file's identity).
/// For the same reason [`Cache::stats`] and [`Cache::list_namespaces`]
/// describe this handle's index: expired objects not yet touched still
/// count, and another process's new objects count once read.
///
/// Namespaces are directory names, so on a case-insensitive file system
/// `Ci` and `ci` share their objects.
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use cachew_client::{CacheExt, CreateOptions, DiskCache, Key};
///
/// let dir = tempfile::tempdir().unwrap();
/// let cache = DiskCache::open(dir.path()).unwrap();
/// let key = Key::new("greeting");
/// cache
///     .put_bytes(&key, "hello".into(), Default::default(), &CreateOptions::default())
///     .await
///     .unwrap();
/// assert_eq!(cache.get_bytes(&key).await.unwrap(), "hello");
/// assert!(cache.to_string().starts_with("disk:/"));
/// # });
/// ```
#[derive(Clone)]
pub struct DiskCache {
    shared: Arc<Shared>,
    namespace: Namespace,
}

struct Shared {
    root: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
    options: DiskCacheOptions,
    index: Mutex<Index>,
    counters: Counters,
}

type ObjectId = (Namespace, Key);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Backend(format!("disk cache task failed: {e}")))?
}

impl Shared {
    fn index(&self) -> MutexGuard<'_, Index> {
        // The index is advisory (sizes and recency); after a panic elsewhere
        // it is still better than none.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn object_path(&self, namespace: &Namespace, key: &Key) -> PathBuf {
        let hex = key.to_hex();
        self.objects
            .join(namespace.as_str())
            .join(&hex[..2])
            .join(hex)
    }
}

impl DiskCache {
    /// Opens (creating if needed) a cache rooted at `root` with default
    /// [`DiskCacheOptions`], removing abandoned uploads.
    pub fn open(root: impl AsRef<Path>) -> Result<DiskCache> {
        DiskCache::open_with(root, DiskCacheOptions::default())
    }

    /// Opens (creating if needed) a cache rooted at `root`.
    ///
    /// This is blocking file-system work (it lists every object); call it
    /// before serving, or from `spawn_blocking`.
    pub fn open_with(root: impl AsRef<Path>, options: DiskCacheOptions) -> Result<DiskCache> {
        let root = root.as_ref();
        fs::create_dir_all(root).map_err(|e| Error::io("create cache root", root, e))?;
        let root = fs::canonicalize(root).map_err(|e| Error::io("resolve cache root", root, e))?;
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        for dir in [&objects, &tmp] {
            fs::create_dir_all(dir).map_err(|e| Error::io("create cache directory", dir, e))?;
        }
        let removed = clean_temp(&tmp)?;
        if removed > 0 {
            tracing::info!(root = %root.display(), removed, "removed abandoned uploads");
        }
        let mut found = scan(&objects)?;
        found.sort_by_key(|entry| entry.3);
        let mut index = Index::default();
        for (id, len, file, _) in found {
            index.upsert(id, len, file);
        }
        let shared = Arc::new(Shared {
            root,
            objects,
            tmp,
            options,
            index: Mutex::new(index),
            counters: Counters::default(),
        });
        // Fail now, naming the directory, if uploads cannot be created.
        let (probe, probe_path) = shared.create_temp()?;
        // Removed while its lock is still held: unlocked, another process
        // opening the same root could take it for abandoned and remove it
        // first (seen as a NotFound here, in the two-process test).
        let removed = fs::remove_file(&probe_path);
        drop(probe);
        removed.map_err(|e| Error::io("remove temporary file", &probe_path, e))?;
        let victims = shared.index().evict(shared.options.capacity);
        shared.remove_victims(victims);
        Ok(DiskCache {
            shared,
            namespace: Namespace::default(),
        })
    }

    /// The absolute root directory.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// The options the cache was opened with.
    pub fn options(&self) -> &DiskCacheOptions {
        &self.shared.options
    }

    fn parts(&self, key: &Key) -> (Arc<Shared>, Namespace, Key) {
        (self.shared.clone(), self.namespace.clone(), *key)
    }
}

impl fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskCache")
            .field("root", &self.shared.root)
            .field("namespace", &self.namespace)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for DiskCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "disk:{}", self.shared.root.display())
    }
}

#[async_trait]
impl Cache for DiskCache {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn with_namespace(&self, namespace: Namespace) -> Arc<dyn Cache> {
        Arc::new(DiskCache {
            shared: self.shared.clone(),
            namespace,
        })
    }

    async fn stat(&self, key: &Key, options: &OpenOptions) -> Result<ObjectMeta> {
        let (shared, ns, key) = self.parts(key);
        let options = options.clone();
        blocking(move || shared.load(&ns, &key)?.record.stat(&options)).await
    }

    async fn open(&self, key: &Key, options: &OpenOptions) -> Result<Object> {
        let (shared, ns, key) = self.parts(key);
        let options = options.clone();
        let (meta, file) = blocking(move || {
            let mut loaded = shared.load(&ns, &key)?;
            let meta = loaded.record.open(&options)?;
            shared.touch((ns, key), &loaded);
            // Recency for the next process that rebuilds the index; a
            // read-only or foreign file simply keeps its old time.
            let _ = loaded.file.set_modified(SystemTime::now());
            let start = meta.range.map_or(0, |(start, _)| start);
            loaded
                .file
                .seek(SeekFrom::Start(start))
                .map_err(|e| Error::io("seek cache object", &loaded.path, e))?;
            Ok((meta, loaded.file))
        })
        .await?;
        let body: Pin<Box<dyn AsyncRead + Send>> = Box::pin(
            tokio::fs::File::from_std(file).take(meta.content_length().unwrap_or(u64::MAX)),
        );
        Ok(Object { meta, body })
    }

    async fn create(
        &self,
        key: &Key,
        headers: HeaderMap,
        options: &CreateOptions,
    ) -> Result<Box<dyn CacheWriter>> {
        let pending = PendingRecord::new(
            headers,
            options,
            self.shared.options.default_ttl,
            self.shared.options.max_ttl,
        )?;
        let shared = self.shared.clone();
        let (file, temp) = blocking(move || shared.create_temp()).await?;
        Ok(Box::new(DiskWriter {
            shared: self.shared.clone(),
            namespace: self.namespace.clone(),
            key: *key,
            hasher: (!pending.has_etag()).then(blake3::Hasher::new),
            pending,
            temp,
            file: Some(tokio::io::BufWriter::with_capacity(
                WRITE_BUFFER,
                tokio::fs::File::from_std(file),
            )),
            written: 0,
            state: WriterState::Open,
            failure: None,
        }))
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let (shared, ns, key) = self.parts(key);
        blocking(move || {
            let loaded = shared.load(&ns, &key)?;
            shared.discard(&(ns, key), &loaded.path, loaded.id);
            Ok(())
        })
        .await
    }

    async fn invalidate(&self, key: &Key) -> Result<()> {
        let (shared, ns, key) = self.parts(key);
        blocking(move || {
            let path = shared.object_path(&ns, &key);
            let mut index = shared.index();
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove cache object", path, e)),
            }
            index.forget(&(ns, key));
            Ok(())
        })
        .await
    }

    async fn stats(&self) -> Result<Stats> {
        let index = self.shared.index();
        Ok(Stats {
            objects: index.entries.len() as i64,
            size: index.size as i64,
            capacity: self.shared.options.capacity as i64,
        })
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let index = self.shared.index();
        let mut names: Vec<String> = index
            .entries
            .keys()
            .map(|(ns, _)| ns.as_str().to_owned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

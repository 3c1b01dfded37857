//! [`DiskCache`]: the embedded backend behind `--url file:///path`.
//!
//! The layout, the crash-safety invariant and the eviction rules are
//! documented on [`DiskCache`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cachew_proto::{CreateOptions, EntityTag, Key, Namespace, OpenOptions, Stats};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cache::{AbortCause, Cache, CacheWriter, Object, ObjectMeta};
use crate::error::{Error, Result};
use crate::record::{content_etag, PendingRecord, Record, WriterState};

/// Prefix of temporary upload files in `{root}/tmp/`.
const TEMP_PREFIX: &str = "cachew-tmp-";
/// Last 8 bytes of every object file.
const MAGIC: &[u8; 8] = b"CACHEWD1";
/// JSON length, body length, magic.
const FIXED_TRAILER: u64 = 24;
/// Metadata larger than this is corruption, not headers.
const MAX_META: u64 = 16 << 20;
/// Without `flock`, temporary files untouched this long are abandoned.
#[cfg(not(unix))]
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);
/// Bytes an upload gathers before they are written to its temporary file:
/// one blocking write per MiB instead of one per body frame (a save of
/// share/doc to the reference server sends 860 frames of 64 KiB).
const WRITE_BUFFER: usize = 1 << 20;

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
/// another one sharing the root — stay. Without `flock` (non-Unix), only
/// temporary files untouched for a day are removed.
///
/// # Capacity and expiry
///
/// The capacity counts bytes on disk, trailers included. Each `DiskCache`
/// keeps an index of objects in least-recently-used order, rebuilt from the
/// files' sizes and modification times when the root is opened; reading an
/// object sets its modification time, so the order survives restarts. A
/// commit that takes the total over capacity evicts least recently used
/// objects; an object bigger than the capacity is refused. Expired objects
/// behave as absent and are removed when touched. Objects that another
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
}

type ObjectId = (Namespace, Key);

/// Which file a path named when we looked: device and inode on Unix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    #[cfg(unix)]
    fn of(meta: &fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId(meta.dev(), meta.ino())
    }

    #[cfg(not(unix))]
    fn of(meta: &fs::Metadata) -> FileId {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        FileId(meta.len(), mtime)
    }
}

/// The objects this handle knows about, least recently used first.
#[derive(Default)]
struct Index {
    entries: HashMap<ObjectId, Slot>,
    lru: BTreeMap<u64, ObjectId>,
    size: u64,
    tick: u64,
}

struct Slot {
    len: u64,
    file: FileId,
    tick: u64,
}

impl Index {
    /// Records the object as the most recently used.
    fn upsert(&mut self, id: ObjectId, len: u64, file: FileId) {
        self.forget(&id);
        self.tick += 1;
        self.size += len;
        self.lru.insert(self.tick, id.clone());
        self.entries.insert(
            id,
            Slot {
                len,
                file,
                tick: self.tick,
            },
        );
    }

    fn forget(&mut self, id: &ObjectId) {
        if let Some(slot) = self.entries.remove(id) {
            self.lru.remove(&slot.tick);
            self.size -= slot.len;
        }
    }

    /// Forgets the object only if the index still describes `file`.
    fn forget_file(&mut self, id: &ObjectId, file: FileId) {
        if self.entries.get(id).is_some_and(|slot| slot.file == file) {
            self.forget(id);
        }
    }

    /// Drops least recently used objects until the total fits, returning
    /// them for removal.
    fn evict(&mut self, capacity: u64) -> Vec<(ObjectId, FileId)> {
        let mut victims = Vec::new();
        while capacity > 0 && self.size > capacity {
            let Some((_, id)) = self.lru.pop_first() else {
                break;
            };
            if let Some(slot) = self.entries.remove(&id) {
                self.size -= slot.len;
                victims.push((id, slot.file));
            }
        }
        victims
    }
}

/// The JSON part of an object file's trailer.
#[derive(Debug, Serialize, Deserialize)]
struct StoredMeta {
    /// The key, checked on read so a misplaced file is never served.
    key: String,
    etag: String,
    /// Seconds since the Unix epoch.
    last_modified: u64,
    /// Milliseconds since the Unix epoch.
    expires_ms: Option<u64>,
    /// The stored headers in order, repeated names included.
    headers: Vec<(String, StoredValue)>,
}

/// A header value: text when it is UTF-8, else its bytes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredValue {
    Text(String),
    Bytes(Vec<u8>),
}

/// A decoded trailer.
struct Trailer {
    record: Record,
    expires_ms: Option<u64>,
}

enum TrailerError {
    Io(io::Error),
    Corrupt(String),
    /// Written by another version of this format: not ours to serve or to
    /// remove.
    Foreign,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn encode_trailer(key: &Key, record: &Record, expires: Option<SystemTime>) -> Result<Vec<u8>> {
    let headers = record
        .headers
        .iter()
        .map(|(name, value)| {
            let value = match value.to_str() {
                Ok(text) => StoredValue::Text(text.to_owned()),
                Err(_) => StoredValue::Bytes(value.as_bytes().to_vec()),
            };
            (name.as_str().to_owned(), value)
        })
        .collect();
    let meta = StoredMeta {
        key: key.to_hex(),
        etag: record.etag.as_str().to_owned(),
        last_modified: unix_ms(record.last_modified) / 1000,
        expires_ms: expires.map(unix_ms),
        headers,
    };
    let mut out = serde_json::to_vec(&meta)
        .map_err(|e| Error::Backend(format!("encode object metadata: {e}")))?;
    let json_len = out.len() as u64;
    out.extend_from_slice(&json_len.to_le_bytes());
    out.extend_from_slice(&record.size.to_le_bytes());
    out.extend_from_slice(MAGIC);
    Ok(out)
}

fn read_trailer(file: &mut File, file_len: u64, key: &Key) -> Result<Trailer, TrailerError> {
    let corrupt = |why: &str| Err(TrailerError::Corrupt(why.to_owned()));
    if file_len < FIXED_TRAILER {
        return corrupt("shorter than a trailer");
    }
    let mut fixed = [0u8; FIXED_TRAILER as usize];
    file.seek(SeekFrom::Start(file_len - FIXED_TRAILER))
        .and_then(|_| file.read_exact(&mut fixed))
        .map_err(TrailerError::Io)?;
    if &fixed[16..] != MAGIC {
        if fixed[16..].starts_with(&MAGIC[..7]) {
            return Err(TrailerError::Foreign);
        }
        return corrupt("no trailer magic");
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&fixed[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let (json_len, size) = (word(0), word(8));
    if json_len > MAX_META
        || size
            .checked_add(json_len)
            .and_then(|n| n.checked_add(FIXED_TRAILER))
            != Some(file_len)
    {
        return corrupt("lengths do not add up to the file's");
    }
    let mut json = vec![0u8; json_len as usize];
    file.seek(SeekFrom::Start(size))
        .and_then(|_| file.read_exact(&mut json))
        .map_err(TrailerError::Io)?;
    let meta: StoredMeta = match serde_json::from_slice(&json) {
        Ok(meta) => meta,
        Err(_) => return corrupt("metadata is not valid JSON"),
    };
    if meta.key != key.to_hex() {
        return corrupt("metadata names another key");
    }
    let Ok(etag) = EntityTag::new(meta.etag) else {
        return corrupt("invalid stored ETag");
    };
    let mut headers = HeaderMap::new();
    for (name, value) in meta.headers {
        let value = match value {
            StoredValue::Text(text) => HeaderValue::from_str(&text),
            StoredValue::Bytes(bytes) => HeaderValue::from_bytes(&bytes),
        };
        match (HeaderName::from_bytes(name.as_bytes()), value) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => return corrupt("invalid stored header"),
        }
    }
    Ok(Trailer {
        record: Record {
            headers,
            etag,
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(meta.last_modified),
            size,
        },
        expires_ms: meta.expires_ms,
    })
}

/// Takes an exclusive, non-blocking `flock`; `Ok(false)` if someone holds it.
#[cfg(unix)]
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: `flock` only reads the descriptor, which `file` keeps open for
    // the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Without `flock`, a writer's temporary file counts as held while it is
/// younger than a day.
#[cfg(not(unix))]
fn try_lock(file: &File) -> io::Result<bool> {
    let age = file
        .metadata()?
        .modified()?
        .elapsed()
        .unwrap_or(Duration::ZERO);
    Ok(age > STALE_TEMP_AGE)
}

/// Whether `path` still names the open `file`.
fn names(path: &Path, file: &File) -> io::Result<bool> {
    let on_disk = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(FileId::of(&on_disk) == FileId::of(&file.metadata()?))
}

/// Removes `path` if it still is the file `expected`.
fn remove_if_same(path: &Path, expected: FileId) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if FileId::of(&meta) == expected => match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Backend(format!("disk cache task failed: {e}")))?
}

/// An object file, opened and checked.
struct Loaded {
    file: File,
    path: PathBuf,
    record: Record,
    id: FileId,
    len: u64,
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

    /// Opens the object file and decodes its trailer; expired and corrupt
    /// files are removed and reported as [`Error::NotFound`].
    fn load(&self, namespace: &Namespace, key: &Key) -> Result<Loaded> {
        let id = (namespace.clone(), *key);
        let path = self.object_path(namespace, key);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut index = self.index();
                // Under the lock no publish of this process can be halfway,
                // so a path still missing means the index entry is stale.
                if !path.exists() {
                    index.forget(&id);
                }
                return Err(Error::NotFound);
            }
            Err(e) => return Err(Error::io("open cache object", path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io("inspect cache object", &path, e))?;
        let file_id = FileId::of(&meta);
        match read_trailer(&mut file, meta.len(), key) {
            Ok(trailer) => {
                if trailer
                    .expires_ms
                    .is_some_and(|at| at <= unix_ms(SystemTime::now()))
                {
                    self.discard(&id, &path, file_id);
                    return Err(Error::NotFound);
                }
                Ok(Loaded {
                    file,
                    path,
                    record: trailer.record,
                    id: file_id,
                    len: meta.len(),
                })
            }
            Err(TrailerError::Io(e)) => Err(Error::io("read cache object", path, e)),
            Err(TrailerError::Foreign) => {
                tracing::debug!(path = %path.display(), "skipping an object of another format version");
                Err(Error::NotFound)
            }
            Err(TrailerError::Corrupt(why)) => {
                tracing::warn!(path = %path.display(), why, "removing a corrupt cache object");
                self.discard(&id, &path, file_id);
                Err(Error::NotFound)
            }
        }
    }

    /// Marks a just-read object as the most recently used, unless a newer
    /// version replaced it meanwhile (whose publish indexed it already).
    fn touch(&self, id: ObjectId, loaded: &Loaded) {
        let mut index = self.index();
        let current = fs::symlink_metadata(&loaded.path)
            .ok()
            .map(|m| FileId::of(&m));
        if current == Some(loaded.id) {
            index.upsert(id, loaded.len, loaded.id);
        }
    }

    /// Removes the object file if it still is `file`, and forgets it.
    fn discard(&self, id: &ObjectId, path: &Path, file: FileId) {
        let mut index = self.index();
        if let Err(e) = remove_if_same(path, file) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a cache object");
        }
        index.forget_file(id, file);
    }

    /// Moves a complete temporary file into place and evicts what no longer
    /// fits.
    fn publish(
        &self,
        namespace: &Namespace,
        key: &Key,
        temp: &Path,
        file: &File,
        len: u64,
    ) -> Result<()> {
        let dest = self.object_path(namespace, key);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io("create cache directory", dir, e))?;
        }
        let file_id = FileId::of(
            &file
                .metadata()
                .map_err(|e| Error::io("inspect temporary file", temp, e))?,
        );
        let victims = {
            // Renaming under the index lock keeps the index in the same order
            // as the renames when tasks of this process race on one key.
            let mut index = self.index();
            fs::rename(temp, &dest).map_err(|e| Error::io("publish cache object", &dest, e))?;
            index.upsert((namespace.clone(), *key), len, file_id);
            index.evict(self.options.capacity)
        };
        for ((ns, key), file) in victims {
            let path = self.object_path(&ns, &key);
            match remove_if_same(&path, file) {
                Ok(_) => tracing::debug!(path = %path.display(), "evicted cache object"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not evict a cache object");
                }
            }
        }
        Ok(())
    }

    /// Creates and locks a fresh temporary file.
    fn create_temp(&self) -> Result<(File, PathBuf)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        for _ in 0..16 {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let path = self.tmp.join(format!(
                "{TEMP_PREFIX}{}-{nanos}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let file = match fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create temporary file", path, e)),
            };
            let locked = try_lock(&file).map_err(|e| Error::io("lock temporary file", &path, e))?;
            // Between creating and locking, a cleaner in another process may
            // have taken the file for abandoned and removed it: start over.
            if locked && names(&path, &file).unwrap_or(false) {
                return Ok((file, path));
            }
        }
        Err(Error::Backend(format!(
            "could not create a temporary file in {}",
            self.tmp.display()
        )))
    }
}

/// Removes temporary files whose writer is gone; returns how many.
fn clean_temp(tmp: &Path) -> Result<usize> {
    let entries = fs::read_dir(tmp).map_err(|e| Error::io("read temporary directory", tmp, e))?;
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read temporary directory", tmp, e))?;
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        let file = match File::open(&path) {
            Ok(file) => file,
            // Published or discarded meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open temporary file", path, e)),
        };
        let abandoned = try_lock(&file).map_err(|e| Error::io("lock temporary file", &path, e))?;
        // Holding the lock, nobody can be writing or publishing this file.
        if abandoned && names(&path, &file).unwrap_or(false) {
            fs::remove_file(&path).map_err(|e| Error::io("remove temporary file", &path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Lists the object files under `objects/` with their size, identity and
/// modification time. Entries that are not objects are skipped.
fn scan(objects: &Path) -> Result<Vec<(ObjectId, u64, FileId, SystemTime)>> {
    let mut found = Vec::new();
    let namespaces =
        fs::read_dir(objects).map_err(|e| Error::io("read cache directory", objects, e))?;
    for ns_entry in namespaces {
        let ns_entry = ns_entry.map_err(|e| Error::io("read cache directory", objects, e))?;
        let name = ns_entry.file_name();
        let Some(namespace) = name.to_str().and_then(|n| Namespace::new(n).ok()) else {
            tracing::warn!(path = %ns_entry.path().display(), "ignoring a directory that is not a namespace");
            continue;
        };
        let ns_dir = ns_entry.path();
        let shards = match fs::read_dir(&ns_dir) {
            Ok(shards) => shards,
            Err(e) => {
                tracing::warn!(path = %ns_dir.display(), error = %e, "skipping unreadable directory");
                continue;
            }
        };
        for shard in shards.flatten() {
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for file in files.flatten() {
                let file_name = file.file_name();
                let Some(hex) = file_name.to_str() else {
                    continue;
                };
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                let Ok(meta) = file.metadata() else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((
                    (namespace.clone(), Key::parse(hex)),
                    meta.len(),
                    FileId::of(&meta),
                    mtime,
                ));
            }
        }
    }
    Ok(found)
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
        for ((ns, key), file) in victims {
            let _ = remove_if_same(&shared.object_path(&ns, &key), file);
        }
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
        let body: Pin<Box<dyn AsyncRead + Send>> =
            Box::pin(tokio::fs::File::from_std(file).take(meta.content_length()));
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

/// An upload into a locked temporary file, published on commit.
struct DiskWriter {
    shared: Arc<Shared>,
    namespace: Namespace,
    key: Key,
    pending: PendingRecord,
    temp: PathBuf,
    /// `Some` while open. Buffered: `tokio::fs::File` hands every write to
    /// a blocking thread, and an upload arrives in frames of 16–64 KiB.
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    /// Digests the body for a generated ETag; `None` when one was given.
    hasher: Option<blake3::Hasher>,
    written: u64,
    state: WriterState,
    /// Why the upload failed, repeated by a later commit.
    failure: Option<String>,
}

impl fmt::Debug for DiskWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskWriter")
            .field("namespace", &self.namespace)
            .field("key", &self.key)
            .field("temp", &self.temp)
            .field("written", &self.written)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl DiskWriter {
    /// Drops the temporary file; the object never becomes visible.
    fn discard(&mut self, state: WriterState) {
        self.state = state;
        self.file = None;
        if let Err(e) = fs::remove_file(&self.temp) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.temp.display(), error = %e, "could not remove a temporary file");
            }
        }
    }

    fn fail(&mut self, message: String) {
        self.failure = Some(message);
        self.discard(WriterState::Failed);
    }

    async fn publish(&mut self) -> Result<()> {
        let mut file = self.file.take().ok_or(Error::WriterClosed("closed"))?;
        file.flush()
            .await
            .map_err(|e| Error::io("write temporary file", &self.temp, e))?;
        let mut file = file.into_inner().into_std().await;
        let hasher = self.hasher.take();
        let (record, expires) = self.pending.finish(self.written, SystemTime::now(), || {
            content_etag(&hasher.unwrap_or_default().finalize())
        });
        let trailer = encode_trailer(&self.key, &record, expires)?;
        let total = self.written + trailer.len() as u64;
        let capacity = self.shared.options.capacity;
        if capacity > 0 && total > capacity {
            return Err(Error::Backend(format!(
                "object of {} bytes ({total} bytes on disk with its metadata) exceeds the disk \
                 cache capacity of {capacity} bytes (objects larger than the capacity are never stored)",
                self.written
            )));
        }
        let (shared, ns, key, temp) = (
            self.shared.clone(),
            self.namespace.clone(),
            self.key,
            self.temp.clone(),
        );
        blocking(move || {
            file.write_all(&trailer)
                .map_err(|e| Error::io("write temporary file", &temp, e))?;
            // Durable before visible: the rename must not overtake the data.
            file.sync_all()
                .map_err(|e| Error::io("sync temporary file", &temp, e))?;
            shared.publish(&ns, &key, &temp, &file, total)
        })
        .await
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        if self.state == WriterState::Open {
            tracing::debug!(key = %self.key, "disk cache writer dropped without commit; discarding");
            self.discard(WriterState::Aborted);
        }
    }
}

impl AsyncWrite for DiskWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.state != WriterState::Open {
            return Poll::Ready(Err(this.state.closed_io_error()));
        }
        let capacity = this.shared.options.capacity;
        let size = this.written + data.len() as u64;
        if capacity > 0 && size > capacity {
            // Stop filling the disk now: the object can never be stored.
            let message = crate::record::too_large("disk", size, capacity);
            this.fail(message.clone());
            return Poll::Ready(Err(io::Error::other(message)));
        }
        let Some(file) = this.file.as_mut() else {
            return Poll::Ready(Err(this.state.closed_io_error()));
        };
        match Pin::new(file).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if let Some(hasher) = &mut this.hasher {
                    hasher.update(&data[..n]);
                }
                this.written += n as u64;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => {
                let message = format!("write temporary file {}: {e}", this.temp.display());
                this.fail(message.clone());
                Poll::Ready(Err(io::Error::new(e.kind(), message)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.file.as_mut() {
            Some(file) => Pin::new(file).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Shutting the stream down is not a commit; it only flushes.
        self.poll_flush(cx)
    }
}

#[async_trait]
impl CacheWriter for DiskWriter {
    async fn commit(&mut self) -> Result<()> {
        if self.state != WriterState::Open {
            if let Some(failure) = &self.failure {
                return Err(Error::Backend(failure.clone()));
            }
            return self.state.commit_again();
        }
        match self.publish().await {
            Ok(()) => {
                self.state = WriterState::Committed;
                self.file = None;
                Ok(())
            }
            Err(e) => {
                self.fail(e.to_string());
                Err(e)
            }
        }
    }

    async fn abort(&mut self, cause: AbortCause) -> Result<()> {
        if self.state == WriterState::Open {
            tracing::debug!(key = %self.key, %cause, "disk cache write aborted");
            self.discard(WriterState::Aborted);
        }
        Ok(())
    }
}

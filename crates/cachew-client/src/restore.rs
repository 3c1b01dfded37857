//! Restoring a saved directory tree from any [`Cache`] (`PROTOCOL.md` §4).
//!
//! Every restore is all or nothing (`staging.rs`): the
//! archive is extracted into a staging directory beside the target — on the
//! same file system, so a small `/tmp` cannot run out of space (LESSONS 2)
//! — and the result is published only when extraction and verification
//! succeeded: renamed into place, or swapped into an existing target entry
//! by entry with a journal (`publish.rs`). A failure, a cancellation or a
//! signal leaves the target as it was. The
//! extractor makes read-only directories writable and restores them
//! (LESSONS 1). The target path is cleaned first, so `dir/` is staged like
//! `dir` (LESSONS 3). A corrupt object under one key falls through to the
//! next key with a warning.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cachew_archive::ExtractOptions;
use tokio::io::{AsyncRead, ReadBuf};

use crate::digest::{self, TreeDigest};
use crate::hashfiles::clean;
use crate::parallel::ParallelOptions;
use crate::save::{from_archive, Progress};
use crate::staging::{self, Staging, Worker};
use crate::{Cache, Error, Key, Object, OpenOptions, Result};

/// Options for [`restore`].
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Threads creating files during extraction; 0 means one per core.
    pub zstd_threads: usize,
    /// Check that the restored tree has the tree digest stored with the
    /// object; a mismatch (or an object without a digest) is an error. The
    /// check runs on the staging tree, which holds exactly the archive,
    /// before it is published, so a mismatch leaves the target as it was.
    /// Entries of an existing target that the archive lacks are kept and
    /// not checked. Without this, every restore is still verified when the
    /// object announces a digest trailer (objects saved by cachew-rs).
    pub verify: bool,
    /// Only look the keys up (a Stat each): report the first hit without
    /// downloading or touching the directory.
    pub lookup_only: bool,
    /// Counters updated as compressed bytes are downloaded.
    pub progress: Option<Progress>,
    /// Download objects of at least `min_size` bytes with concurrent ranged
    /// requests ([`open_object`](crate::parallel::open_object): a Stat, then
    /// `parallel_reader`); `None` (the default) reads every object with one
    /// request. Meant for remote caches.
    pub parallel: Option<ParallelOptions>,
    /// Most bytes an archive may unpack to (its tar stream); a larger one
    /// is treated as a corrupt object. `None` (the default): no limit.
    pub max_size: Option<u64>,
    /// Leave the removal of what an in-place restore displaced to the
    /// caller: a committed publish into an existing target keeps its
    /// staging directory (the old entries, and the journal that says the
    /// publish finished) and names it in [`RestoreOutcome::Hit`]'s
    /// `displaced`, for [`remove_staging`](crate::remove_staging) — e.g. by
    /// another process, off the restore's critical path. If nobody removes
    /// it, the next restore of the same target or [`gc`](crate::gc) does,
    /// once this process has exited (never while it runs: the directory is
    /// named for its owner). Not for a target that is a mount point (its
    /// staging is inside it and is always removed at once), nor for a new
    /// target (nothing is displaced). Off by default.
    pub deferred_cleanup: bool,
}

impl RestoreOptions {
    /// Sets the number of extraction threads (0 = one per core).
    #[must_use]
    pub fn with_zstd_threads(mut self, threads: usize) -> Self {
        self.zstd_threads = threads;
        self
    }

    /// Verifies the restored tree against the stored digest.
    #[must_use]
    pub fn with_verify(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }

    /// Only looks the keys up.
    #[must_use]
    pub fn with_lookup_only(mut self, lookup_only: bool) -> Self {
        self.lookup_only = lookup_only;
        self
    }

    /// Sets the progress counters.
    #[must_use]
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Downloads large objects with parallel ranged requests.
    #[must_use]
    pub fn with_parallel(mut self, parallel: ParallelOptions) -> Self {
        self.parallel = Some(parallel);
        self
    }

    /// Limits what an archive may unpack to (see [`RestoreOptions::max_size`]).
    #[must_use]
    pub fn with_max_size(mut self, max_size: Option<u64>) -> Self {
        self.max_size = max_size;
        self
    }

    /// Leaves the removal of displaced old entries to the caller (see
    /// [`RestoreOptions::deferred_cleanup`]).
    #[must_use]
    pub fn with_deferred_cleanup(mut self, deferred: bool) -> Self {
        self.deferred_cleanup = deferred;
        self
    }
}

/// What [`restore`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreOutcome {
    /// `keys[index]` was found (and, unless `lookup_only`, restored).
    #[non_exhaustive]
    Hit {
        /// The key that hit.
        key: Key,
        /// Its position in the list given to [`restore`] (0 = the exact key).
        index: usize,
        /// Compressed size of the object; 0 when the server did not say
        /// (an answer without `Content-Length`).
        size: u64,
        /// Entries extracted (0 with `lookup_only`).
        entries: u64,
        /// Bytes of file data written (0 with `lookup_only`).
        bytes: u64,
        /// The digest the restored tree was verified against, with `verify`.
        verified: Option<TreeDigest>,
        /// With [`RestoreOptions::deferred_cleanup`], after an in-place
        /// restore: the staging directory holding the entries it displaced,
        /// left for the caller to remove with
        /// [`remove_staging`](crate::remove_staging). `None` otherwise (it
        /// was removed, or nothing was displaced).
        displaced: Option<PathBuf>,
    },
    /// None of the keys is in the cache.
    Miss,
}

/// Restores the first of `keys` found in `cache` into `dir`: fallback keys
/// are tried in order, and a miss on all of them is
/// [`RestoreOutcome::Miss`], not an error. A corrupt object (see
/// [`Error::is_corrupt_object`]) is skipped with a warning for the next
/// key; when it was the last key, it is the error. A failed download or a
/// failure to write the tree is an error.
///
/// The archive is extracted into a staging directory beside `dir` (same
/// file system; inside `dir` when it is a mount point) and published only
/// when extraction and verification succeeded: renamed into place, or
/// swapped into the existing `dir` — which keeps its entries that the
/// archive lacks, as with `tar -x` — with `renameat2(RENAME_EXCHANGE)`,
/// each step journaled. So any failure leaves `dir` as it was, and
/// removes the parents of `dir` that the restore created. Stale staging
/// left by a killed restore of the same `dir` is rolled back or removed
/// first. A trailing slash on `dir` does not change this. (A mount point
/// inside `dir` where the archive has entries cannot take them by rename:
/// the restore then fails and rolls back.)
pub async fn restore(
    cache: &dyn Cache,
    keys: &[Key],
    dir: &Path,
    options: &RestoreOptions,
) -> Result<RestoreOutcome> {
    if keys.is_empty() {
        return Err(Error::InvalidInput("no keys to restore".into()));
    }
    if dir.as_os_str().is_empty() {
        return Err(Error::InvalidInput("empty target directory".into()));
    }
    let dir = clean(dir);
    let mut skipped: Option<Error> = None;
    for (index, key) in keys.iter().enumerate() {
        if options.lookup_only {
            match cache.stat(key, &OpenOptions::default()).await {
                Ok(meta) => {
                    return Ok(RestoreOutcome::Hit {
                        key: *key,
                        index,
                        size: meta.size.unwrap_or(0),
                        entries: 0,
                        bytes: 0,
                        verified: None,
                        displaced: None,
                    })
                }
                Err(Error::NotFound) => continue,
                Err(e) => return Err(e),
            }
        }
        let opened = match &options.parallel {
            Some(parallel) => crate::parallel::open_object(cache, key, parallel).await,
            None => cache.open(key, &OpenOptions::default()).await,
        };
        let object = match opened {
            Ok(object) => object,
            Err(Error::NotFound) => continue,
            Err(e) => return Err(e),
        };
        let size = object.meta.size.unwrap_or(0);
        let (entries, bytes, verified, displaced) = match extract_object(object, &dir, options)
            .await
        {
            Ok(done) => done,
            Err(e) if e.is_corrupt_object() && index + 1 < keys.len() => {
                tracing::warn!("the object for key {key} is unusable ({e}); trying the next key");
                skipped.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        return Ok(RestoreOutcome::Hit {
            key: *key,
            index,
            size,
            entries,
            bytes,
            verified,
            displaced,
        });
    }
    match skipped {
        // Later keys missed: the corrupt object is the answer.
        Some(e) => Err(e),
        None => Ok(RestoreOutcome::Miss),
    }
}

/// What a verification needs from the object's headers: what the digest
/// in the archive's trailer covers.
struct Expected {
    paths: Vec<PathBuf>,
    excludes: Vec<String>,
}

/// Message for an object that cannot be verified.
const NO_DIGEST: &str = "cannot verify: the object has no tree digest (it was not saved by \
                         cachew-rs, or was saved without one)";

fn expected_digest(object: &Object) -> Result<Expected> {
    let headers = &object.meta.headers;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // The paths header says the archive ends with a digest trailer.
    let paths = digest::decode_list(
        text(digest::TREE_PATHS).ok_or_else(|| Error::InvalidInput(NO_DIGEST.into()))?,
    )?
    .into_iter()
    .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(&p)))
    .collect();
    let excludes = match text(digest::TREE_EXCLUDES) {
        Some(list) => digest::decode_list(list)?
            .into_iter()
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .collect(),
        None => Vec::new(),
    };
    Ok(Expected { paths, excludes })
}

async fn extract_object(
    object: Object,
    dir: &Path,
    options: &RestoreOptions,
) -> Result<(u64, u64, Option<TreeDigest>, Option<PathBuf>)> {
    // Check that verification is possible before touching the disk. An
    // object that announces a digest trailer is verified even without
    // `verify`: the staging tree holds exactly the archive, for a new
    // target and an existing one alike, so it is checked before it becomes
    // visible.
    let expected = if options.verify {
        Some(expected_digest(&object)?)
    } else {
        expected_digest(&object).ok()
    };
    if let Some(p) = &options.progress {
        if let Some(size) = object.meta.size {
            p.set_total(size);
        }
    }
    let body = CountingReader {
        inner: object.body,
        progress: options.progress.clone(),
    };
    let extract_options = ExtractOptions::default()
        .with_threads(options.zstd_threads)
        .with_max_size(options.max_size);

    // What a killed restore of this target left: removed, or rolled back.
    {
        let d = dir.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || staging::recover(&d)).await;
    }
    let existing = match tokio::fs::metadata(dir).await {
        Ok(meta) if meta.is_dir() => Some(meta),
        Ok(_) => {
            return Err(Error::InvalidInput(format!(
                "{} exists and is not a directory",
                dir.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("stat", dir, e)),
    };

    // A symlink to a directory: the directory it names is restored.
    let dir = if existing.is_some() {
        tokio::fs::canonicalize(dir)
            .await
            .map_err(|e| Error::io("resolve", dir, e))?
    } else {
        dir.to_path_buf()
    };
    // A mount point cannot be renamed: its staging goes inside it.
    let staging = match &existing {
        Some(_) if is_mount_point(&dir) => Staging::create_inside(&dir)?,
        _ => Staging::create(&dir)?,
    };
    if let Some(meta) = &existing {
        // The archive's `./` entry, if any, overrides this; without one
        // the target keeps its mode.
        let tree = staging.tree();
        std::fs::create_dir(&tree).map_err(|e| Error::io("create directory", &tree, e))?;
        std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| Error::io("change mode of", &tree, e))?;
    }

    let mut summary = extract_stream(
        body,
        staging.tree(),
        extract_options,
        Some(staging.worker.clone()),
    )
    .await?;
    let verified = match expected {
        Some(expected) => {
            Some(verify(staging.tree(), summary.tree_digest, expected, options).await?)
        }
        None => None,
    };
    let displaced = staging
        .commit(
            &dir,
            existing.is_some(),
            summary.implied_dirs.take(),
            options.deferred_cleanup,
        )
        .await?;
    Ok((summary.entries, summary.bytes, verified, displaced))
}

/// Whether `dir` is on another file system than its parent.
fn is_mount_point(dir: &Path) -> bool {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    match (std::fs::metadata(dir), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev() || a.ino() == b.ino(),
        _ => false,
    }
}

/// Checks the restored tree in `dir` against `trailer`, the digest the
/// archive carried.
async fn verify(
    dir: PathBuf,
    trailer: Option<TreeDigest>,
    expected: Expected,
    options: &RestoreOptions,
) -> Result<TreeDigest> {
    let digest = trailer.ok_or_else(|| {
        Error::Verification(
            "cannot verify: the object's headers announce a tree digest but the archive has no \
             digest trailer (truncated or rewritten object?)"
                .into(),
        )
    })?;
    let threads = options.zstd_threads;
    let Expected { paths, excludes } = expected;
    let actual = digest::tree_digest_async(dir, paths, excludes, threads).await?;
    if actual != digest {
        return Err(Error::Verification(format!(
            "verification failed: the restored tree has digest {actual}, the saved tree had {digest}"
        )));
    }
    Ok(digest)
}

/// Bytes handed from the download to the extractor per message.
const BRIDGE_CHUNK: usize = 512 * 1024;
/// Messages in flight between them (bounds memory to a few MiB).
const BRIDGE_DEPTH: usize = 8;

/// Streams `body` into the extractor running on a blocking thread.
///
/// The download side reads into uninitialised buffers (`BytesMut`) and
/// hands over ~512 KiB at a time, so no memory is zeroed per read however
/// small the network reads are. A download error reaches the extractor as a
/// read error and is returned as the cache error it was; an extraction
/// error stops the download. The blocking work is always awaited, so the
/// caller may remove a staging directory afterwards without racing it.
async fn extract_stream<R>(
    mut body: R,
    target: PathBuf,
    options: ExtractOptions,
    staging: Option<Arc<Worker>>,
) -> Result<cachew_archive::ExtractSummary>
where
    R: AsyncRead + Unpin + Send,
{
    use bytes::{Bytes, BytesMut};
    use tokio::io::AsyncReadExt;

    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(BRIDGE_DEPTH);
    if let Some(worker) = &staging {
        worker.start();
    }
    let task = tokio::task::spawn_blocking(move || {
        let reader = BridgeReader {
            rx,
            current: Bytes::new(),
        };
        let result = cachew_archive::extract(reader, &target, &options);
        if let Some(worker) = staging {
            worker.done();
        }
        result
    });
    let mut download_error = None;
    loop {
        let mut chunk = BytesMut::with_capacity(BRIDGE_CHUNK);
        let mut eof = false;
        while chunk.len() < BRIDGE_CHUNK {
            match body.read_buf(&mut chunk).await {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    download_error = Some(e);
                    break;
                }
            }
        }
        if !chunk.is_empty() && tx.send(Ok(chunk.freeze())).await.is_err() {
            // The extractor stopped (an error, or the end of the archive).
            break;
        }
        if let Some(e) = &download_error {
            let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string()))).await;
            break;
        }
        if eof {
            break;
        }
    }
    drop(tx);
    let result = task
        .await
        .map_err(|e| Error::Backend(format!("extraction task failed: {e}")))?;
    match (download_error, result) {
        // The download failed: that is the cause, whatever the extractor saw.
        (Some(e), Err(_)) => Err(Error::from(e)),
        (_, Err(e)) => Err(from_archive(e)),
        (_, Ok(summary)) => Ok(summary),
    }
}

/// The extractor's end of [`extract_stream`]'s channel.
struct BridgeReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
}

impl std::io::Read for BridgeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// Counts bytes as they come from the cache.
struct CountingReader<R> {
    inner: R,
    progress: Option<Progress>,
}

impl<R: AsyncRead + Unpin> AsyncRead for CountingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(p)) = (&poll, &this.progress) {
            p.add((buf.filled().len() - before) as u64);
        }
        poll
    }
}

//! Restoring a saved directory tree from any [`Cache`] (`PROTOCOL.md` §4).
//!
//! When the target directory does not exist, the archive is extracted into a
//! staging directory beside it — on the same file system, so a small `/tmp`
//! cannot run out of space (LESSONS 2) — and renamed into place only when
//! extraction (and verification) succeeded, so a failure leaves nothing
//! behind. An existing target is extracted into in place; the extractor
//! makes read-only directories writable and restores them (LESSONS 1). The
//! target path is cleaned first, so `dir/` is staged like `dir` (LESSONS 3).

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use cachew_archive::ExtractOptions;
use tokio::io::{AsyncRead, ReadBuf};

use crate::digest::{self, TreeDigest};
use crate::hashfiles::clean;
use crate::parallel::ParallelOptions;
use crate::save::{from_archive, Progress};
use crate::{Cache, Error, Key, Object, OpenOptions, Result};

/// Options for [`restore`].
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Threads creating files during extraction; 0 means one per core.
    pub zstd_threads: usize,
    /// Check that the restored tree has the tree digest stored with the
    /// object; a mismatch (or an object without a digest) is an error. For
    /// a staged restore the check runs before the rename, so a mismatch
    /// leaves nothing behind. Files that were already in an existing target
    /// under the saved paths count as differences.
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
    },
    /// None of the keys is in the cache.
    Miss,
}

/// Restores the first of `keys` found in `cache` into `dir`: fallback keys
/// are tried in order, and a miss on all of them is
/// [`RestoreOutcome::Miss`], not an error. A corrupt archive, a failed
/// download or a failed verification is an error.
///
/// When `dir` does not exist, the archive is extracted into a staging
/// directory beside it (same file system) and renamed into place only when
/// extraction and verification succeeded, so a failure leaves nothing
/// behind; an existing `dir` is extracted into in place, read-only
/// directories included. A trailing slash on `dir` does not change this.
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
        let (entries, bytes, verified) = extract_object(object, &dir, options).await?;
        return Ok(RestoreOutcome::Hit {
            key: *key,
            index,
            size,
            entries,
            bytes,
            verified,
        });
    }
    Ok(RestoreOutcome::Miss)
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
) -> Result<(u64, u64, Option<TreeDigest>)> {
    // Check that verification is possible before touching the disk.
    let expected = if options.verify {
        Some(expected_digest(&object)?)
    } else {
        None
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
    let extract_options = ExtractOptions::default().with_threads(options.zstd_threads);

    let existing = match tokio::fs::metadata(dir).await {
        Ok(meta) if meta.is_dir() => true,
        Ok(_) => {
            return Err(Error::InvalidInput(format!(
                "{} exists and is not a directory",
                dir.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io("stat", dir, e)),
    };

    if existing {
        let summary = extract_stream(body, dir.to_path_buf(), extract_options, None).await?;
        let verified = match expected {
            Some(expected) => {
                Some(verify(dir.to_path_buf(), summary.tree_digest, expected, options).await?)
            }
            None => None,
        };
        return Ok((summary.entries, summary.bytes, verified));
    }

    let staging = Staging::create(dir)?;
    let result = async {
        let summary = extract_stream(
            body,
            staging.path.clone(),
            extract_options,
            Some(staging.extractor.clone()),
        )
        .await?;
        let verified = match expected {
            Some(expected) => {
                Some(verify(staging.path.clone(), summary.tree_digest, expected, options).await?)
            }
            None => None,
        };
        Ok::<_, Error>((summary, verified))
    }
    .await;
    let (summary, verified) = result?;
    staging.commit(dir)?;
    Ok((summary.entries, summary.bytes, verified))
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
        Error::Backend(
            "cannot verify: the object's headers announce a tree digest but the archive has no \
             digest trailer (truncated or rewritten object?)"
                .into(),
        )
    })?;
    let threads = options.zstd_threads;
    let Expected { paths, excludes } = expected;
    let actual = digest::tree_digest_async(dir, paths, excludes, threads).await?;
    if actual != digest {
        return Err(Error::Backend(format!(
            "verification failed: the restored tree has digest {actual}, the saved tree had {digest}"
        )));
    }
    Ok(digest)
}

/// A staging directory beside the target; removed on drop unless committed.
///
/// If the restore is cancelled (its future dropped) while the extractor
/// thread still writes into the directory, removing it at once would race
/// that thread; the removal is then left to the thread when it stops.
struct Staging {
    path: PathBuf,
    committed: bool,
    extractor: Arc<Mutex<ExtractorState>>,
}

/// Who removes an abandoned staging directory.
#[derive(Debug, Default)]
struct ExtractorState {
    /// The extractor thread is writing into the directory.
    running: bool,
    /// The restore was dropped meanwhile: the thread removes the directory.
    abandoned: bool,
}

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

impl Staging {
    fn create(target: &Path) -> Result<Staging> {
        let name = target.file_name().ok_or_else(|| {
            Error::InvalidInput(format!(
                "cannot restore into {}: it has no final name",
                target.display()
            ))
        })?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| Error::io("create directory", &parent, e))?;
        let seed = std::process::id() as u64 ^ nanos();
        for attempt in 0..100u64 {
            let n = seed
                .wrapping_add(STAGING_SEQ.fetch_add(1, Ordering::Relaxed))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(attempt);
            let mut staged = std::ffi::OsString::from(".");
            staged.push(name);
            staged.push(format!(".cachew-staging-{:08x}", n as u32));
            let path = parent.join(staged);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(Staging {
                        path,
                        committed: false,
                        extractor: Arc::default(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create staging directory", &path, e)),
            }
        }
        Err(Error::InvalidInput(format!(
            "cannot create a staging directory beside {}",
            target.display()
        )))
    }

    fn commit(mut self, target: &Path) -> Result<()> {
        std::fs::rename(&self.path, target)
            .map_err(|e| Error::io("rename into place", target, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let mut state = self.extractor.lock().unwrap_or_else(|p| p.into_inner());
        if state.running {
            state.abandoned = true;
            return;
        }
        drop(state);
        remove_tree(&self.path);
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Removes a staged tree, first making read-only directories writable so
/// their entries can be removed (a saved tree may hold 0555 directories).
fn remove_tree(path: &Path) {
    fn make_writable(dir: &Path) {
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            return;
        };
        if !meta.is_dir() {
            return;
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
        }
        if let Ok(rd) = std::fs::read_dir(dir) {
            for ent in rd.flatten() {
                if ent.file_type().is_ok_and(|t| t.is_dir()) {
                    make_writable(&ent.path());
                }
            }
        }
    }
    if std::fs::remove_dir_all(path).is_ok() {
        return;
    }
    // When a restore is cancelled, the extractor may still be finishing a
    // file for a moment: retry briefly before giving up.
    for attempt in 0..5 {
        make_writable(path);
        match std::fs::remove_dir_all(path) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if attempt == 4 => {
                tracing::warn!("could not remove staging directory {}: {e}", path.display());
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
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
    staging: Option<Arc<Mutex<ExtractorState>>>,
) -> Result<cachew_archive::ExtractSummary>
where
    R: AsyncRead + Unpin + Send,
{
    use bytes::{Bytes, BytesMut};
    use tokio::io::AsyncReadExt;

    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(BRIDGE_DEPTH);
    if let Some(state) = &staging {
        state.lock().unwrap_or_else(|p| p.into_inner()).running = true;
    }
    let task = tokio::task::spawn_blocking(move || {
        let reader = BridgeReader {
            rx,
            current: Bytes::new(),
        };
        let result = cachew_archive::extract(reader, &target, &options);
        if let Some(state) = staging {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            state.running = false;
            if state.abandoned {
                drop(state);
                remove_tree(&target);
            }
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

//! Saving a directory tree to any [`Cache`] as one tar + zstd object
//! (`PROTOCOL.md` §4).
//!
//! The archiver runs on a blocking thread and hands compressed chunks to the
//! upload through a small bounded channel, so archiving, compressing and
//! uploading overlap and memory stays bounded whatever the tree size. Any
//! failure — a missing include path, an unreadable file, a failed upload —
//! aborts the writer, so no object ever appears (LESSONS 9).

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cachew_archive::ArchiveOptions;
use cachew_proto::header;
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};

use crate::digest::{self, TreeDigest};
use crate::{ByteRange, Cache, CreateOptions, Error, Key, OpenOptions, Result};

/// Byte counters a caller can watch while [`save`] or
/// [`restore`](crate::restore()) runs, e.g. to draw a progress bar from
/// another task. Cloning shares the counters.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    inner: Arc<ProgressInner>,
}

#[derive(Debug, Default)]
struct ProgressInner {
    transferred: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// New counters at zero.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Bytes sent to (save) or received from (restore) the cache so far:
    /// compressed bytes.
    pub fn transferred(&self) -> u64 {
        self.inner.transferred.load(Ordering::Relaxed)
    }

    /// The expected number of bytes, when known (the object size on
    /// restore); 0 when unknown (a save does not know its compressed size).
    pub fn total(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, n: u64) {
        self.inner.transferred.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_total(&self, n: u64) {
        self.inner.total.store(n, Ordering::Relaxed);
    }
}

/// Options for [`save`].
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct SaveOptions {
    /// Time to live of the object; `None` or zero means the server default.
    pub ttl: Option<Duration>,
    /// Patterns of entries to leave out, with GNU tar `--exclude` semantics.
    pub excludes: Vec<String>,
    /// Extra headers stored with the object; they replace the defaults
    /// (`Content-Type`, `Content-Disposition`) when they name the same header.
    pub headers: HeaderMap,
    /// zstd compression level; `None` means 3 (the `zstd` tool's default).
    pub zstd_level: Option<i32>,
    /// Threads for compression and for hashing the tree; 0 means all cores.
    pub zstd_threads: usize,
    /// Stat the key first and skip the upload when the stored object has the
    /// same tree digest.
    pub skip_unchanged: bool,
    /// Do not compute the [tree digest](crate::digest) (a little faster: no
    /// content hashing; the archive gets no digest trailer, so
    /// `skip_unchanged` and `restore --verify` cannot work for this object).
    pub no_digest: bool,
    /// Counters updated as compressed bytes are uploaded.
    pub progress: Option<Progress>,
}

impl SaveOptions {
    /// Sets the time to live.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Adds exclude patterns (GNU tar `--exclude` syntax).
    #[must_use]
    pub fn with_excludes<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.excludes.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Sets extra headers to store with the object.
    #[must_use]
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the zstd level.
    #[must_use]
    pub fn with_zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = Some(level);
        self
    }

    /// Sets the number of compression and hashing threads (0 = all cores).
    #[must_use]
    pub fn with_zstd_threads(mut self, threads: usize) -> Self {
        self.zstd_threads = threads;
        self
    }

    /// Skips the upload when the stored object has the same tree digest.
    #[must_use]
    pub fn with_skip_unchanged(mut self, skip: bool) -> Self {
        self.skip_unchanged = skip;
        self
    }

    /// Turns the tree digest off.
    #[must_use]
    pub fn with_no_digest(mut self, no_digest: bool) -> Self {
        self.no_digest = no_digest;
        self
    }

    /// Sets the progress counters.
    #[must_use]
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// What [`save`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaveOutcome {
    /// The archive was uploaded and committed.
    #[non_exhaustive]
    Uploaded {
        /// The tree digest stored with the object (`None` with `no_digest`).
        digest: Option<TreeDigest>,
        /// Tar entries archived.
        entries: u64,
        /// Size of the tar stream before compression.
        uncompressed_bytes: u64,
        /// Bytes uploaded (the compressed object size).
        compressed_bytes: u64,
    },
    /// `skip_unchanged` found an object with the same tree digest; nothing
    /// was uploaded.
    #[non_exhaustive]
    Unchanged {
        /// The digest both trees share.
        digest: TreeDigest,
    },
}

/// Archives `paths` (relative to `base_dir`) and uploads the tar + zstd
/// stream under `key`, with the headers of `PROTOCOL.md` §4: `Content-Type:
/// application/zstd`, `Content-Disposition: attachment;
/// filename="{basename}.tar.zst"` (the basename of the canonical base
/// directory), the include paths and excludes of the [tree
/// digest](crate::digest) and the caller's extra headers. The digest itself
/// is computed while archiving and travels as the archive's trailer.
///
/// Include paths are checked before the upload is even started; every other
/// failure aborts the upload, so a failed save never leaves an object.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachew_client::Result<()> {
/// use cachew_client::{save, restore, Key, MemoryCache, RestoreOptions, RestoreOutcome, SaveOptions};
/// # let src = tempfile::tempdir().unwrap();
/// # std::fs::write(src.path().join("hello.txt"), "hi").unwrap();
/// # let dst = tempfile::tempdir().unwrap();
/// let cache = MemoryCache::new(64 << 20);
/// let key = Key::new("deps");
/// save(&cache, &key, src.path(), &[".".into()], &SaveOptions::default()).await?;
/// let target = dst.path().join("restored");
/// let outcome = restore(&cache, &[key], &target, &RestoreOptions::default()).await?;
/// assert!(matches!(outcome, RestoreOutcome::Hit { index: 0, .. }));
/// assert_eq!(std::fs::read(target.join("hello.txt")).unwrap(), b"hi");
/// # Ok(())
/// # }
/// ```
pub async fn save(
    cache: &dyn Cache,
    key: &Key,
    base_dir: &Path,
    paths: &[PathBuf],
    options: &SaveOptions,
) -> Result<SaveOutcome> {
    check_includes(base_dir, paths)?;
    let canonical =
        std::fs::canonicalize(base_dir).map_err(|e| Error::io("resolve", base_dir, e))?;
    let basename = canonical
        .file_name()
        .map_or_else(|| "root".to_owned(), |n| n.to_string_lossy().into_owned());

    // --skip-unchanged needs the digest before any archiving starts: a walk
    // of its own. Without it the archiver computes the digest in its pass.
    if options.skip_unchanged && !options.no_digest {
        let digest = digest::tree_digest_async(
            base_dir.to_path_buf(),
            paths.to_vec(),
            options.excludes.clone(),
            options.zstd_threads,
        )
        .await?;
        if stored_digest(cache, key).await? == Some(digest) {
            return Ok(SaveOutcome::Unchanged { digest });
        }
    }

    // The archiver (on blocking threads) hands compressed chunks through a
    // small bounded channel to this task, which writes them straight into
    // the cache writer: archiving, compressing and uploading overlap, and
    // memory stays bounded.
    let headers = save_headers(&basename, !options.no_digest, paths, options)?;
    let mut create = CreateOptions::default();
    create.ttl = options.ttl;
    let mut writer = cache.create(key, headers, &create).await?;
    let archived = cachew_archive::archive_async(
        ProgressWriter {
            inner: &mut writer,
            progress: options.progress.as_ref(),
        },
        base_dir.to_path_buf(),
        paths.to_vec(),
        options.excludes.clone(),
        ArchiveOptions::default()
            .with_level(options.zstd_level.unwrap_or(3))
            .with_threads(options.zstd_threads)
            .with_digest(!options.no_digest),
    )
    .await;
    match archived {
        Ok(summary) => {
            writer.commit().await?;
            Ok(SaveOutcome::Uploaded {
                digest: summary.digest,
                entries: summary.entries,
                uncompressed_bytes: summary.uncompressed_bytes,
                compressed_bytes: summary.compressed_bytes,
            })
        }
        Err(e) => {
            // Archiving or writing failed: never commit (LESSONS 9). A
            // cache error carried through the writer (e.g. a 403) is kept.
            let err = from_archive(e);
            let _ = writer.abort(Box::new(AbortReason(err.to_string()))).await;
            Err(err)
        }
    }
}

/// The cache writer, counting the bytes written into `progress`.
struct ProgressWriter<'a> {
    inner: &'a mut Box<dyn crate::CacheWriter>,
    progress: Option<&'a Progress>,
}

impl tokio::io::AsyncWrite for ProgressWriter<'_> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut **self.inner).poll_write(cx, buf);
        if let (std::task::Poll::Ready(Ok(n)), Some(p)) = (&polled, self.progress) {
            p.add(*n as u64);
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut **self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        // The upload ends with commit or abort, never with a shutdown here.
        std::pin::Pin::new(&mut **self.inner).poll_flush(cx)
    }
}

/// The tree digest of the object stored under `key`, if there is one with
/// a digest: its headers say so ([`TREE_PATHS`](digest::TREE_PATHS)), and
/// its last [`TRAILER_LEN`](digest::TRAILER_LEN) bytes, read with a suffix
/// range, are the trailer.
async fn stored_digest(cache: &dyn Cache, key: &Key) -> Result<Option<TreeDigest>> {
    use tokio::io::AsyncReadExt;
    let range = OpenOptions::default().with_range(ByteRange::suffix(digest::TRAILER_LEN as u64));
    let object = match cache.open(key, &range).await {
        Ok(object) => object,
        Err(Error::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !object.meta.headers.contains_key(digest::TREE_PATHS) {
        return Ok(None);
    }
    // A server that ignores the range sends the whole object (LESSONS 6):
    // keep only its tail.
    let mut body = object.body;
    let mut tail = Vec::with_capacity(digest::TRAILER_LEN);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body.read(&mut buf).await.map_err(Error::from)?;
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > digest::TRAILER_LEN {
            tail.drain(..tail.len() - digest::TRAILER_LEN);
        }
    }
    Ok(TreeDigest::from_trailer(&tail))
}

/// Checks the base directory and include paths before anything is started.
fn check_includes(base_dir: &Path, paths: &[PathBuf]) -> Result<()> {
    if paths.is_empty() {
        return Err(Error::InvalidInput(
            "no paths to save: give at least one path (e.g. `.`)".into(),
        ));
    }
    let meta = std::fs::metadata(base_dir).map_err(|e| Error::io("open directory", base_dir, e))?;
    if !meta.is_dir() {
        return Err(Error::InvalidInput(format!(
            "{} is not a directory",
            base_dir.display()
        )));
    }
    for p in paths {
        if p.as_os_str().is_empty()
            || p.is_absolute()
            || p.components().any(|c| matches!(c, Component::ParentDir))
        {
            return Err(Error::InvalidInput(format!(
                "path {} must be relative to {} and stay inside it",
                p.display(),
                base_dir.display()
            )));
        }
        let full = base_dir.join(p);
        if let Err(e) = std::fs::symlink_metadata(&full) {
            return Err(if e.kind() == io::ErrorKind::NotFound {
                Error::InvalidInput(format!(
                    "path {} does not exist in {}",
                    p.display(),
                    base_dir.display()
                ))
            } else {
                Error::io("stat", full, e)
            });
        }
    }
    Ok(())
}

fn save_headers(
    basename: &str,
    digest: bool,
    paths: &[PathBuf],
    options: &SaveOptions,
) -> Result<HeaderMap> {
    use std::os::unix::ffi::OsStrExt;
    let value = |text: String| {
        HeaderValue::from_str(&text)
            .map_err(|_| Error::InvalidInput(format!("cannot send header value {text:?}")))
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(header::ARCHIVE_CONTENT_TYPE),
    );
    headers.insert(
        CONTENT_DISPOSITION,
        value(header::archive_content_disposition(basename))?,
    );
    if digest {
        headers.insert(
            digest::TREE_PATHS,
            value(digest::encode_list(
                paths.iter().map(|p| p.as_os_str().as_bytes()),
            ))?,
        );
        if !options.excludes.is_empty() {
            headers.insert(
                digest::TREE_EXCLUDES,
                value(digest::encode_list(&options.excludes))?,
            );
        }
    }
    for name in options.headers.keys() {
        headers.remove(name);
    }
    for (name, v) in &options.headers {
        headers.append(name, v.clone());
    }
    Ok(headers)
}

/// Maps an archive error to the facade's error, recovering a cache error
/// that travelled through the archiver's writer (so a server's 403 stays a
/// 403, LESSONS 8).
pub(crate) fn from_archive(e: cachew_archive::Error) -> Error {
    use cachew_archive::Error as A;
    match e {
        // `From<io::Error>` gives back a cache error carried inside.
        A::Write(io) => Error::from(io),
        A::Read(io) if is_cache_error(&io) => Error::from(io),
        A::Io { op, path, error } => Error::Io { op, path, error },
        e @ (A::IncludeNotFound { .. } | A::NoIncludePaths | A::InvalidIncludePath { .. }) => {
            Error::InvalidInput(e.to_string())
        }
        other => Error::Archive(other),
    }
}

fn is_cache_error(io: &io::Error) -> bool {
    io.get_ref().is_some_and(|inner| inner.is::<Error>())
}

/// The cause given to an aborted upload.
#[derive(Debug)]
struct AbortReason(String);

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AbortReason {}

//! In-process tar + zstd archives, compatible with GNU tar 1.34 and the
//! `zstd`/`pzstd` tools, with safe extraction.
//!
//! [`archive`] writes what `tar -cpf - -C base -- paths… | zstd` would write
//! (GNU tar format, `./x` style names when the include path is `.`), and
//! [`extract`] reads that as well as what `pzstd` writes (several frames and
//! skippable frames): frames announced by pzstd's size headers are decoded
//! in parallel, and other skippable frames, such as a trailer after the
//! archive, are reported in [`ExtractSummary::skippable_frames`].
//! [`archive_async`] and [`extract_async`] run the same code on blocking
//! threads and stream through a bounded channel, so they never block a tokio
//! runtime.
//!
//! ```
//! # fn main() -> cachew_archive::Result<()> {
//! use cachew_archive::{archive, extract, ArchiveOptions, ExtractOptions};
//! # let dir = tempfile::tempdir().unwrap();
//! # let base = dir.path().join("src");
//! # std::fs::create_dir_all(base.join("sub")).unwrap();
//! # std::fs::write(base.join("sub/a.txt"), b"hello").unwrap();
//! # std::fs::write(base.join("b.o"), b"obj").unwrap();
//! let mut compressed = Vec::new();
//! let summary = archive(&mut compressed, &base, &["."], &["*.o"], &ArchiveOptions::default())?;
//! assert_eq!(summary.entries, 3); // `./`, `./sub/`, `./sub/a.txt`
//!
//! let target = dir.path().join("restored");
//! extract(compressed.as_slice(), &target, &ExtractOptions::default().with_threads(2))?;
//! assert_eq!(std::fs::read(target.join("sub/a.txt")).unwrap(), b"hello");
//! assert!(!target.join("b.o").exists());
//! # Ok(()) }
//! ```
//!
//! # What is preserved
//!
//! Regular files, directories (including empty ones), symlinks (the target
//! is stored as is: relative, absolute or dangling), hard links, permission
//! bits including setuid, setgid and sticky, and modification times
//! (seconds). Names and link targets of any length and any bytes (not only
//! UTF-8) are supported through GNU long-name entries; pax `path`,
//! `linkpath`, `size`, `mtime`, `uid` and `gid` records are honoured on
//! extraction. Files over 8 GiB use GNU base-256 sizes.
//!
//! Sparse files in archives from GNU tar (`-S`: old GNU `S` entries, pax
//! `GNU.sparse` 0.1 and 1.0) and bsdtar (`--read-sparse`, pax 1.0) are
//! restored as sparse files. Extended attributes, ACLs and file flags in pax
//! records (`SCHILY.xattr.*`, `LIBARCHIVE.xattr.*`, `SCHILY.acl.*`, as macOS
//! writes `com.apple.*` attributes) are not restored: they are left out
//! with a `tracing` debug line, never an error.
//!
//! Ownership (numeric uid and gid) is restored only when the extracting
//! process runs with effective uid 0, like GNU tar's default; otherwise files
//! belong to the extracting user. Names are not mapped through the user
//! database on extraction (as `--numeric-owner`).
//!
//! # Extraction policy
//!
//! Nothing is ever created, modified or removed outside the target directory:
//!
//! - Absolute entry names and names with a `..` component are refused with
//!   [`Error::UnsafeEntry`] (GNU tar would strip them with a warning).
//! - A hard link whose source is absolute or contains `..` is refused. Hard
//!   link sources are resolved without following symlinks, so a link cannot
//!   reach a file outside through a symlink.
//! - Symlinks are created as stored. Every parent directory of an entry is
//!   checked with `lstat`, and files are created with `O_EXCL |
//!   O_NOFOLLOW` after removing whatever was at their path, so nothing is
//!   written through a symlink at an entry's own name.
//! - A symlink in a parent position (an existing `a -> sub` and an entry
//!   `a/f`, whether the symlink was in the target or made by an earlier
//!   entry) is followed, as GNU tar follows it, when it leads to a
//!   directory inside the target: it is resolved component by component
//!   below the target (each `..` pops a directory checked to be real), and
//!   `a/f` is written as `sub/f`. One whose target is an absolute path
//!   (even one naming a place inside the target) or climbs above the target
//!   refuses the entry with [`Error::UnsafeEntry`], naming the entry, the
//!   symlink and its target, before anything is written through it; GNU tar
//!   would write outside. A dangling symlink, one to a file, or a loop is
//!   an error, as with GNU tar. A directory entry at the symlink's own name
//!   (`a/`) replaces the symlink by a real directory, GNU tar's default
//!   (without `--keep-directory-symlink`), wherever it pointed. Once a
//!   symlink has been followed, two names may reach one file, so the rest
//!   of the extraction applies each entry before reading the next (no
//!   parallel file writes). `tests/parent_symlinks.rs` compares all this
//!   with GNU tar.
//! - Device nodes are created only when the extracting process runs with
//!   effective uid 0, as GNU tar does (counted in
//!   [`ExtractSummary::devices`], with the archive's numbers, owner, mode
//!   and time). Otherwise they are skipped, counted in
//!   [`ExtractSummary::skipped`], and one warning is logged for the whole
//!   extraction (GNU tar fails on each). Restoring as root from a cache that
//!   untrusted jobs can write therefore trusts it with device nodes, as
//!   `tar -x` does. FIFOs are created, as GNU tar does, with the archive's
//!   mode and time. Sockets are not archived (as GNU tar).
//! - A truncated stream (no end-of-archive block, or a zstd frame cut short),
//!   a corrupt zstd frame or checksum, a pzstd size header that does not
//!   match its frame, anything but a frame between frames, and a header with
//!   a bad checksum are errors. The stream is read to its end after the
//!   end-of-archive block.
//! - Memory is bounded whatever the compression ratio: file data is streamed
//!   in chunks through bounded queues, pzstd frames decoded ahead are limited
//!   in number and size (a frame decoding to over 32 MiB is streamed), and
//!   long names and pax headers are limited to 1 MiB.
//! - Memory is bounded whatever the number of entries: repeated entries
//!   for the same directory cost nothing more, the cache of directories
//!   known to be real is emptied at 64 Ki entries or 16 MiB of names, files
//!   remembered as queued are waited for at 64 Ki or 16 MiB, links are
//!   created in batches of at most 16 Ki entries or 16 MiB of names, and
//!   what must be remembered until the end (each distinct directory's mode
//!   and times, and each pre-existing read-only directory) is limited to
//!   a budget of 128 MiB, about a million directories with 60-byte names;
//!   an archive beyond it fails with [`Error::LimitExceeded`]. The
//!   directories created only as parents are named in the summary up to
//!   [`IMPLIED_DIRS_MAX`] (and 1 MiB of names), past which it says they
//!   are unknown. All together, extraction holds at most about 200 MiB of bookkeeping plus
//!   the queues above, whatever the archive.
//! - Names are limited to 512 components ([`Error::LimitExceeded`]), and
//!   nothing recurses per component, so a tiny archive with one very deep
//!   name cannot overflow the stack.
//! - [`ExtractOptions::max_size`] limits the decompressed size (zstd bombs).
//! - Entries are applied in archive order, whatever their kinds: a later
//!   entry with the same name as an earlier file, directory, symlink or
//!   hard link replaces it, as GNU `tar -x` does, and a hard link sees the
//!   data its source had when the link entry came. (An empty directory is
//!   replaced; a non-empty one in the way of a non-directory is an error,
//!   as with GNU tar.) This holds for FIFOs and device nodes too.
//! - Names in error messages and summaries are escaped ([`escape_name`]):
//!   an entry name cannot put control characters on a terminal or a CI log.
//!
//! Extraction into an existing tree replaces files (they are unlinked, not
//! written through). Existing directories without owner write or search
//! permission are made owner-writable first; their modes are restored when
//! extraction ends, successfully or not (directories in the archive then get
//! the archive's mode). Directory modes and times are applied last.
//!
//! The target itself is created if missing. Concurrent modification of the
//! target by other processes is out of scope: callers should extract into a
//! fresh staging directory and rename it into place.
//!
//! zstd frames needing a window over 128 MiB (`zstd --long=31`) are refused
//! by the decoder, which bounds its memory; neither `zstd` nor `pzstd` write
//! such frames by default.
//!
//! # Speed
//!
//! Archiving walks the tree (one `getdents64` pass per directory on Linux,
//! `readdir` elsewhere) and reads files on their own threads, handing items
//! over in batches. Names are
//! looked up relative to their directory's descriptor, and regular files
//! and directories only once: a small file costs `openat`, `fstat`, one
//! `read` (into a batch buffer that is reused) and `close`, a directory
//! `openat` and `fstat`, other entries an `fstatat`. Meanwhile the caller's
//! thread frames tar into 8 MiB chunks that worker threads compress as
//! independent zstd frames, written in pzstd's format (each frame announced
//! by a skippable frame giving its size), so extraction can decode them in
//! parallel too. That costs less CPU than zstd's own multithreading, and
//! zstd 1.5.7's block pre-splitter is turned off (7% of the compression
//! time for 0.3% of the size). With [`ArchiveOptions::digest`], file
//! contents are hashed with blake3 on the reading thread as they go by.
//!
//! Extraction parses on the caller's thread and creates files on a small
//! pool of worker threads, in batches of up to 128 files. The caller's thread
//! also decompresses, except pzstd-format streams (several frames, each
//! announced by its compressed size), whose frames are decoded on as many
//! threads as there are file workers (at most 4), in order.
//! The same path always goes to the same worker, so duplicate entries keep
//! their order. A file costs `openat`, `pwrite`, `utimensat` and `close`:
//! it is created with its final mode, so `fchmod` is only needed when the
//! umask or set-id bits get in the way, and `fchown` (as root) only when the
//! owner differs from what the file gets anyway. (If a target directory
//! carries a default ACL, that ACL rather than the umask shapes new files'
//! modes, and the skipped `fchmod` does not correct it; CI trees rarely have
//! one.) Runs of zeros in large files become holes. Nothing is `fsync`ed:
//! durability is the caller's business.

mod create;
pub mod digest;
mod error;
mod exclude;
mod extract;
mod frames;
mod sys;
mod tarfmt;
mod walk;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use digest::{tree_digest, TreeDigest};

/// Most directories [`ExtractSummary::implied_dirs`] names (and at most
/// 1 MiB of their names); past either it is `None`.
pub const IMPLIED_DIRS_MAX: usize = 4096;
pub use error::{escape_name, escape_path, Error, Result};
pub use exclude::ExcludeSet;
pub use frames::SkippableFrame;

/// The frame benchmark's way in to the crate-private frame writer and
/// reader (`cargo xtask bench archive --frames`); only with the `bench`
/// feature, and not a stable API.
#[cfg(feature = "bench")]
#[doc(hidden)]
pub use frames::bench as frames_bench;

/// Options for [`archive`] and [`archive_async`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ArchiveOptions {
    /// zstd compression level (default 3, as the `zstd` tool).
    pub level: i32,
    /// Threads to use for compression; 0 means all available cores.
    pub threads: usize,
    /// Compute the [tree digest](digest) of what is archived, in the same
    /// pass, and append it as a trailer frame (default off). It is then
    /// reported in [`ArchiveSummary::digest`] and, on extraction, in
    /// [`ExtractSummary::tree_digest`].
    pub digest: bool,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            level: 3,
            threads: 0,
            digest: false,
        }
    }
}

impl ArchiveOptions {
    /// Sets the zstd compression level.
    #[must_use]
    pub fn with_level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// Sets the number of threads (0 = all available cores).
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Turns the in-pass [tree digest](digest) and its trailer on or off.
    #[must_use]
    pub fn with_digest(mut self, digest: bool) -> Self {
        self.digest = digest;
        self
    }
}

/// Options for [`extract`] and [`extract_async`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ExtractOptions {
    /// Threads creating files, besides the one parsing (as many decode
    /// pzstd-format frames, up to 4); 0 means one per available core, 1
    /// means everything on the calling thread.
    pub threads: usize,
    /// Most bytes the decompressed tar stream may have (headers, names and
    /// data together); a longer stream stops with
    /// [`Error::LimitExceeded`]. `None` (the default) means no limit. This
    /// is the guard against zstd bombs: a few kilobytes that decompress to
    /// terabytes of zeros would otherwise fill the disk.
    pub max_size: Option<u64>,
}

impl ExtractOptions {
    /// Sets the number of file-creating threads (0 = one per core).
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Limits the decompressed size of the archive (see [`ExtractOptions::max_size`]).
    #[must_use]
    pub fn with_max_size(mut self, max_size: Option<u64>) -> Self {
        self.max_size = max_size;
        self
    }
}

/// What [`archive`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveSummary {
    /// Tar entries written (not counting GNU long-name pseudo entries).
    pub entries: u64,
    /// Length of the tar stream before compression.
    pub uncompressed_bytes: u64,
    /// Length of the compressed output.
    pub compressed_bytes: u64,
    /// The tree digest, with [`ArchiveOptions::digest`].
    pub digest: Option<TreeDigest>,
}

/// What [`extract`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractSummary {
    /// Tar entries read (not counting long-name and pax pseudo entries).
    pub entries: u64,
    /// Regular files created.
    pub files: u64,
    /// Directory entries.
    pub directories: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hard_links: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
    /// FIFOs created.
    pub fifos: u64,
    /// Device nodes created (only as root; see the crate docs).
    pub devices: u64,
    /// Device nodes skipped (not root; see the crate docs for the policy).
    pub skipped: u64,
    /// Names of the first few skipped entries.
    pub skipped_names: Vec<String>,
    /// Skippable frames in the zstd stream (other than pzstd's frame size
    /// headers) with payloads of up to 4 KiB: the last 16, in stream order.
    /// A trailer after the tar end-of-archive block shows up here.
    pub skippable_frames: Vec<SkippableFrame>,
    /// The tree digest from the archive's trailer, when it has one (see
    /// [`ArchiveOptions::digest`]).
    pub tree_digest: Option<TreeDigest>,
    /// Directories (relative to the target, where they physically are)
    /// that the extraction created as parents of other entries, each with
    /// whether a directory entry of its own came after some of those
    /// entries; a directory the archive has an entry for before anything
    /// below it is not here. `None` when there were more than
    /// [`IMPLIED_DIRS_MAX`] of them (or more than 1 MiB of names): then unknown.
    pub implied_dirs: Option<HashMap<PathBuf, bool>>,
}

pub(crate) fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
}

/// Archives `include_paths` (relative to `base_dir`) as tar + zstd into `w`.
///
/// Entry names are those of `tar -cpf - -C base_dir -- include_paths…`;
/// entries matching `exclude_patterns` (GNU tar `--exclude` semantics, see
/// [`ExcludeSet`]) are left out with their contents. Every include path
/// must exist; an empty list is an error. Include paths must be relative
/// and must not contain `..`.
pub fn archive<W, P, S>(
    w: W,
    base_dir: &Path,
    include_paths: &[P],
    exclude_patterns: &[S],
    opts: &ArchiveOptions,
) -> Result<ArchiveSummary>
where
    W: Write,
    P: AsRef<Path>,
    S: AsRef<str>,
{
    let includes: Vec<PathBuf> = include_paths
        .iter()
        .map(|p| p.as_ref().to_path_buf())
        .collect();
    let excludes = ExcludeSet::new(exclude_patterns);
    create::archive_impl(
        w,
        base_dir,
        &includes,
        &excludes,
        opts,
        &AtomicBool::new(false),
    )
}

/// Extracts a tar + zstd stream from `r` into `target_dir` (created if
/// missing). See the crate documentation for the safety policy.
pub fn extract<R: Read>(r: R, target_dir: &Path, opts: &ExtractOptions) -> Result<ExtractSummary> {
    extract::extract_impl(r, target_dir, opts, &AtomicBool::new(false))
}

/// Size of the chunks passed between the async side and the blocking side.
const ASYNC_CHUNK: usize = 256 * 1024;
/// Chunks in flight between them.
const ASYNC_DEPTH: usize = 4;

/// Sets the flag when dropped, so blocking work stops when its future is dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(ASYNC_CHUNK));
        self.tx.blocking_send(chunk).map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the archive consumer went away")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(ASYNC_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= ASYNC_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(v)) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::Panicked(e.to_string())
}

/// Like [`archive`], for async writers: the archiver runs on a blocking
/// thread and hands compressed chunks to this future through a bounded
/// channel; this future writes them to `w` and flushes it (it does not shut
/// it down).
///
/// A write error stops the archiver and is returned as [`Error::Write`];
/// an archiver error is returned as is, so the caller can abort its upload.
/// Dropping the future stops the blocking work promptly.
pub async fn archive_async<W>(
    mut w: W,
    base_dir: PathBuf,
    include: Vec<PathBuf>,
    exclude: Vec<String>,
    opts: ArchiveOptions,
) -> Result<ArchiveSummary>
where
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    use tokio::io::AsyncWriteExt;
    let cancel = Arc::new(AtomicBool::new(false));
    let guard = CancelOnDrop(cancel.clone());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(ASYNC_DEPTH);
    let handle = tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            tx,
            buf: Vec::with_capacity(ASYNC_CHUNK),
        };
        let excludes = ExcludeSet::new(&exclude);
        create::archive_impl(writer, &base_dir, &include, &excludes, &opts, &cancel)
    });
    let mut write_err = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = w.write_all(&chunk).await {
            write_err = Some(e);
            break;
        }
    }
    if write_err.is_none() {
        write_err = w.flush().await.err();
    }
    // Closing the channel makes any further send by the archiver fail.
    drop(rx);
    if write_err.is_some() {
        guard.0.store(true, Ordering::SeqCst);
    }
    let result = handle.await.map_err(join_error)?;
    match write_err {
        Some(e) => Err(Error::Write(e)),
        None => result,
    }
}

/// Like [`extract`], for async readers: this future reads `r` and hands
/// chunks through a bounded channel to the extractor on a blocking thread.
///
/// A read error is returned as [`Error::Read`]; an extraction error stops
/// reading and is returned as is. Dropping the future stops the blocking
/// work promptly (leaving a partly extracted target, which callers stage).
pub async fn extract_async<R>(
    mut r: R,
    target: PathBuf,
    opts: ExtractOptions,
) -> Result<ExtractSummary>
where
    R: tokio::io::AsyncRead + Unpin + Send,
{
    use tokio::io::AsyncReadExt;
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Vec<u8>>>(ASYNC_DEPTH);
    let handle = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        extract::extract_impl(reader, &target, &opts, &cancel)
    });
    let mut read_err = None;
    loop {
        let mut buf = vec![0u8; ASYNC_CHUNK];
        match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                buf.truncate(n);
                // A closed channel means the extractor is done or failed;
                // its result says which.
                if tx.send(Ok(buf)).await.is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                read_err = Some(e);
                let _ = tx.send(Err(copy)).await;
                break;
            }
        }
    }
    drop(tx);
    let result = handle.await.map_err(join_error)?;
    match (read_err, result) {
        (Some(e), Err(_)) => Err(Error::Read(e)),
        (_, r) => r,
    }
}

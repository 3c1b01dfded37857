//! Safe extraction: one thread parses (and decompresses, except the frames
//! of pzstd-format streams, which `FrameReader` decodes on worker threads),
//! a small pool of workers creates files.
//!
//! Safety invariants (see the crate docs for the policy as seen by users):
//! - Entry names are sanitized lexically: absolute names and `..` are refused.
//! - Every parent directory of an entry is checked with `lstat` (or created)
//!   by the parsing thread before anything is created in it; a symlink or
//!   file in the way is replaced by a real directory.
//! - Files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, after unlinking
//!   whatever was there, so no existing symlink or hard link is written through.
//! - Symlinks and hard links are created only at flush points, when no
//!   worker is busy, and the directory cache is invalidated for what they
//!   replace. Hard link sources are opened component by component with
//!   `O_NOFOLLOW`, so a link can never reach outside the target.
//! - Directory modes and times are applied at the end through descriptors
//!   opened the same way.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use crate::digest::TreeDigest;
use crate::frames::{FrameReader, STREAM_BUFFER};
use crate::sys;
use crate::tarfmt::{self, BLOCK};
use crate::{Error, ExtractOptions, ExtractSummary, Result};

/// Files up to this size are read whole and handed to a worker in one message.
const INLINE_MAX: u64 = 256 * 1024;
/// Larger files are handed over in chunks of this size.
const CHUNK: usize = 256 * 1024;
/// Batches queued per worker; a batch holds at most `BATCH_JOBS` jobs or
/// about `BATCH_BYTES` of data, so memory is bounded by about
/// `workers * (QUEUE + 2) * BATCH_BYTES`.
const QUEUE: usize = 4;
/// Jobs per batch: handing files over one by one costs a wake-up each.
const BATCH_JOBS: usize = 128;
/// Data bytes per batch.
const BATCH_BYTES: usize = 1 << 20;
/// Limit for GNU long names and pax headers, which are held in memory.
const META_MAX: u64 = 1 << 20;
/// Symlinks and hard links are created in batches of at most this many.
const LINK_BATCH: usize = 16 * 1024;
/// How many skipped entry names the summary keeps.
const SKIPPED_NAMES: usize = 16;
/// Most threads decoding pzstd frames: one parsing thread consumes what
/// they produce, so more would mostly hold more frames in memory.
const DECODE_THREADS_MAX: usize = 4;

static ZEROS: [u8; CHUNK] = [0; CHUNK];

#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// What must be done after a file is written, worked out by the parser so
/// that workers make no more system calls than needed.
#[derive(Clone, Copy)]
struct Fixups {
    chown: bool,
    chmod: bool,
}

/// A directory known to be a real directory inside the target, with what
/// new files in it inherit.
#[derive(Clone, Copy)]
struct DirInfo {
    setgid: bool,
    gid: u32,
}

impl DirInfo {
    fn of(m: &fs::Metadata) -> Self {
        DirInfo {
            setgid: m.mode() & 0o2000 != 0,
            gid: m.gid(),
        }
    }
}

/// The process umask, read without changing it (calling `umask` would race
/// with other threads). `None` if unknown.
fn current_umask() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line.split_whitespace().nth(1)?, 8).ok()
}

struct FileJob {
    path: PathBuf,
    meta: Meta,
    fixups: Fixups,
    size: u64,
    data: Vec<u8>,
    last: bool,
}

enum Job {
    Start(FileJob),
    Chunk(Vec<u8>, bool),
    Barrier(SyncSender<()>),
}

impl Job {
    fn data_len(&self) -> usize {
        match self {
            Job::Start(f) => f.data.len(),
            Job::Chunk(d, _) => d.len(),
            Job::Barrier(_) => 0,
        }
    }
}

/// Writes one regular file, leaving holes for long runs of zeros.
struct FileSink {
    file: File,
    path: PathBuf,
    meta: Meta,
    fixups: Fixups,
    pos: u64,
    written_end: u64,
}

impl FileSink {
    fn create(path: PathBuf, meta: Meta, fixups: Fixups) -> Result<Self> {
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(meta.mode & 0o777)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
        };
        let file = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                remove_non_dir(&path)?;
                open().map_err(|e| Error::io("create file", &path, e))?
            }
            Err(e) => return Err(Error::io("create file", &path, e)),
        };
        Ok(FileSink {
            file,
            path,
            meta,
            fixups,
            pos: 0,
            written_end: 0,
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        if data.len() >= 64 * 1024 && data.len() <= CHUNK && data == &ZEROS[..data.len()] {
            // A hole reads back as zeros and costs neither time nor space.
            self.pos += data.len() as u64;
            return Ok(());
        }
        self.file
            .write_all_at(data, self.pos)
            .map_err(|e| Error::io("write", &self.path, e))?;
        self.pos += data.len() as u64;
        self.written_end = self.pos;
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let err = |op, e| Error::io(op, &self.path, e);
        if self.written_end < self.pos {
            self.file.set_len(self.pos).map_err(|e| err("extend", e))?;
        }
        if self.fixups.chown {
            sys::fchown(&self.file, self.meta.uid, self.meta.gid)
                .map_err(|e| err("change owner of", e))?;
        }
        if self.fixups.chmod {
            // After chown, which clears set-id bits.
            sys::fchmod(&self.file, self.meta.mode & 0o7777)
                .map_err(|e| err("change mode of", e))?;
        }
        sys::futimens(&self.file, self.meta.mtime).map_err(|e| err("set times of", e))?;
        Ok(())
    }
}

/// Removes a file or symlink in the way; a directory is a conflict.
fn remove_non_dir(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => Err(Error::Conflict {
            path: path.to_path_buf(),
            reason: "a directory is in the way of a non-directory entry",
        }),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Per-worker counters.
#[derive(Default)]
struct Counts {
    files: u64,
    bytes: u64,
}

fn worker(
    rx: Receiver<Vec<Job>>,
    failed: &AtomicBool,
    first_error: &Mutex<Option<Error>>,
) -> Counts {
    let mut counts = Counts::default();
    let mut current: Option<FileSink> = None;
    let run = |job: Job, current: &mut Option<FileSink>, counts: &mut Counts| -> Result<()> {
        match job {
            Job::Start(f) => {
                let mut sink = FileSink::create(f.path, f.meta, f.fixups)?;
                sink.write(&f.data)?;
                counts.files += 1;
                counts.bytes += f.data.len() as u64;
                if f.last {
                    sink.finish()?;
                } else {
                    debug_assert!(f.size > f.data.len() as u64);
                    *current = Some(sink);
                }
            }
            Job::Chunk(data, last) => {
                let sink = current.as_mut().expect("chunk without a file");
                sink.write(&data)?;
                counts.bytes += data.len() as u64;
                if last {
                    current.take().expect("file").finish()?;
                }
            }
            Job::Barrier(ack) => {
                let _ = ack.send(());
            }
        }
        Ok(())
    };
    for batch in rx {
        for job in batch {
            if let Err(e) = run(job, &mut current, &mut counts) {
                failed.store(true, Ordering::SeqCst);
                let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                // Returning drops the receiver, so the parser's next send fails.
                return counts;
            }
        }
    }
    counts
}

/// The decompressed tar stream with its offset.
struct Input<R: BufRead> {
    r: R,
    pos: u64,
}

impl<R: BufRead> Input<R> {
    fn fill(&mut self, expected: &'static str) -> Result<&[u8]> {
        let pos = self.pos;
        loop {
            match self.r.fill_buf() {
                Ok([]) => {
                    return Err(Error::Truncated {
                        offset: pos,
                        expected,
                    })
                }
                // Re-borrow to satisfy the borrow checker across the loop.
                Ok(_) => return Ok(self.r.fill_buf().expect("buffered")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Read(e)),
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.r.consume(n);
        self.pos += n as u64;
    }

    fn read_exact(&mut self, out: &mut [u8], expected: &'static str) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            let buf = self.fill(expected)?;
            let n = buf.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&buf[..n]);
            self.consume(n);
            done += n;
        }
        Ok(())
    }

    /// Reads exactly `n` bytes into a new vector (without zeroing it first).
    fn read_vec(&mut self, n: usize, expected: &'static str) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let buf = self.fill(expected)?;
            let k = buf.len().min(n - v.len());
            v.extend_from_slice(&buf[..k]);
            self.consume(k);
        }
        Ok(v)
    }

    /// Reads exactly `n` bytes of large-file data. `FrameReader` decodes
    /// frames it streams straight into reads of at least `STREAM_BUFFER`
    /// bytes, so the chunk is filled without an intermediate copy on the
    /// thread everything else waits for.
    fn read_chunk(&mut self, n: usize, expected: &'static str) -> Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        let mut done = 0;
        while done < n {
            match self.r.read(&mut v[done..]) {
                Ok(0) => {
                    return Err(Error::Truncated {
                        offset: self.pos,
                        expected,
                    })
                }
                Ok(k) => {
                    done += k;
                    self.pos += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Read(e)),
            }
        }
        Ok(v)
    }

    fn skip(&mut self, mut n: u64, expected: &'static str) -> Result<()> {
        while n > 0 {
            let buf = self.fill(expected)?;
            let k = (buf.len() as u64).min(n) as usize;
            self.consume(k);
            n -= k as u64;
        }
        Ok(())
    }

    /// Reads `n` bytes plus padding into a fresh vector.
    fn read_data(&mut self, n: u64, expected: &'static str) -> Result<Vec<u8>> {
        let mut v = vec![0u8; n as usize];
        self.read_exact(&mut v, expected)?;
        self.skip(tarfmt::padding(n) as u64, expected)?;
        Ok(v)
    }

    /// Reads to the end, so a corrupt tail or a bad frame checksum is noticed.
    fn drain(&mut self) -> Result<()> {
        loop {
            match self.r.fill_buf() {
                Ok([]) => return Ok(()),
                Ok(b) => {
                    let n = b.len();
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Read(e)),
            }
        }
    }
}

/// Turns an entry name into a relative path inside the target, or refuses it.
pub(crate) fn sanitize(name: &[u8]) -> Result<PathBuf> {
    if name.first() == Some(&b'/') {
        return Err(Error::unsafe_entry(name, "is an absolute path"));
    }
    let mut out: Vec<u8> = Vec::with_capacity(name.len());
    for comp in name.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(Error::unsafe_entry(name, "escapes the target directory")),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out),
    ))
}

struct DeferredLink {
    rel: PathBuf,
    name: Vec<u8>,
    target: Vec<u8>,
    /// For hard links, the sanitized source inside the target.
    hard_source: Option<PathBuf>,
    meta: Meta,
}

struct DirMeta {
    rel: PathBuf,
    meta: Meta,
}

struct Extractor<'a> {
    target: &'a Path,
    root: bool,
    /// Directories (relative) known to be real directories inside the target.
    dirs: HashMap<PathBuf, DirInfo>,
    euid: u32,
    egid: u32,
    umask: Option<u32>,
    /// Pre-existing directories made owner-writable, with their original modes.
    loosened: Vec<(PathBuf, u32)>,
    dir_meta: Vec<DirMeta>,
    links: Vec<DeferredLink>,
    summary: ExtractSummary,
}

impl Extractor<'_> {
    /// Makes sure `rel` is a real directory, creating it or replacing
    /// whatever non-directory is in the way.
    fn ensure_dir(&mut self, rel: &Path) -> Result<DirInfo> {
        if let Some(info) = self.dirs.get(rel) {
            return Ok(*info);
        }
        if rel.as_os_str().is_empty() {
            // The target itself: never replaced, but loosened like the others.
            let m = fs::metadata(self.target).map_err(|e| Error::io("stat", self.target, e))?;
            self.loosen(rel, &m)?;
            let info = DirInfo::of(&m);
            self.dirs.insert(PathBuf::new(), info);
            return Ok(info);
        }
        if let Some(parent) = rel.parent() {
            self.ensure_dir(parent)?;
        }
        let path = self.target.join(rel);
        for _attempt in 0..4 {
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    self.loosen(rel, &m)?;
                    let info = DirInfo::of(&m);
                    self.dirs.insert(rel.to_path_buf(), info);
                    return Ok(info);
                }
                Ok(_) => {
                    // A symlink (possibly pointing outside) or a file: never
                    // followed, replaced by a real directory as GNU tar does.
                    remove_non_dir(&path)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match fs::DirBuilder::new().mode(0o777).create(&path) {
                        // Loop once more to learn what the new directory inherited.
                        Ok(()) => continue,
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(Error::io("create directory", &path, e)),
                    }
                }
                Err(e) => return Err(Error::io("stat", &path, e)),
            }
        }
        Err(Error::Conflict {
            path,
            reason: "it keeps changing while being replaced by a directory",
        })
    }

    /// A read-only directory would stop us replacing its files: make it
    /// owner-writable now and remember its mode to restore it later.
    fn loosen(&mut self, rel: &Path, m: &fs::Metadata) -> Result<()> {
        let mode = m.mode() & 0o7777;
        if mode & 0o700 != 0o700 {
            let path = self.target.join(rel);
            fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))
                .map_err(|e| Error::io("make writable", &path, e))?;
            self.loosened.push((rel.to_path_buf(), mode));
        }
        Ok(())
    }

    fn ensure_parent(&mut self, rel: &Path) -> Result<DirInfo> {
        self.ensure_dir(rel.parent().unwrap_or(Path::new("")))
    }

    /// Which of chown and chmod a new file in `parent` needs to end up with `meta`.
    fn fixups(&self, meta: &Meta, parent: DirInfo) -> Fixups {
        let gid = if parent.setgid { parent.gid } else { self.egid };
        Fixups {
            chown: self.root && (meta.uid != self.euid || meta.gid != gid),
            chmod: match self.umask {
                Some(umask) => meta.mode & 0o7000 != 0 || meta.mode & 0o777 & umask != 0,
                None => true,
            },
        }
    }

    /// Creates the deferred symlinks and hard links, in archive order.
    /// Must only run while no worker is writing.
    fn flush_links(&mut self) -> Result<()> {
        let links = std::mem::take(&mut self.links);
        for l in links {
            self.ensure_parent(&l.rel)?;
            let path = self.target.join(&l.rel);
            // Whatever is replaced might be a cached directory.
            self.dirs.remove(&l.rel);
            match &l.hard_source {
                None => {
                    let target = std::ffi::OsStr::from_bytes(&l.target);
                    let create = || std::os::unix::fs::symlink(target, &path);
                    match create() {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            replace_any(&path)?;
                            create().map_err(|e| Error::io("create symlink", &path, e))?;
                        }
                        Err(e) => return Err(Error::io("create symlink", &path, e)),
                    }
                    if self.root {
                        sys::lchown(&path, l.meta.uid, l.meta.gid)
                            .map_err(|e| Error::io("change owner of", &path, e))?;
                    }
                    sys::lutimens(&path, l.meta.mtime)
                        .map_err(|e| Error::io("set times of", &path, e))?;
                    self.summary.symlinks += 1;
                }
                Some(src) => {
                    let src_parent = src.parent().unwrap_or(Path::new(""));
                    let src_name = src.file_name().map(Path::new).ok_or_else(|| {
                        Error::unsafe_entry(
                            &l.name,
                            "is a hard link to the target directory itself",
                        )
                    })?;
                    let dir = sys::open_dir_beneath(self.target, src_parent).map_err(|e| {
                        Error::io(
                            "open the directory of hard link source",
                            self.target.join(src_parent),
                            e,
                        )
                    })?;
                    if let (Ok(a), Ok(b)) = (
                        fs::symlink_metadata(self.target.join(src)),
                        fs::symlink_metadata(&path),
                    ) {
                        if a.dev() == b.dev() && a.ino() == b.ino() {
                            self.summary.hard_links += 1;
                            continue;
                        }
                    }
                    match sys::linkat(&dir, src_name, &path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            remove_non_dir(&path)?;
                            sys::linkat(&dir, src_name, &path)
                                .map_err(|e| Error::io("create hard link", &path, e))?;
                        }
                        Err(e) => return Err(Error::io("create hard link", &path, e)),
                    }
                    self.summary.hard_links += 1;
                }
            }
        }
        Ok(())
    }

    /// Applies directory modes, owners and times, deepest first, through
    /// descriptors that cannot follow symlinks.
    fn finish_dirs(&mut self) -> Result<()> {
        // Pre-existing directories first get their own modes back; those in
        // the archive then get the archive's.
        self.restore_loosened()?;
        let mut dirs = std::mem::take(&mut self.dir_meta);
        // Reverse component order visits every directory after all its
        // descendants (so a read-only mode or a time set on a parent is not
        // disturbed by work below it) and keeps ancestors' descriptors reusable.
        dirs.sort_by(|a, b| b.rel.cmp(&a.rel));
        let mut opener = sys::BeneathOpener::new(self.target);
        for d in dirs {
            let path = self.target.join(&d.rel);
            let fd = match opener.open(&d.rel) {
                Ok(fd) => fd,
                // Replaced by a later entry (a symlink or file): nothing to do.
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOTDIR)
                        || e.raw_os_error() == Some(libc::ELOOP) =>
                {
                    continue
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("open directory", &path, e)),
            };
            if self.root {
                sys::fchown(fd, d.meta.uid, d.meta.gid)
                    .map_err(|e| Error::io("change owner of", &path, e))?;
            }
            sys::fchmod(fd, d.meta.mode & 0o7777)
                .map_err(|e| Error::io("change mode of", &path, e))?;
            sys::futimens(fd, d.meta.mtime).map_err(|e| Error::io("set times of", &path, e))?;
        }
        Ok(())
    }

    fn restore_loosened(&mut self) -> Result<()> {
        let mut first = Ok(());
        let mut loosened = std::mem::take(&mut self.loosened);
        loosened.sort_by(|a, b| b.0.cmp(&a.0));
        let mut opener = sys::BeneathOpener::new(self.target);
        for (rel, mode) in loosened {
            let path = self.target.join(&rel);
            let r = opener.open(&rel).and_then(|fd| sys::fchmod(fd, mode));
            if let Err(e) = r {
                if first.is_ok() {
                    first = Err(Error::io("restore the mode of", path, e));
                }
            }
        }
        first
    }
}

/// Removes a file, symlink or empty directory in the way of a symlink.
fn replace_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir(path).map_err(|_| Error::Conflict {
            path: path.to_path_buf(),
            reason: "a non-empty directory is in the way of a symlink",
        }),
        Ok(_) => remove_non_dir(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

/// Routes a path to a worker; the same path always goes to the same worker
/// so duplicate entries are written in archive order.
fn route(path: &Path, n: usize) -> usize {
    // FNV-1a: stable across runs and cheap for short keys.
    let mut x: u64 = 0xcbf29ce484222325;
    for &b in path.as_os_str().as_bytes() {
        x ^= u64::from(b);
        x = x.wrapping_mul(0x100000001b3);
    }
    (x % n as u64) as usize
}

pub(crate) fn extract_impl<R: Read>(
    r: R,
    target: &Path,
    opts: &ExtractOptions,
    cancel: &AtomicBool,
) -> Result<ExtractSummary> {
    fs::create_dir_all(target).map_err(|e| Error::io("create directory", target, e))?;
    let threads = crate::resolve_threads(opts.threads);
    let workers = if threads <= 1 { 0 } else { threads };
    // pzstd-format frames are decoded on their own threads, as many as
    // there are file workers (up to DECODE_THREADS_MAX); with 2 cores this
    // makes few-large-file archives 1.4x faster and is neutral for many
    // small files.
    let decoder = FrameReader::new(r, threads.min(DECODE_THREADS_MAX));
    // Read in place through `BufRead`: no buffer copy in between.
    let mut input = Input { r: decoder, pos: 0 };
    let mut ex = Extractor {
        target,
        root: sys::is_root(),
        dirs: HashMap::new(),
        // SAFETY: no preconditions.
        euid: unsafe { libc::geteuid() },
        // SAFETY: no preconditions.
        egid: unsafe { libc::getegid() },
        umask: current_umask(),
        loosened: Vec::new(),
        dir_meta: Vec::new(),
        links: Vec::new(),
        summary: ExtractSummary::default(),
    };
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    let result = std::thread::scope(|s| -> Result<()> {
        let mut txs = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..workers {
            let (tx, rx) = sync_channel::<Vec<Job>>(QUEUE);
            txs.push(tx);
            let (failed, first_error) = (&failed, &first_error);
            handles.push(s.spawn(move || worker(rx, failed, first_error)));
        }
        let mut pool = Pool {
            batches: (0..txs.len()).map(|_| Vec::new()).collect(),
            batch_bytes: vec![0; txs.len()],
            txs,
            failed: &failed,
            first_error: &first_error,
        };
        let r = parse(&mut input, &mut ex, &mut pool, cancel);
        let r = r.and_then(|()| pool.barrier());
        drop(pool);
        for h in handles {
            match h.join() {
                Ok(c) => {
                    ex.summary.files += c.files;
                    ex.summary.bytes += c.bytes;
                }
                Err(_) => return Err(Error::Panicked("extraction worker".into())),
            }
        }
        r?;
        if let Some(e) = first_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        Ok(())
    });
    // The stream has been read to its end (or extraction failed).
    ex.summary.skippable_frames = input.r.take_skippable();
    ex.summary.tree_digest = ex
        .summary
        .skippable_frames
        .iter()
        .rev()
        .find_map(|f| TreeDigest::from_payload(f.magic, &f.payload));
    let result = result
        .and_then(|()| ex.flush_links())
        .and_then(|()| ex.finish_dirs());
    match result {
        Ok(()) => Ok(ex.summary),
        Err(e) => {
            // Leave pre-existing read-only directories as they were.
            let _ = ex.restore_loosened();
            Err(e)
        }
    }
}

struct Pool<'a> {
    txs: Vec<SyncSender<Vec<Job>>>,
    batches: Vec<Vec<Job>>,
    batch_bytes: Vec<usize>,
    failed: &'a AtomicBool,
    first_error: &'a Mutex<Option<Error>>,
}

impl Pool<'_> {
    fn worker_error(&self) -> Error {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or(Error::Panicked("extraction worker".into()))
    }

    /// Queues a job for worker `i`, handing over the batch when it is full.
    fn send(&mut self, i: usize, job: Job) -> Result<()> {
        self.batch_bytes[i] += job.data_len();
        self.batches[i].push(job);
        if self.batches[i].len() >= BATCH_JOBS || self.batch_bytes[i] >= BATCH_BYTES {
            self.flush(i)?;
        }
        Ok(())
    }

    fn flush(&mut self, i: usize) -> Result<()> {
        if self.batches[i].is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batches[i]);
        self.batch_bytes[i] = 0;
        self.txs[i].send(batch).map_err(|_| self.worker_error())
    }

    /// Waits until every worker has finished all work sent so far.
    fn barrier(&mut self) -> Result<()> {
        let mut acks = Vec::new();
        for i in 0..self.txs.len() {
            let (tx, rx) = sync_channel(1);
            self.send(i, Job::Barrier(tx))?;
            self.flush(i)?;
            acks.push(rx);
        }
        for rx in acks {
            rx.recv().map_err(|_| self.worker_error())?;
        }
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.worker_error());
        }
        Ok(())
    }
}

fn parse<R: BufRead>(
    input: &mut Input<R>,
    ex: &mut Extractor<'_>,
    pool: &mut Pool<'_>,
    cancel: &AtomicBool,
) -> Result<()> {
    let mut block = [0u8; BLOCK];
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let mut pax: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut sink_buf: Vec<u8> = Vec::new();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        if pool.failed.load(Ordering::Relaxed) {
            return Err(pool.worker_error());
        }
        let offset = input.pos;
        input.read_exact(&mut block, "a tar header or the end-of-archive marker")?;
        if tarfmt::is_zero_block(&block) {
            if long_name.is_some() || long_link.is_some() || !pax.is_empty() {
                return Err(Error::Corrupt {
                    offset,
                    reason: "archive ends after a long-name or pax header".into(),
                });
            }
            return input.drain();
        }
        if !tarfmt::checksum_ok(&block) {
            return Err(Error::Corrupt {
                offset,
                reason: "header checksum mismatch".into(),
            });
        }
        let h = tar::Header::from_byte_slice(&block);
        let corrupt = |what: &str, e: io::Error| Error::Corrupt {
            offset,
            reason: format!("bad {what} field: {e}"),
        };
        let typ = block[156];
        let size = match pax.get(&b"size"[..]) {
            Some(v) => parse_dec(v).ok_or_else(|| Error::Corrupt {
                offset,
                reason: "bad pax size".into(),
            })?,
            None => h.entry_size().map_err(|e| corrupt("size", e))?,
        };
        match typ {
            b'L' | b'K' | b'x' | b'g' => {
                if size > META_MAX {
                    return Err(Error::Corrupt {
                        offset,
                        reason: format!(
                            "metadata entry of {size} bytes exceeds the {META_MAX}-byte limit"
                        ),
                    });
                }
                let mut data = input.read_data(size, "the data of a metadata entry")?;
                match typ {
                    b'L' | b'K' => {
                        while data.last() == Some(&0) {
                            data.pop();
                        }
                        if typ == b'L' {
                            long_name = Some(data);
                        } else {
                            long_link = Some(data);
                        }
                    }
                    b'x' => {
                        let recs = tarfmt::parse_pax(&data)
                            .map_err(|reason| Error::Corrupt { offset, reason })?;
                        pax.extend(recs);
                    }
                    _ => {} // Global pax headers carry nothing we use.
                }
                continue;
            }
            _ => {}
        }
        let name = long_name
            .take()
            .or_else(|| pax.remove(&b"path"[..]))
            .unwrap_or_else(|| h.path_bytes().into_owned());
        let link = long_link
            .take()
            .or_else(|| pax.remove(&b"linkpath"[..]))
            .or_else(|| h.link_name_bytes().map(|l| l.into_owned()));
        // Some writers leave numeric fields empty; GNU tar reads them as 0.
        let num = |range: std::ops::Range<usize>, what: &str, v: io::Result<u64>| -> Result<u64> {
            if block[range].iter().all(|&c| c == 0 || c == b' ') {
                Ok(0)
            } else {
                v.map_err(|e| corrupt(what, e))
            }
        };
        let mut meta = Meta {
            mode: num(100..108, "mode", h.mode().map(u64::from))? as u32,
            uid: num(108..116, "uid", h.uid())? as u32,
            gid: num(116..124, "gid", h.gid())? as u32,
            mtime: num(136..148, "mtime", h.mtime())? as i64,
        };
        if let Some(v) = pax.get(&b"mtime"[..]) {
            let int = v.split(|&c| c == b'.').next().unwrap_or(b"");
            if let Some(t) = std::str::from_utf8(int)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                meta.mtime = t;
            }
        }
        if let Some(u) = pax.get(&b"uid"[..]).and_then(|v| parse_dec(v)) {
            meta.uid = u as u32;
        }
        if let Some(g) = pax.get(&b"gid"[..]).and_then(|v| parse_dec(v)) {
            meta.gid = g as u32;
        }
        if pax.keys().any(|k| k.starts_with(b"GNU.sparse")) {
            return Err(Error::Unsupported {
                entry: String::from_utf8_lossy(&name).into_owned(),
                what: "pax sparse file".into(),
            });
        }
        pax.clear();
        ex.summary.entries += 1;
        let rel = sanitize(&name)?;
        let is_root = rel.as_os_str().is_empty();
        match typ {
            b'0' | 0 | b'7' => {
                if is_root {
                    return Err(Error::unsafe_entry(
                        &name,
                        "would replace the target directory",
                    ));
                }
                let parent = ex.ensure_parent(&rel)?;
                ex.dirs.remove(&rel);
                let fixups = ex.fixups(&meta, parent);
                let path = ex.target.join(&rel);
                if pool.txs.is_empty() {
                    let mut sink = FileSink::create(path, meta, fixups)?;
                    let mut left = size;
                    while left > 0 {
                        let buf = input.fill("file data")?;
                        let n = (buf.len() as u64).min(left).min(CHUNK as u64) as usize;
                        sink_buf.clear();
                        sink_buf.extend_from_slice(&buf[..n]);
                        input.consume(n);
                        sink.write(&sink_buf)?;
                        left -= n as u64;
                    }
                    input.skip(tarfmt::padding(size) as u64, "file padding")?;
                    sink.finish()?;
                    ex.summary.files += 1;
                    ex.summary.bytes += size;
                } else {
                    let w = route(&rel, pool.txs.len());
                    let first = size.min(INLINE_MAX);
                    let data = if first as usize >= STREAM_BUFFER {
                        input.read_chunk(first as usize, "file data")?
                    } else {
                        input.read_vec(first as usize, "file data")?
                    };
                    let mut left = size - first;
                    pool.send(
                        w,
                        Job::Start(FileJob {
                            path,
                            meta,
                            fixups,
                            size,
                            data,
                            last: left == 0,
                        }),
                    )?;
                    while left > 0 {
                        let n = left.min(CHUNK as u64);
                        let data = input.read_chunk(n as usize, "file data")?;
                        left -= n;
                        pool.send(w, Job::Chunk(data, left == 0))?;
                    }
                    input.skip(tarfmt::padding(size) as u64, "file padding")?;
                }
            }
            b'5' | b'D' => {
                input.skip(size + tarfmt::padding(size) as u64, "directory data")?;
                ex.ensure_dir(&rel)?;
                ex.dir_meta.push(DirMeta { rel, meta });
                ex.summary.directories += 1;
            }
            b'2' | b'1' => {
                input.skip(size + tarfmt::padding(size) as u64, "link data")?;
                if is_root {
                    return Err(Error::unsafe_entry(
                        &name,
                        "would replace the target directory",
                    ));
                }
                let target = link.unwrap_or_default();
                if target.is_empty() {
                    return Err(Error::Corrupt {
                        offset,
                        reason: format!(
                            "link `{}` has an empty target",
                            String::from_utf8_lossy(&name)
                        ),
                    });
                }
                let hard_source = if typ == b'1' {
                    let src = sanitize(&target).map_err(|_| {
                        Error::unsafe_entry(
                            &name,
                            format!(
                                "is a hard link to `{}`, which escapes the target directory",
                                String::from_utf8_lossy(&target)
                            ),
                        )
                    })?;
                    Some(src)
                } else {
                    None
                };
                ex.links.push(DeferredLink {
                    rel,
                    name,
                    target,
                    hard_source,
                    meta,
                });
                if ex.links.len() >= LINK_BATCH {
                    pool.barrier()?;
                    ex.flush_links()?;
                }
            }
            b'3' | b'4' | b'6' => {
                // Policy: device nodes and FIFOs are never created; they are
                // reported in the summary instead.
                input.skip(size + tarfmt::padding(size) as u64, "entry data")?;
                ex.summary.skipped += 1;
                if ex.summary.skipped_names.len() < SKIPPED_NAMES {
                    ex.summary
                        .skipped_names
                        .push(String::from_utf8_lossy(&name).into_owned());
                }
            }
            b'V' => {
                ex.summary.entries -= 1;
                input.skip(size + tarfmt::padding(size) as u64, "volume label data")?;
            }
            b'S' => {
                return Err(Error::Unsupported {
                    entry: String::from_utf8_lossy(&name).into_owned(),
                    what: "GNU sparse file".into(),
                })
            }
            other => {
                return Err(Error::Unsupported {
                    entry: String::from_utf8_lossy(&name).into_owned(),
                    what: format!("entry type `{}`", other.escape_ascii()),
                })
            }
        }
    }
}

fn parse_dec(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_names() {
        assert_eq!(sanitize(b"./a/b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(sanitize(b"a//./b/").unwrap(), PathBuf::from("a/b"));
        assert_eq!(sanitize(b"./").unwrap(), PathBuf::new());
        assert!(sanitize(b"/etc/passwd").is_err());
        assert!(sanitize(b"a/../../x").is_err());
        assert!(sanitize(b"..").is_err());
        let msg = sanitize(b"../x").unwrap_err().to_string();
        assert_eq!(msg, "archive entry `../x` escapes the target directory");
    }

    #[test]
    fn routing_is_stable() {
        let p = Path::new("a/b/c");
        assert_eq!(route(p, 4), route(p, 4));
        assert!(route(p, 3) < 3);
    }
}

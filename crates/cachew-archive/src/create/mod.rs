//! Archive creation: walk, read and compress on separate threads.

use std::collections::{hash_map, HashMap};
use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use tar::{EntryType, Header};

use crate::digest::{hash_file, DigestBuilder, TRAILER_MAGIC};
use crate::exclude::ExcludeSet;
use crate::frames::{FrameWriter, SKIPPABLE_BASE};
use crate::sys;
use crate::tarfmt::{self, BLOCK, NAME_FIELD, RECORD};
use crate::{ArchiveOptions, ArchiveSummary, Error, Result};

/// Files up to this size are read whole by a reader thread; larger ones are
/// streamed by the writer in chunks, so memory stays bounded.
const INLINE_MAX: u64 = 512 * 1024;
/// Batches queued between threads. Items travel in batches because a
/// hand-over per file costs a wake-up per file.
const QUEUE: usize = 4;
/// Items per batch.
const BATCH_ITEMS: usize = 64;
/// A reader hands over its output once it holds this much file data, so
/// memory stays bounded by about `readers * (QUEUE + 2) * BATCH_BUF`: each
/// reader's output batches are read into buffers of `BATCH_BUF` bytes that
/// the writer hands back for reuse, and a reader allocates a new one only
/// when none has come back, which happens only while fewer than `QUEUE + 2`
/// exist (one being filled, `QUEUE` queued, one being written).
const BATCH_BYTES: usize = 1 << 20;
/// Size of a batch buffer: below `BATCH_BYTES` there is always room for one
/// more file of up to `INLINE_MAX` bytes plus the byte that shows it grew.
const BATCH_BUF: usize = BATCH_BYTES + INLINE_MAX as usize + 1;
/// Chunk size for streaming large files: small enough for the buffer to
/// stay in a core's L2 cache between `read` and the copy into the frame.
const CHUNK: usize = 256 << 10;
/// Directory descriptors held at once. Files are opened relative to their
/// directory (one path component to look up instead of the whole path), so
/// each directory with entries in flight keeps its descriptor until they
/// are written: one per level of the walk plus at most one per item queued
/// between the threads. Beyond this many, directories and their files are
/// opened by path instead.
const DIR_FDS_MAX: usize = 128;
/// Scratch buffer for `getdents64`.
const DENTS_BUF: usize = 32 << 10;

/// What `lstat` says about an entry (the fields the archive needs).
#[derive(Clone, Copy)]
struct Meta {
    /// `st_mode`: file type and permission bits.
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    dev: u64,
    ino: u64,
    rdev: u64,
}

impl Meta {
    /// For a regular file whose metadata the reader gets from the open file.
    const UNKNOWN: Meta = Meta {
        mode: libc::S_IFREG,
        nlink: 1,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        dev: 0,
        ino: 0,
        rdev: 0,
    };

    fn from_stat(st: &libc::stat) -> Meta {
        Meta {
            mode: st.st_mode,
            // `st_nlink` is narrower than 64 bits on some targets.
            #[allow(clippy::unnecessary_cast)]
            nlink: st.st_nlink as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            dev: st.st_dev,
            ino: st.st_ino,
            rdev: st.st_rdev,
        }
    }

    fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

/// What the walker found.
enum Kind {
    Dir,
    File,
    Symlink,
    HardLink(Vec<u8>),
    Char,
    Block,
    Fifo,
}

/// A directory being walked, shared by the items in it.
struct Dir {
    path: PathBuf,
    /// `None` when [`DIR_FDS_MAX`] descriptors were already held.
    fd: Option<OwnedFd>,
    /// Directory descriptors held, across all `Dir`s of the walk.
    open: Arc<AtomicUsize>,
}

impl Drop for Dir {
    fn drop(&mut self) {
        if self.fd.is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Where an entry is.
#[derive(Clone)]
enum Parent {
    /// In a walked directory, under the last component of its name.
    Dir(Arc<Dir>),
    /// An include path, at this path.
    Root(PathBuf),
}

struct Item {
    /// Member name without a trailing slash.
    name: Vec<u8>,
    /// Where the last component of `name` starts (for `Parent::Dir`).
    leaf: usize,
    parent: Parent,
    meta: Meta,
    kind: Kind,
    /// blake3 of the contents of a file read whole, when digesting.
    hash: Option<[u8; 32]>,
}

impl Item {
    /// The entry's path, for messages.
    fn path(&self) -> PathBuf {
        path_of(&self.parent, &self.name[self.leaf..])
    }

    /// Calls `f` as [`at`] does for this entry.
    fn at<R>(&self, f: impl FnOnce(RawFd, &CStr) -> io::Result<R>) -> io::Result<R> {
        at(&self.parent, &self.name[self.leaf..], f)
    }
}

enum Data {
    None,
    /// The file was deleted since its directory was read: no entry.
    Skip,
    /// Where the contents are in the batch's buffer.
    Inline(Range<usize>),
    Stream(File),
    Link(Vec<u8>),
}

type Msg = Result<(Item, Data)>;

/// Reader output: some messages, the buffer holding the contents of the
/// files read whole, and whether they finish the walker batch they came
/// from (so the writer knows when to move on to the next reader).
struct OutBatch {
    msgs: Vec<Msg>,
    buf: Vec<u8>,
    last: bool,
}

/// An output batch's message list (emptied) and buffer, handed back to the
/// reader for reuse.
type Spare = (Vec<Msg>, Vec<u8>);

/// The error for an include path that cannot be stat-ed: a missing one is
/// named as given, with the base directory.
pub(crate) fn include_stat_error(inc: &Path, base: &Path, path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::IncludeNotFound {
            path: inc.to_path_buf(),
            base: base.to_path_buf(),
        }
    } else {
        Error::io("stat", path, e)
    }
}

/// Checks an include path and returns its member name (GNU tar keeps the
/// name as given, minus trailing slashes).
pub(crate) fn include_name(p: &Path) -> Result<Vec<u8>> {
    let bytes = p.as_os_str().as_bytes();
    let invalid = || Error::InvalidIncludePath {
        path: p.to_path_buf(),
    };
    if bytes.is_empty() || p.is_absolute() {
        return Err(invalid());
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(invalid());
    }
    let mut name = bytes.to_vec();
    while name.len() > 1 && name.ends_with(b"/") {
        name.pop();
    }
    // Collapse repeated slashes, which tar would not store either.
    name.dedup_by(|a, b| *a == b'/' && *b == b'/');
    Ok(name)
}

pub(crate) fn archive_impl<W: Write>(
    w: W,
    base: &Path,
    includes: &[PathBuf],
    excludes: &ExcludeSet,
    opts: &ArchiveOptions,
    cancel: &AtomicBool,
) -> Result<ArchiveSummary> {
    if includes.is_empty() {
        return Err(Error::NoIncludePaths);
    }
    let mut roots = Vec::with_capacity(includes.len());
    for inc in includes {
        let name = include_name(inc)?;
        let path = base.join(inc);
        let st = sys::with_cstr(path.as_os_str().as_bytes(), |c| {
            sys::lstat_at(libc::AT_FDCWD, c)
        });
        let meta = st.map_err(|e| include_stat_error(inc, base, &path, e))?;
        roots.push((name, path, Meta::from_stat(&meta)));
    }

    let threads = crate::resolve_threads(opts.threads);
    // Reading small files (openat, fstat, read, close) is the longest stage
    // before compression, so with two or more cores it is split between two
    // readers; on two cores that shortens a share/doc archive by 5%.
    let readers = if threads >= 2 { 2 } else { 1 };

    let mut out = TarOut::new(w, opts.level, threads, opts.digest)?;
    let digest = opts.digest;

    std::thread::scope(|s| -> Result<ArchiveSummary> {
        let mut to_readers = Vec::new();
        let mut from_readers = Vec::new();
        let mut back_to_readers = Vec::new();
        for _ in 0..readers {
            let (itx, irx) = sync_channel::<Vec<Result<Item>>>(QUEUE);
            let (otx, orx) = sync_channel::<OutBatch>(QUEUE);
            let (btx, brx) = channel::<Spare>();
            to_readers.push(itx);
            from_readers.push(orx);
            back_to_readers.push(btx);
            s.spawn(move || reader(irx, otx, brx, digest, cancel));
        }
        s.spawn(move || walker(roots, excludes, to_readers, cancel));

        // Walker batches go to the readers in turn; take them back in the same order.
        let mut seq = 0usize;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let r = seq % readers;
            let Ok(OutBatch {
                mut msgs,
                buf,
                last,
            }) = from_readers[r].recv()
            else {
                break;
            };
            if last {
                seq += 1;
            }
            for msg in msgs.drain(..) {
                let (item, data) = msg?;
                out.entry(item, data, &buf)?;
            }
            // The reader may be done: then the buffers are just dropped.
            let _ = back_to_readers[r].send((msgs, buf));
        }
        drop(from_readers);
        out.finish()
    })
}

fn walker(
    roots: Vec<(Vec<u8>, PathBuf, Meta)>,
    excludes: &ExcludeSet,
    to_readers: Vec<SyncSender<Vec<Result<Item>>>>,
    cancel: &AtomicBool,
) {
    let mut w = Walker {
        excludes,
        to_readers,
        pending: Vec::with_capacity(BATCH_ITEMS),
        seq: 0,
        cancel,
        open_dirs: Arc::new(AtomicUsize::new(0)),
        dents: vec![0u8; DENTS_BUF],
    };
    for (name, path, meta) in roots {
        if excludes.is_excluded(&name) {
            continue;
        }
        if w.visit(name, 0, Parent::Root(path), meta).is_err() {
            return;
        }
    }
    let _ = w.flush();
}

struct Walker<'a> {
    excludes: &'a ExcludeSet,
    to_readers: Vec<SyncSender<Vec<Result<Item>>>>,
    pending: Vec<Result<Item>>,
    seq: usize,
    cancel: &'a AtomicBool,
    open_dirs: Arc<AtomicUsize>,
    dents: Vec<u8>,
}

/// Returned when the consumer has gone away; the walk just stops.
struct Stop;

/// A directory's entries in name order: where each name (followed by a
/// NUL) is in `names`, and its `d_type`.
struct Listing {
    names: Vec<u8>,
    entries: Vec<(Range<usize>, u8)>,
}

/// Flags for opening a directory to read it (never through a symlink).
const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOCTTY | libc::O_NOFOLLOW;

impl Walker<'_> {
    fn send(&mut self, item: Result<Item>) -> Result<(), Stop> {
        let is_err = item.is_err();
        self.pending.push(item);
        if self.pending.len() >= BATCH_ITEMS || is_err {
            self.flush()?;
        }
        if is_err {
            // The writer stops at the error; no point walking on.
            return Err(Stop);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Stop> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Stop);
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let i = self.seq % self.to_readers.len();
        self.seq += 1;
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(BATCH_ITEMS));
        self.to_readers[i].send(batch).map_err(|_| Stop)
    }

    /// Visits an include path, or an entry whose `lstat` the walker needed
    /// (the listing did not say it is a regular file or a directory).
    fn visit(
        &mut self,
        name: Vec<u8>,
        leaf: usize,
        parent: Parent,
        meta: Meta,
    ) -> Result<(), Stop> {
        let kind = match meta.file_type() {
            libc::S_IFDIR => {
                return match at(&parent, &name[leaf..], |d, c| sys::open_at(d, c, DIR_FLAGS)) {
                    Ok(fd) => self.dir(name, leaf, parent, meta, fd),
                    Err(e) => {
                        let path = path_of(&parent, &name[leaf..]);
                        self.send(Ok(Item {
                            name,
                            leaf,
                            parent,
                            meta,
                            kind: Kind::Dir,
                            hash: None,
                        }))?;
                        self.send(Err(Error::io("read directory", &path, e)))
                    }
                };
            }
            // GNU tar ignores sockets too ("socket ignored").
            libc::S_IFSOCK => return Ok(()),
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR => Kind::Char,
            libc::S_IFBLK => Kind::Block,
            _ => Kind::Fifo,
        };
        self.send(Ok(Item {
            name,
            leaf,
            parent,
            meta,
            kind,
            hash: None,
        }))
    }

    /// Sends the directory open as `fd`, then walks its entries.
    fn dir(
        &mut self,
        name: Vec<u8>,
        leaf: usize,
        parent: Parent,
        meta: Meta,
        fd: OwnedFd,
    ) -> Result<(), Stop> {
        let path = path_of(&parent, &name[leaf..]);
        self.send(Ok(Item {
            name: name.clone(),
            leaf,
            parent,
            meta,
            kind: Kind::Dir,
            hash: None,
        }))?;
        let listing = match self.list(&fd) {
            Ok(l) => l,
            Err(e) => return self.send(Err(Error::io("read directory", &path, e))),
        };
        // Keep the descriptor for the entries' readers, within the limit.
        let fd = if self.open_dirs.load(Ordering::Relaxed) < DIR_FDS_MAX {
            self.open_dirs.fetch_add(1, Ordering::Relaxed);
            Some(fd)
        } else {
            None
        };
        let dir = Arc::new(Dir {
            path,
            fd,
            open: self.open_dirs.clone(),
        });
        for (range, d_type) in listing.entries {
            // Without the NUL.
            let file_name = &listing.names[range.start..range.end - 1];
            let mut child = Vec::with_capacity(name.len() + 1 + file_name.len());
            child.extend_from_slice(&name);
            if !name.ends_with(b"/") {
                child.push(b'/');
            }
            let leaf = child.len();
            child.extend_from_slice(file_name);
            if self.excludes.is_excluded(&child) {
                continue;
            }
            let parent = Parent::Dir(dir.clone());
            match d_type {
                // The reader opens it and takes its metadata from the open
                // file (one name lookup instead of two).
                libc::DT_REG => {
                    self.send(Ok(Item {
                        name: child,
                        leaf,
                        parent,
                        meta: Meta::UNKNOWN,
                        kind: Kind::File,
                        hash: None,
                    }))?;
                    continue;
                }
                // Likewise, opened first, then `fstat`ed.
                libc::DT_DIR => {
                    match at(&parent, file_name, |d, c| sys::open_at(d, c, DIR_FLAGS)) {
                        Ok(fd) => {
                            match sys::fstat(fd.as_raw_fd()) {
                                Ok(st) => {
                                    self.dir(child, leaf, parent, Meta::from_stat(&st), fd)?
                                }
                                Err(e) => {
                                    let child_path = path_of(&parent, file_name);
                                    return self.send(Err(Error::io("stat", &child_path, e)));
                                }
                            }
                            continue;
                        }
                        // A directory deleted during the walk is skipped, as GNU tar does.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        // Replaced, or unreadable: `lstat` says what it is now.
                        Err(_) => {}
                    }
                }
                _ => {}
            }
            let meta = match at(&parent, file_name, sys::lstat_at) {
                Ok(st) => Meta::from_stat(&st),
                // A file deleted during the walk is skipped, as GNU tar does
                // (with a warning); anything else is an error.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let child_path = path_of(&parent, file_name);
                    return self.send(Err(Error::io("stat", &child_path, e)));
                }
            };
            self.visit(child, leaf, parent, meta)?;
        }
        Ok(())
    }

    /// Reads the entries of the directory open as `fd`, sorted by name.
    fn list(&mut self, fd: &OwnedFd) -> io::Result<Listing> {
        let mut names = Vec::new();
        let mut entries = Vec::new();
        sys::read_dir_at(fd, &mut self.dents, |n, d_type| {
            entries.push((names.len()..names.len() + n.len(), d_type));
            names.extend_from_slice(n);
        })?;
        // Sorted for reproducible archives (GNU tar uses readdir order).
        entries.sort_unstable_by(|(a, _), (b, _)| names[a.clone()].cmp(&names[b.clone()]));
        Ok(Listing { names, entries })
    }
}

/// The path of the entry `leaf` in `parent` (an include path's own path).
fn path_of(parent: &Parent, leaf: &[u8]) -> PathBuf {
    match parent {
        Parent::Dir(d) => d.path.join(OsStr::from_bytes(leaf)),
        Parent::Root(p) => p.clone(),
    }
}

/// Calls `f` with a directory descriptor and the name of the entry `leaf`
/// in `parent` relative to it: the parent's descriptor and `leaf` when the
/// parent is held open, else `AT_FDCWD` and the entry's path.
fn at<R>(
    parent: &Parent,
    leaf: &[u8],
    f: impl FnOnce(RawFd, &CStr) -> io::Result<R>,
) -> io::Result<R> {
    match parent {
        Parent::Dir(d) => match &d.fd {
            Some(fd) => sys::with_cstr(leaf, |c| f(fd.as_raw_fd(), c)),
            None => {
                let path = d.path.join(OsStr::from_bytes(leaf));
                sys::with_cstr(path.as_os_str().as_bytes(), |c| f(libc::AT_FDCWD, c))
            }
        },
        Parent::Root(p) => sys::with_cstr(p.as_os_str().as_bytes(), |c| f(libc::AT_FDCWD, c)),
    }
}

fn reader(
    rx: Receiver<Vec<Result<Item>>>,
    tx: SyncSender<OutBatch>,
    back: Receiver<Spare>,
    digest: bool,
    cancel: &AtomicBool,
) {
    // A returned buffer if there is one, else a new one.
    let spare = || {
        back.try_recv()
            .unwrap_or_else(|_| (Vec::with_capacity(BATCH_ITEMS), vec![0u8; BATCH_BUF]))
    };
    for batch in rx {
        let (mut msgs, mut buf) = spare();
        let mut pos = 0usize;
        for item in batch {
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            let msg = item.and_then(|mut item| {
                let data = load(&mut item, &mut buf, &mut pos)?;
                if let (true, Data::Inline(r)) = (digest, &data) {
                    // Hashed here, beside the compressor threads, not on
                    // the thread that assembles the tar stream.
                    item.hash = Some(*blake3::hash(&buf[r.clone()]).as_bytes());
                }
                Ok((item, data))
            });
            msgs.push(msg);
            if pos >= BATCH_BYTES {
                let full = OutBatch {
                    msgs: std::mem::take(&mut msgs),
                    buf: std::mem::take(&mut buf),
                    last: false,
                };
                if tx.send(full).is_err() {
                    return;
                }
                // Only once the full one is queued (see `BATCH_BYTES`).
                (msgs, buf) = spare();
                pos = 0;
            }
        }
        if tx
            .send(OutBatch {
                msgs,
                buf,
                last: true,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Reads what the writer needs of `item`: a small file's contents go to
/// `buf` at `pos` (advanced past them), which has room for them and one
/// byte more (see [`BATCH_BUF`]). A regular file's metadata is taken from
/// the open file.
fn load(item: &mut Item, buf: &mut [u8], pos: &mut usize) -> Result<Data> {
    match item.kind {
        Kind::File => {
            // O_NONBLOCK: should it have become a FIFO, do not wait for a writer.
            let flags = libc::O_RDONLY | libc::O_NOCTTY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
            let mut f = match item.at(|dir, name| sys::open_at(dir, name, flags)) {
                Ok(fd) => File::from(fd),
                // Deleted since its directory was read: skipped, as GNU tar
                // does (with a warning).
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Data::Skip),
                Err(e) => {
                    // An empty file is archived even if it cannot be read.
                    if let Ok(st) = item.at(sys::lstat_at) {
                        let meta = Meta::from_stat(&st);
                        if meta.file_type() == libc::S_IFREG && meta.size == 0 {
                            item.meta = meta;
                            return Ok(Data::Inline(*pos..*pos));
                        }
                    }
                    return Err(Error::io("open", item.path(), e));
                }
            };
            let st = sys::fstat(f.as_raw_fd()).map_err(|e| Error::io("stat", item.path(), e))?;
            item.meta = Meta::from_stat(&st);
            if item.meta.file_type() != libc::S_IFREG {
                let e = io::Error::other("it is no longer a regular file");
                return Err(Error::io("open", item.path(), e));
            }
            let size = item.meta.size;
            if size == 0 {
                return Ok(Data::Inline(*pos..*pos));
            }
            if size > INLINE_MAX {
                return Ok(Data::Stream(f));
            }
            // Room for one byte more than expected: a file that grew shows
            // up in the first read, and an unchanged one takes one read.
            let size = size as usize;
            let start = *pos;
            let dst = &mut buf[start..start + size + 1];
            let mut filled = 0;
            while filled < size {
                match f.read(&mut dst[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::io("read", item.path(), e)),
                }
            }
            if filled != size {
                return Err(Error::FileChanged {
                    path: item.path(),
                    expected: size as u64,
                    actual: filled as u64,
                });
            }
            *pos += size;
            Ok(Data::Inline(start..start + size))
        }
        Kind::Symlink => {
            let target = item
                .at(sys::readlink_at)
                .map_err(|e| Error::io("read link", item.path(), e))?;
            Ok(Data::Link(target))
        }
        _ => Ok(Data::None),
    }
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// User and group names for header fields, looked up once per id.
#[derive(Default)]
struct NameCache {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl NameCache {
    fn user(&mut self, uid: u32) -> Option<&str> {
        self.users
            .entry(uid)
            .or_insert_with(|| crate::sys::user_name(uid))
            .as_deref()
    }
    fn group(&mut self, gid: u32) -> Option<&str> {
        self.groups
            .entry(gid)
            .or_insert_with(|| crate::sys::group_name(gid))
            .as_deref()
    }
}

type Enc<W> = FrameWriter<BufWriter<CountingWriter<W>>>;

struct TarOut<W: Write> {
    enc: Enc<W>,
    /// Bytes of tar stream written so far.
    pos: u64,
    entries: u64,
    names: NameCache,
    /// The first member of each inode with several links, by device and inode.
    links: HashMap<(u64, u64), FirstLink>,
    scratch: Vec<u8>,
    /// The tree digest being computed alongside the archive.
    digest: Option<DigestBuilder>,
    /// An empty GNU header, copied for each entry.
    template: Header,
}

/// The first member of an inode with several links: later ones become hard
/// link entries naming it, and count in the digest with its content hash.
struct FirstLink {
    name: Vec<u8>,
    /// blake3 of the contents, once written, when digesting.
    hash: Option<[u8; 32]>,
}

impl<W: Write> TarOut<W> {
    fn new(w: W, level: i32, threads: usize, digest: bool) -> Result<Self> {
        // pzstd's format: independent frames compressed on `threads` workers
        // (cheaper than zstd's own multithreading, and decodable in parallel).
        let counter = CountingWriter { inner: w, count: 0 };
        let enc = FrameWriter::new(
            // Frames larger than the buffer bypass it; it gathers the small writes.
            BufWriter::with_capacity(64 << 10, counter),
            level,
            threads,
        )
        .map_err(Error::Write)?;
        Ok(TarOut {
            enc,
            pos: 0,
            entries: 0,
            names: NameCache::default(),
            links: HashMap::new(),
            scratch: Vec::with_capacity(4 * BLOCK),
            digest: digest.then(DigestBuilder::new),
            template: Header::new_gnu(),
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.enc.write_all(data).map_err(Error::Write)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    fn entry(&mut self, mut item: Item, mut data: Data, buf: &[u8]) -> Result<()> {
        if matches!(data, Data::Skip) {
            return Ok(());
        }
        let meta = item.meta;
        let mut kind = std::mem::replace(&mut item.kind, Kind::Fifo);
        let mut link_hash = None;
        // Hard links are found here, in walk order: the reader may only now
        // have the metadata. A later link's contents, if read, are dropped.
        if !matches!(kind, Kind::Dir) && meta.nlink > 1 {
            match self.links.entry((meta.dev, meta.ino)) {
                hash_map::Entry::Occupied(first) => {
                    kind = Kind::HardLink(first.get().name.clone());
                    link_hash = first.get().hash;
                    data = Data::None;
                }
                hash_map::Entry::Vacant(v) => {
                    v.insert(FirstLink {
                        name: item.name.clone(),
                        hash: None,
                    });
                }
            }
        }
        let mut h = self.template.clone();
        let mut link: Option<Vec<u8>> = None;
        let mut body = Data::None;
        let mut item_hash = item.hash;
        let (ty, size) = match kind {
            Kind::Dir => (EntryType::Directory, 0),
            Kind::File => {
                let size = match &data {
                    Data::Inline(r) => r.len() as u64,
                    _ => meta.size,
                };
                body = data;
                (EntryType::Regular, size)
            }
            Kind::Symlink => {
                if let Data::Link(t) = data {
                    link = Some(t);
                }
                (EntryType::Symlink, 0)
            }
            Kind::HardLink(t) => {
                link = Some(t);
                (EntryType::Link, 0)
            }
            Kind::Char => (EntryType::Char, 0),
            Kind::Block => (EntryType::Block, 0),
            Kind::Fifo => (EntryType::Fifo, 0),
        };
        // Directories are stored with a trailing slash.
        let dir_name: Vec<u8>;
        let name: &[u8] = if ty == EntryType::Directory {
            dir_name = [&item.name[..], b"/"].concat();
            &dir_name
        } else {
            &item.name
        };
        self.scratch.clear();
        if let Some(l) = &link {
            if l.len() >= NAME_FIELD {
                tarfmt::long_link(&mut self.scratch, b'K', l);
            }
        }
        if name.len() >= NAME_FIELD {
            tarfmt::long_link(&mut self.scratch, b'L', name);
        }
        tarfmt::set_name_field(&mut h, name);
        if let Some(l) = &link {
            tarfmt::set_link_field(&mut h, l);
        }
        set_numbers(
            &mut h,
            meta.mode & 0o7777,
            u64::from(meta.uid),
            u64::from(meta.gid),
            meta.mtime.max(0) as u64,
            size,
        );
        h.set_entry_type(ty);
        if let Some(u) = self.names.user(meta.uid) {
            let _ = h.set_username(u);
        }
        if let Some(g) = self.names.group(meta.gid) {
            let _ = h.set_groupname(g);
        }
        if matches!(ty, EntryType::Char | EntryType::Block) {
            let rdev = meta.rdev;
            let _ = h.set_device_major(libc::major(rdev));
            let _ = h.set_device_minor(libc::minor(rdev));
        }
        set_cksum(&mut h);
        self.scratch.extend_from_slice(h.as_bytes());
        let scratch = std::mem::take(&mut self.scratch);
        let written = self.write(&scratch);
        self.scratch = scratch;
        written?;
        match body {
            Data::Inline(r) => {
                self.write(&buf[r])?;
                self.write(&[0u8; BLOCK][..tarfmt::padding(size)])?;
            }
            Data::Stream(f) => {
                let hash = self.stream(f, &item, size)?;
                item_hash = hash.or(item_hash);
            }
            Data::None | Data::Skip | Data::Link(_) => {}
        }
        self.entries += 1;
        if let Some(d) = &mut self.digest {
            let name = &item.name;
            let mode = meta.mode;
            match ty {
                EntryType::Directory => d.dir(name, mode),
                EntryType::Symlink => d.symlink(name, link.as_deref().unwrap_or(b"")),
                EntryType::Regular => {
                    let hash = item_hash.unwrap_or_else(|| *blake3::hash(b"").as_bytes());
                    d.file(name, mode, size, &hash);
                    if meta.nlink > 1 {
                        if let Some(first) = self.links.get_mut(&(meta.dev, meta.ino)) {
                            first.hash = Some(hash);
                        }
                    }
                }
                // A hard link counts as the regular file it names.
                EntryType::Link if meta.file_type() == libc::S_IFREG => {
                    let hash = match link_hash {
                        Some(h) => h,
                        // The first name was not hashed as a regular file.
                        None => hash_file(&item.path(), meta.size, &mut vec![0; CHUNK])?,
                    };
                    d.file(name, mode, meta.size, &hash);
                }
                // Device nodes and FIFOs are not covered (extraction skips them).
                _ => {}
            }
        }
        Ok(())
    }

    /// Copies exactly `size` bytes of a large file, then its padding;
    /// returns the blake3 hash of the contents when digesting. The file is
    /// read straight into the compressor's chunk (no copy), `CHUNK` bytes
    /// at a time so they are still in cache when hashed.
    fn stream(&mut self, mut f: File, item: &Item, size: u64) -> Result<Option<[u8; 32]>> {
        let mut hasher = self.digest.is_some().then(blake3::Hasher::new);
        let mut left = size;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            let mut read_err = None;
            let filled = self.enc.fill_with(want, |dst| {
                let n = loop {
                    match f.read(dst) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            read_err = Some(e);
                            return Ok(0);
                        }
                        Ok(n) => break n,
                    }
                };
                if let Some(h) = &mut hasher {
                    h.update(&dst[..n]);
                }
                Ok(n)
            });
            let n = filled.map_err(Error::Write)?;
            if let Some(e) = read_err {
                return Err(Error::io("read", item.path(), e));
            }
            if n == 0 {
                return Err(Error::FileChanged {
                    path: item.path(),
                    expected: size,
                    actual: size - left,
                });
            }
            self.pos += n as u64;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        match f.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => {
                return Err(Error::FileChanged {
                    path: item.path(),
                    expected: size,
                    actual: size + 1,
                })
            }
            Err(e) => return Err(Error::io("read", item.path(), e)),
        }
        self.write(&[0u8; BLOCK][..tarfmt::padding(size)])?;
        Ok(hasher.map(|h| *h.finalize().as_bytes()))
    }

    fn finish(mut self) -> Result<ArchiveSummary> {
        // Two zero blocks end the archive; GNU tar then pads to a full record.
        let mut end = vec![0u8; 2 * BLOCK];
        let total = self.pos + end.len() as u64;
        end.resize(end.len() + ((RECORD - total % RECORD) % RECORD) as usize, 0);
        self.write(&end)?;
        let digest = self.digest.map(|d| d.finish().digest);
        if let Some(d) = &digest {
            // The trailer: a skippable frame after the last data frame.
            self.enc
                .write_skippable(TRAILER_MAGIC - SKIPPABLE_BASE, &d.trailer_payload())
                .map_err(Error::Write)?;
        }
        let bufw = self.enc.finish().map_err(Error::Write)?;
        let mut counter = bufw
            .into_inner()
            .map_err(|e| Error::Write(e.into_error()))?;
        counter.flush().map_err(Error::Write)?;
        Ok(ArchiveSummary {
            entries: self.entries,
            uncompressed_bytes: self.pos,
            compressed_bytes: counter.count,
            digest,
        })
    }
}

/// Writes the mode, owner, mtime and size fields as `set_mode`, `set_uid`,
/// `set_gid`, `set_mtime` and `set_size` do, without their allocations:
/// numbers that fit are written in octal here, larger ones by the tar
/// crate (base-256).
fn set_numbers(h: &mut Header, mode: u32, uid: u64, gid: u64, mtime: u64, size: u64) {
    octal(&mut h.as_old_mut().mode, u64::from(mode));
    if !num_field(&mut h.as_old_mut().uid, uid) {
        h.set_uid(uid);
    }
    if !num_field(&mut h.as_old_mut().gid, gid) {
        h.set_gid(gid);
    }
    if !num_field(&mut h.as_old_mut().mtime, mtime) {
        h.set_mtime(mtime);
    }
    if !num_field(&mut h.as_old_mut().size, size) {
        h.set_size(size);
    }
}

/// Writes `v` into a numeric header field as `tar`'s `octal_into` does
/// (digits right-aligned, zero-padded, then a NUL; digits that do not fit
/// are dropped), without formatting into a new `String` each time.
fn octal(field: &mut [u8], mut v: u64) {
    let (last, digits) = field.split_last_mut().expect("a numeric field");
    *last = 0;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v & 7) as u8;
        v >>= 3;
    }
}

/// Writes `v` as `tar::Header::set_uid`, `set_size`, … would when those
/// write octal; `false` (nothing written) when they would write GNU
/// base-256 instead.
fn num_field(field: &mut [u8], v: u64) -> bool {
    if v >= 1 << 33 || (v >= 1 << 21 && field.len() == 8) {
        return false;
    }
    octal(field, v);
    true
}

/// `tar::Header::set_cksum`: the unsigned sum of the header's bytes with
/// the checksum field counted as spaces, in octal.
fn set_cksum(h: &mut Header) {
    h.as_old_mut().cksum = [b' '; 8];
    let sum: u32 = h.as_bytes().iter().map(|&b| u32::from(b)).sum();
    octal(&mut h.as_old_mut().cksum, u64::from(sum));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{archive, extract, ExtractOptions};
    use std::fs;

    #[test]
    fn files_deleted_after_the_listing_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut item = Item {
            name: b"gone".to_vec(),
            leaf: 0,
            parent: Parent::Root(dir.path().join("gone")),
            meta: Meta::UNKNOWN,
            kind: Kind::File,
            hash: None,
        };
        let mut buf = vec![0u8; 16];
        let mut pos = 0;
        assert!(matches!(
            load(&mut item, &mut buf, &mut pos),
            Ok(Data::Skip)
        ));
        // Other errors name the full path.
        fs::create_dir(dir.path().join("d")).unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let d = Arc::new(Dir {
            path: dir.path().to_path_buf(),
            fd: None,
            open,
        });
        let mut item = Item {
            name: b"x/d/f".to_vec(),
            leaf: 4,
            parent: Parent::Dir(d),
            meta: Meta::UNKNOWN,
            kind: Kind::File,
            hash: None,
        };
        fs::write(dir.path().join("f"), b"").unwrap();
        fs::remove_file(dir.path().join("f")).unwrap();
        std::os::unix::fs::symlink("d", dir.path().join("f")).unwrap();
        let err = load(&mut item, &mut buf, &mut pos).err().unwrap();
        assert!(
            err.to_string()
                .contains(&dir.path().join("f").display().to_string()),
            "{err}"
        );
    }

    /// Large files are read straight into the compressor's chunks: the
    /// contents (across a chunk boundary) and hash come out right, and a
    /// file that is shorter or longer than its size says is an error.
    #[test]
    fn streamed_files_are_copied_whole_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..9u32 << 20).map(|i| (i % 251) as u8).collect();
        fs::write(dir.path().join("big"), &data).unwrap();
        let item = Item {
            name: b"big".to_vec(),
            leaf: 0,
            parent: Parent::Root(dir.path().join("big")),
            meta: Meta::UNKNOWN,
            kind: Kind::File,
            hash: None,
        };
        let open = || File::open(dir.path().join("big")).unwrap();
        let size = data.len() as u64;
        for threads in [1, 2] {
            let mut out = TarOut::new(Vec::new(), 1, threads, true).unwrap();
            out.write(&[7u8; 100]).unwrap();
            let hash = out.stream(open(), &item, size).unwrap();
            assert_eq!(hash, Some(*blake3::hash(&data).as_bytes()));
            assert_eq!(out.pos, 100 + size + tarfmt::padding(size) as u64);
            let Ok(counter) = out.enc.finish().unwrap().into_inner() else {
                panic!("flush failed")
            };
            let bytes = counter.inner;
            let tar = zstd::decode_all(bytes.as_slice()).unwrap();
            assert_eq!(&tar[..100], &[7u8; 100]);
            assert_eq!(&tar[100..100 + data.len()], &data[..]);

            for (claimed, actual) in [(size + 1000, size), (size - 1, size)] {
                let mut out = TarOut::new(io::sink(), 1, threads, true).unwrap();
                match out.stream(open(), &item, claimed) {
                    Err(Error::FileChanged {
                        expected,
                        actual: a,
                        ..
                    }) => {
                        assert_eq!(expected, claimed);
                        // A longer file shows one byte more than claimed.
                        assert_eq!(a, actual.min(claimed + 1));
                    }
                    other => panic!("claimed {claimed}: {:?}", other.map(|_| ())),
                }
            }
        }
    }

    /// Deeper than `DIR_FDS_MAX`, so the lower levels are opened by path.
    #[test]
    fn deep_trees_are_archived_whole() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let depth = DIR_FDS_MAX + 40;
        let mut p = src.clone();
        for i in 0..depth {
            p.push(format!("d{i}"));
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("f"), format!("file {i}")).unwrap();
            fs::write(p.join("empty"), b"").unwrap();
            std::os::unix::fs::symlink(format!("target {i}"), p.join("l")).unwrap();
        }
        let none: [&str; 0] = [];
        let mut out = Vec::new();
        let s = archive(&mut out, &src, &["d0"], &none, &ArchiveOptions::default()).unwrap();
        assert_eq!(s.entries, 4 * depth as u64);
        let dst = dir.path().join("dst");
        extract(out.as_slice(), &dst, &ExtractOptions::default()).unwrap();
        let mut p = dst.clone();
        for i in 0..depth {
            p.push(format!("d{i}"));
            assert_eq!(
                fs::read(p.join("f")).unwrap(),
                format!("file {i}").as_bytes()
            );
            assert_eq!(fs::read(p.join("empty")).unwrap(), b"");
            let target = fs::read_link(p.join("l")).unwrap();
            assert_eq!(target, Path::new(&format!("target {i}")));
        }
    }

    #[test]
    fn header_fields_match_the_tar_crate() {
        let values = [
            0u64,
            1,
            7,
            8,
            0o644,
            0o7777,
            1000,
            65534,
            (1 << 21) - 1,
            1 << 21,
            1_700_000_000,
            (1 << 33) - 1,
            1 << 33,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        for v in values {
            let mut ours = Header::new_gnu();
            let mut theirs = Header::new_gnu();
            set_numbers(&mut ours, (v & 0o7777) as u32, v, v, v, v);
            theirs.set_mode((v & 0o7777) as u32);
            theirs.set_uid(v);
            theirs.set_gid(v);
            theirs.set_mtime(v);
            theirs.set_size(v);
            let _ = ours.set_username("someone");
            let _ = theirs.set_username("someone");
            set_cksum(&mut ours);
            theirs.set_cksum();
            assert_eq!(ours.as_bytes()[..], theirs.as_bytes()[..], "value {v}");
        }
    }
}

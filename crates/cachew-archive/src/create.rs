//! Archive creation: walk, read and compress on separate threads.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use tar::{EntryType, Header};

use crate::digest::{DigestBuilder, TRAILER_MAGIC};
use crate::exclude::ExcludeSet;
use crate::frames::{FrameWriter, SKIPPABLE_BASE};
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
/// memory stays bounded by about `readers * (QUEUE + 2) * (BATCH_BYTES + INLINE_MAX)`.
const BATCH_BYTES: usize = 2 << 20;
/// Chunk size for streaming large files.
const CHUNK: usize = 1 << 20;

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

struct Item {
    /// Member name without a trailing slash.
    name: Vec<u8>,
    path: PathBuf,
    meta: Metadata,
    kind: Kind,
    /// blake3 of the contents of a file read whole, when digesting.
    hash: Option<[u8; 32]>,
}

enum Data {
    None,
    Inline(Vec<u8>),
    Stream(File),
    Link(Vec<u8>),
}

type Msg = Result<(Item, Data)>;
/// Reader output: some messages, and whether they finish the walker batch
/// they came from (so the writer knows when to move on to the next reader).
type OutBatch = (Vec<Msg>, bool);

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
        let meta = fs::symlink_metadata(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::IncludeNotFound {
                    path: inc.clone(),
                    base: base.to_path_buf(),
                }
            } else {
                Error::io("stat", &path, e)
            }
        })?;
        roots.push((name, path, meta));
    }

    let threads = crate::resolve_threads(opts.threads);
    let readers = if threads >= 4 { 2 } else { 1 };

    // pzstd's format: independent frames compressed on `threads` workers
    // (cheaper than zstd's own multithreading, and decodable in parallel).
    let counter = CountingWriter { inner: w, count: 0 };
    let enc = FrameWriter::new(
        BufWriter::with_capacity(1 << 20, counter),
        opts.level,
        threads,
    )
    .map_err(Error::Write)?;
    let mut out = TarOut {
        enc,
        pos: 0,
        entries: 0,
        names: NameCache::default(),
        scratch: Vec::with_capacity(4 * BLOCK),
        buf: Vec::new(),
        digest: opts.digest.then(|| Digesting {
            builder: DigestBuilder::new(),
            links: HashMap::new(),
        }),
    };
    let digest = opts.digest;

    std::thread::scope(|s| -> Result<ArchiveSummary> {
        let mut to_readers = Vec::new();
        let mut from_readers = Vec::new();
        for _ in 0..readers {
            let (itx, irx) = sync_channel::<Vec<Result<Item>>>(QUEUE);
            let (otx, orx) = sync_channel::<OutBatch>(QUEUE);
            to_readers.push(itx);
            from_readers.push(orx);
            s.spawn(move || reader(irx, otx, digest, cancel));
        }
        s.spawn(move || walker(roots, excludes, to_readers, cancel));

        // Walker batches go to the readers in turn; take them back in the same order.
        let mut seq = 0usize;
        'batches: loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let (msgs, last) = match from_readers[seq % readers].recv() {
                Ok(m) => m,
                Err(_) => break 'batches,
            };
            if last {
                seq += 1;
            }
            for msg in msgs {
                let (item, data) = msg?;
                out.entry(item, data)?;
            }
        }
        drop(from_readers);
        out.finish()
    })
}

fn walker(
    roots: Vec<(Vec<u8>, PathBuf, Metadata)>,
    excludes: &ExcludeSet,
    to_readers: Vec<SyncSender<Vec<Result<Item>>>>,
    cancel: &AtomicBool,
) {
    let mut w = Walker {
        excludes,
        to_readers,
        pending: Vec::with_capacity(BATCH_ITEMS),
        seq: 0,
        links: HashMap::new(),
        cancel,
    };
    for (name, path, meta) in roots {
        if w.visit(name, path, meta).is_err() {
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
    links: HashMap<(u64, u64), Vec<u8>>,
    cancel: &'a AtomicBool,
}

/// Returned when the consumer has gone away; the walk just stops.
struct Stop;

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

    fn visit(&mut self, name: Vec<u8>, path: PathBuf, meta: Metadata) -> Result<(), Stop> {
        if self.excludes.is_excluded(&name) {
            return Ok(());
        }
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_socket() {
            // GNU tar ignores sockets too ("socket ignored").
            return Ok(());
        } else {
            let first = if meta.nlink() > 1 {
                match self.links.get(&(meta.dev(), meta.ino())) {
                    Some(first) => Some(first.clone()),
                    None => {
                        self.links.insert((meta.dev(), meta.ino()), name.clone());
                        None
                    }
                }
            } else {
                None
            };
            match first {
                Some(target) => Kind::HardLink(target),
                None if ft.is_file() => Kind::File,
                None if ft.is_symlink() => Kind::Symlink,
                None if ft.is_char_device() => Kind::Char,
                None if ft.is_block_device() => Kind::Block,
                None => Kind::Fifo,
            }
        };
        let is_dir = matches!(kind, Kind::Dir);
        self.send(Ok(Item {
            name: name.clone(),
            path: path.clone(),
            meta,
            kind,
            hash: None,
        }))?;
        if !is_dir {
            return Ok(());
        }
        let mut children = Vec::new();
        let rd = match fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) => return self.send(Err(Error::io("read directory", &path, e))),
        };
        for ent in rd {
            match ent {
                Ok(ent) => children.push(ent),
                Err(e) => return self.send(Err(Error::io("read directory", &path, e))),
            }
        }
        // Sorted for reproducible archives (GNU tar uses readdir order).
        children.sort_unstable_by_key(|e| e.file_name());
        for ent in children {
            let child_path = ent.path();
            let meta = match ent.metadata() {
                Ok(m) => m,
                // A file deleted during the walk is skipped, as GNU tar does
                // (with a warning); anything else is an error.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return self.send(Err(Error::io("stat", &child_path, e))),
            };
            let mut child = Vec::with_capacity(name.len() + 1 + ent.file_name().len());
            child.extend_from_slice(&name);
            if !name.ends_with(b"/") {
                child.push(b'/');
            }
            child.extend_from_slice(ent.file_name().as_bytes());
            self.visit(child, child_path, meta)?;
        }
        Ok(())
    }
}

fn reader(
    rx: Receiver<Vec<Result<Item>>>,
    tx: SyncSender<OutBatch>,
    digest: bool,
    cancel: &AtomicBool,
) {
    for batch in rx {
        let mut out = Vec::with_capacity(batch.len());
        let mut bytes = 0usize;
        for item in batch {
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            let msg = item.and_then(|mut item| {
                let data = load(&item)?;
                if let (true, Data::Inline(d)) = (digest, &data) {
                    // Hashed here, beside the compressor threads, not on
                    // the thread that assembles the tar stream.
                    item.hash = Some(*blake3::hash(d).as_bytes());
                }
                Ok((item, data))
            });
            if let Ok((_, Data::Inline(d))) = &msg {
                bytes += d.len();
            }
            out.push(msg);
            if bytes >= BATCH_BYTES {
                if tx.send((std::mem::take(&mut out), false)).is_err() {
                    return;
                }
                bytes = 0;
            }
        }
        if tx.send((out, true)).is_err() {
            return;
        }
    }
}

fn load(item: &Item) -> Result<Data> {
    match item.kind {
        Kind::File => {
            let size = item.meta.len();
            if size == 0 {
                // Nothing to read: spare the open and close.
                return Ok(Data::Inline(Vec::new()));
            }
            let mut f = File::open(&item.path).map_err(|e| Error::io("open", &item.path, e))?;
            if size > INLINE_MAX {
                return Ok(Data::Stream(f));
            }
            // Room for one byte more than expected: a file that grew shows
            // up in the first read, and an unchanged one takes one read.
            let size = size as usize;
            let mut buf = vec![0u8; size + 1];
            let mut filled = 0;
            while filled < size {
                match f.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::io("read", &item.path, e)),
                }
            }
            if filled != size {
                return Err(Error::FileChanged {
                    path: item.path.clone(),
                    expected: size as u64,
                    actual: filled as u64,
                });
            }
            buf.truncate(size);
            Ok(Data::Inline(buf))
        }
        Kind::Symlink => {
            let target =
                fs::read_link(&item.path).map_err(|e| Error::io("read link", &item.path, e))?;
            Ok(Data::Link(target.into_os_string().into_vec()))
        }
        _ => Ok(Data::None),
    }
}

use std::os::unix::ffi::OsStringExt;

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
    scratch: Vec<u8>,
    buf: Vec<u8>,
    digest: Option<Digesting>,
}

/// The tree digest being computed alongside the archive.
struct Digesting {
    builder: DigestBuilder,
    /// Content hashes of regular files with more than one link, by member
    /// name, for the hard link entries that refer to them.
    links: HashMap<Vec<u8>, [u8; 32]>,
}

impl<W: Write> TarOut<W> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.enc.write_all(data).map_err(Error::Write)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    fn entry(&mut self, item: Item, data: Data) -> Result<()> {
        let digest_name = self.digest.is_some().then(|| item.name.clone());
        let meta = &item.meta;
        let mut h = Header::new_gnu();
        let mut name = item.name;
        let mut link: Option<Vec<u8>> = None;
        let mut body = Data::None;
        let mut item_hash = item.hash;
        let (ty, size) = match item.kind {
            Kind::Dir => {
                name.push(b'/');
                (EntryType::Directory, 0)
            }
            Kind::File => {
                let size = match &data {
                    Data::Inline(d) => d.len() as u64,
                    _ => meta.len(),
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
        self.scratch.clear();
        if let Some(l) = &link {
            if l.len() >= NAME_FIELD {
                tarfmt::long_link(&mut self.scratch, b'K', l);
            }
        }
        if name.len() >= NAME_FIELD {
            tarfmt::long_link(&mut self.scratch, b'L', &name);
        }
        tarfmt::set_name_field(&mut h, &name);
        if let Some(l) = &link {
            tarfmt::set_link_field(&mut h, l);
        }
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_size(size);
        h.set_entry_type(ty);
        if let Some(u) = self.names.user(meta.uid()) {
            let _ = h.set_username(u);
        }
        if let Some(g) = self.names.group(meta.gid()) {
            let _ = h.set_groupname(g);
        }
        if matches!(ty, EntryType::Char | EntryType::Block) {
            let rdev = meta.rdev();
            let _ = h.set_device_major(libc::major(rdev));
            let _ = h.set_device_minor(libc::minor(rdev));
        }
        h.set_cksum();
        self.scratch.extend_from_slice(h.as_bytes());
        match body {
            Data::Inline(d) => {
                let scratch = std::mem::take(&mut self.scratch);
                self.write(&scratch)?;
                self.scratch = scratch;
                self.write(&d)?;
                self.write(&[0u8; BLOCK][..tarfmt::padding(size)])?;
            }
            Data::Stream(f) => {
                let scratch = std::mem::take(&mut self.scratch);
                self.write(&scratch)?;
                self.scratch = scratch;
                let hash = self.stream(f, &item.path, size)?;
                item_hash = hash.or(item_hash);
            }
            Data::None | Data::Link(_) => {
                let scratch = std::mem::take(&mut self.scratch);
                self.write(&scratch)?;
                self.scratch = scratch;
            }
        }
        self.entries += 1;
        if let (Some(d), Some(name)) = (&mut self.digest, digest_name) {
            let mode = meta.mode();
            match ty {
                EntryType::Directory => d.builder.dir(&name, mode),
                EntryType::Symlink => d.builder.symlink(&name, link.as_deref().unwrap_or(b"")),
                EntryType::Regular => {
                    let hash = item_hash.unwrap_or_else(|| *blake3::hash(b"").as_bytes());
                    d.builder.file(&name, mode, size, &hash);
                    if meta.nlink() > 1 {
                        d.links.insert(name, hash);
                    }
                }
                // A hard link counts as the regular file it names.
                EntryType::Link if meta.file_type().is_file() => {
                    let hash = match d.links.get(link.as_deref().unwrap_or(b"")) {
                        Some(h) => *h,
                        None => hash_path(&item.path)?,
                    };
                    d.builder.file(&name, mode, meta.len(), &hash);
                }
                // Device nodes and FIFOs are not covered (extraction skips them).
                _ => {}
            }
        }
        Ok(())
    }

    /// Copies exactly `size` bytes of a large file, then its padding;
    /// returns the blake3 hash of the contents when digesting.
    fn stream(&mut self, mut f: File, path: &Path, size: u64) -> Result<Option<[u8; 32]>> {
        let mut hasher = self.digest.is_some().then(blake3::Hasher::new);
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(CHUNK, 0);
        let mut left = size;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            let n = match f.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(Error::FileChanged {
                        path: path.to_path_buf(),
                        expected: size,
                        actual: size - left,
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", path, e)),
            };
            self.write(&buf[..n])?;
            if let Some(h) = &mut hasher {
                h.update(&buf[..n]);
            }
            left -= n as u64;
        }
        match f.read(&mut buf[..1]) {
            Ok(0) => {}
            Ok(_) => {
                return Err(Error::FileChanged {
                    path: path.to_path_buf(),
                    expected: size,
                    actual: size + 1,
                })
            }
            Err(e) => return Err(Error::io("read", path, e)),
        }
        let pad = tarfmt::padding(size);
        buf[..pad].fill(0);
        self.write(&buf[..pad])?;
        self.buf = buf;
        Ok(hasher.map(|h| *h.finalize().as_bytes()))
    }

    fn finish(mut self) -> Result<ArchiveSummary> {
        // Two zero blocks end the archive; GNU tar then pads to a full record.
        let mut end = vec![0u8; 2 * BLOCK];
        let total = self.pos + end.len() as u64;
        end.resize(end.len() + ((RECORD - total % RECORD) % RECORD) as usize, 0);
        self.write(&end)?;
        let digest = self.digest.map(|d| d.builder.finish().digest);
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

/// blake3 of a file's contents, for a hard link whose first name was not
/// hashed as a regular file.
fn hash_path(path: &Path) -> Result<[u8; 32]> {
    let mut f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut h = blake3::Hasher::new();
    io::copy(&mut f, &mut h).map_err(|e| Error::io("read", path, e))?;
    Ok(*h.finalize().as_bytes())
}

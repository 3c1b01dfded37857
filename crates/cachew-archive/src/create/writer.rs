//! The tar writer: GNU-format headers (long names through `././@LongLink`
//! entries, hard links found in walk order by device and inode), file data
//! read inline or streamed straight into the compressor's chunks, the
//! end-of-archive blocks, and the tree digest fed as entries go by, written
//! as a trailer frame at the end.

use std::collections::{hash_map, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};

use tar::{EntryType, Header};

use super::header::{set_cksum, set_numbers};
use super::reader::{Data, CHUNK};
use crate::digest::{hash_file, DigestBuilder, TRAILER_MAGIC};
use crate::frames::{FrameWriter, SKIPPABLE_BASE};
use crate::tarfmt::{self, BLOCK, NAME_FIELD, RECORD};
use crate::walk::{Item, Kind};
use crate::{ArchiveSummary, Error, Result};

pub(super) struct CountingWriter<W> {
    pub(super) inner: W,
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

/// The tar stream being written: headers, data and the end-of-archive
/// blocks, compressed into a `FrameWriter`.
pub(super) struct TarOut<W: Write> {
    pub(super) enc: Enc<W>,
    /// Bytes of tar stream written so far.
    pub(super) pos: u64,
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
    pub(super) fn new(w: W, level: i32, threads: usize, digest: bool) -> Result<Self> {
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

    pub(super) fn write(&mut self, data: &[u8]) -> Result<()> {
        self.enc.write_all(data).map_err(Error::Write)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Writes the entry for `item`, with `hash` from its reader.
    pub(super) fn entry(
        &mut self,
        item: Item,
        mut data: Data,
        hash: Option<[u8; 32]>,
        buf: &[u8],
    ) -> Result<()> {
        if matches!(data, Data::Skip) {
            return Ok(());
        }
        let meta = item.meta;
        let kind = item.kind;
        // The first name, when this is a later name of a multiply linked inode.
        let mut hard_link: Option<Vec<u8>> = None;
        let mut link_hash = None;
        // Hard links are found here, in walk order: the reader may only now
        // have the metadata. A later link's contents, if read, are dropped.
        if !matches!(kind, Kind::Dir) && meta.nlink > 1 {
            match self.links.entry((meta.dev, meta.ino)) {
                hash_map::Entry::Occupied(first) => {
                    hard_link = Some(first.get().name.clone());
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
        let mut item_hash = hash;
        let (ty, size) = match (hard_link, kind) {
            (Some(t), _) => {
                link = Some(t);
                (EntryType::Link, 0)
            }
            (None, Kind::Dir) => (EntryType::Directory, 0),
            (None, Kind::File) => {
                let size = match &data {
                    Data::Inline(r) => r.len() as u64,
                    _ => meta.size,
                };
                body = data;
                (EntryType::Regular, size)
            }
            (None, Kind::Symlink) => {
                if let Data::Link(t) = data {
                    link = Some(t);
                }
                (EntryType::Symlink, 0)
            }
            (None, Kind::Char) => (EntryType::Char, 0),
            (None, Kind::Block) => (EntryType::Block, 0),
            (None, Kind::Fifo) => (EntryType::Fifo, 0),
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
            // `dev_t` is 32 bits on macOS and the BSDs; the number came
            // from there, so the cast gives it back unchanged.
            let rdev = meta.rdev as rustix::fs::Dev;
            let _ = h.set_device_major(rustix::fs::major(rdev));
            let _ = h.set_device_minor(rustix::fs::minor(rdev));
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
                EntryType::Link if meta.file_type() == crate::sys::FileType::RegularFile => {
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
    pub(super) fn stream(
        &mut self,
        mut f: File,
        item: &Item,
        size: u64,
    ) -> Result<Option<[u8; 32]>> {
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

    pub(super) fn finish(mut self) -> Result<ArchiveSummary> {
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

#[cfg(test)]
mod tests;

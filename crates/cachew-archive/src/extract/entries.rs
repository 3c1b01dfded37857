//! The tar entry reader: turns a tar stream into entries (header fields,
//! name, link target, data size), applying GNU long names and pax records,
//! checking header checksums and requiring the end-of-archive block, with
//! metadata held in memory limited to [`META_MAX`] bytes. Generic over
//! [`BufRead`], so it reads a byte slice as well as a `FrameReader`; what
//! becomes of an entry is the caller's business (`mod.rs`), and so is its
//! data, which the caller reads or skips through [`Entries::input`].

use std::collections::HashMap;
use std::io::{self, BufRead};

use crate::tarfmt::{self, BLOCK};
use crate::{Error, Result};

/// Limit for GNU long names and pax headers, which are held in memory.
pub(super) const META_MAX: u64 = 1 << 20;

/// An entry's numeric header fields (after pax overrides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: i64,
}

/// One tar entry, its data not yet read.
#[derive(Debug)]
pub(super) struct Entry {
    /// Offset of its header block in the tar stream.
    pub(super) offset: u64,
    /// The type flag (`b'0'`, `b'5'`, …).
    pub(super) typ: u8,
    /// The name as stored (long name or pax `path` if there was one).
    pub(super) name: Vec<u8>,
    /// The link target, if any (long link, pax `linkpath` or header field).
    pub(super) link: Option<Vec<u8>>,
    /// Bytes of data that follow the header (before padding).
    pub(super) size: u64,
    pub(super) meta: Meta,
    /// For a sparse file, how its data maps onto the file (`special.rs`).
    pub(super) sparse: Option<Sparse>,
    /// For a device node, its major and minor numbers.
    pub(super) dev: (u32, u32),
}

/// Where a sparse file's data goes: the data holds the listed segments
/// one after another; the rest of the file is holes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sparse {
    /// pax `GNU.sparse` 1.0 (GNU tar `--format=posix`, bsdtar): the map is
    /// at the start of the data, in decimal lines padded to a block.
    Pax1 { real_size: u64 },
    /// The map came with the header: GNU's own `S` entries (old GNU
    /// format, `tar -S`), pax `GNU.sparse.map` (0.1).
    Map {
        real_size: u64,
        map: Vec<(u64, u64)>,
    },
}

/// Most segments of a sparse map held in memory (16 bytes each).
pub(super) const SPARSE_SEGMENTS_MAX: usize = 1 << 20;

/// Pax records that carry what extraction does not restore (extended
/// attributes, ACLs, file flags, as macOS and bsdtar write them); they are
/// left out with a debug line.
const IGNORED_PAX: [&[u8]; 6] = [
    b"SCHILY.xattr.",
    b"LIBARCHIVE.xattr.",
    b"SCHILY.acl.",
    b"LIBARCHIVE.acl.",
    b"SCHILY.fflags",
    b"LIBARCHIVE.creationtime",
];

/// Reads the entries of a tar stream one after another.
pub(super) struct Entries<R: BufRead> {
    input: Input<R>,
    block: [u8; BLOCK],
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: HashMap<Vec<u8>, Vec<u8>>,
    /// Bytes of pax records held: several pax headers in a row share the
    /// [`META_MAX`] limit, so a run of them cannot grow memory.
    pax_bytes: u64,
}

impl<R: BufRead> Entries<R> {
    #[cfg(test)]
    pub(super) fn new(r: R) -> Self {
        Entries::with_limit(r, None)
    }

    /// Like [`Entries::new`], stopping with [`Error::LimitExceeded`] once
    /// more than `max_size` bytes have been read.
    pub(super) fn with_limit(r: R, max_size: Option<u64>) -> Self {
        Entries {
            input: Input {
                r,
                pos: 0,
                limit: max_size.unwrap_or(u64::MAX),
            },
            block: [0u8; BLOCK],
            long_name: None,
            long_link: None,
            pax: HashMap::new(),
            pax_bytes: 0,
        }
    }

    /// The stream, to read or skip the current entry's data and padding.
    pub(super) fn input(&mut self) -> &mut Input<R> {
        &mut self.input
    }

    /// The underlying reader.
    pub(super) fn get_mut(&mut self) -> &mut R {
        &mut self.input.r
    }

    /// The next entry, or `None` after the end-of-archive block (the
    /// stream is then read to its end, so a corrupt tail is noticed).
    /// `check` runs before each header block is read, metadata entries
    /// included, so the caller can stop a long run of them.
    pub(super) fn next_entry(
        &mut self,
        mut check: impl FnMut() -> Result<()>,
    ) -> Result<Option<Entry>> {
        loop {
            check()?;
            if let Some(entry) = self.header()? {
                return Ok(entry);
            }
        }
    }

    /// Reads one header: `Some(None)` at the end of the archive,
    /// `Some(Some(entry))` for an entry, `None` for a metadata entry
    /// (long name, long link, pax header), which is taken in.
    fn header(&mut self) -> Result<Option<Option<Entry>>> {
        let input = &mut self.input;
        let block = &mut self.block;
        let (long_name, long_link, pax) = (&mut self.long_name, &mut self.long_link, &mut self.pax);
        let pax_bytes = &mut self.pax_bytes;
        let offset = input.pos;
        input.read_exact(block, "a tar header or the end-of-archive marker")?;
        if tarfmt::is_zero_block(block) {
            if long_name.is_some() || long_link.is_some() || !pax.is_empty() {
                return Err(Error::Corrupt {
                    offset,
                    reason: "archive ends after a long-name or pax header".into(),
                });
            }
            input.drain()?;
            return Ok(Some(None));
        }
        if !tarfmt::checksum_ok(block) {
            return Err(Error::Corrupt {
                offset,
                reason: "header checksum mismatch".into(),
            });
        }
        let block = &*block;
        let h = tar::Header::from_byte_slice(block);
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
        if let b'L' | b'K' | b'x' | b'g' = typ {
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
                        *long_name = Some(data);
                    } else {
                        *long_link = Some(data);
                    }
                }
                b'x' => {
                    *pax_bytes += size;
                    if *pax_bytes > META_MAX {
                        return Err(Error::Corrupt {
                            offset,
                            reason: format!(
                                "pax headers of {pax_bytes} bytes for one entry exceed the \
                                 {META_MAX}-byte limit"
                            ),
                        });
                    }
                    let recs = tarfmt::parse_pax(&data)
                        .map_err(|reason| Error::Corrupt { offset, reason })?;
                    pax.extend(recs);
                }
                _ => {} // Global pax headers carry nothing we use.
            }
            return Ok(None);
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
        let dev = if matches!(typ, b'3' | b'4') {
            (
                num(
                    329..337,
                    "devmajor",
                    h.device_major().map(|d| d.unwrap_or(0).into()),
                )? as u32,
                num(
                    337..345,
                    "devminor",
                    h.device_minor().map(|d| d.unwrap_or(0).into()),
                )? as u32,
            )
        } else {
            (0, 0)
        };
        let (name, mut sparse) = pax_sparse(pax, name, offset)?;
        if typ == b'S' {
            sparse = Some(gnu_sparse(input, block, offset)?);
        }
        let ignored = pax
            .keys()
            .filter(|k| IGNORED_PAX.iter().any(|p| k.starts_with(p)))
            .count();
        if ignored > 0 {
            tracing::debug!(
                entry = %crate::escape_name(&name),
                records = ignored,
                "extended attributes, ACLs or file flags in pax records not restored"
            );
        }
        pax.clear();
        *pax_bytes = 0;
        Ok(Some(Some(Entry {
            offset,
            typ,
            name,
            link,
            size,
            meta,
            sparse,
            dev,
        })))
    }
}

/// The name and sparse map the `GNU.sparse.*` pax records give: 1.0 (the
/// map is in the data) and 0.1 (`GNU.sparse.map`). 0.0, with repeated
/// `GNU.sparse.offset`/`numbytes` records, which no current writer makes,
/// is refused.
fn pax_sparse(
    pax: &HashMap<Vec<u8>, Vec<u8>>,
    name: Vec<u8>,
    offset: u64,
) -> Result<(Vec<u8>, Option<Sparse>)> {
    if !pax.keys().any(|k| k.starts_with(b"GNU.sparse.")) {
        return Ok((name, None));
    }
    let get = |k: &str| pax.get(k.as_bytes()).map(Vec::as_slice);
    let bad = |what: &str| Error::Corrupt {
        offset,
        reason: format!("bad pax sparse record: {what}"),
    };
    let real_name = get("GNU.sparse.name").map(<[u8]>::to_vec).unwrap_or(name);
    let version = (get("GNU.sparse.major"), get("GNU.sparse.minor"));
    let sparse = match version {
        (Some(b"1"), Some(b"0")) => {
            let real = get("GNU.sparse.realsize").and_then(parse_dec);
            Sparse::Pax1 {
                real_size: real.ok_or_else(|| bad("no GNU.sparse.realsize"))?,
            }
        }
        (None, None) if get("GNU.sparse.map").is_some() => {
            let real = get("GNU.sparse.size").or(get("GNU.sparse.realsize"));
            let real_size = real.and_then(parse_dec).ok_or_else(|| bad("no size"))?;
            let text = get("GNU.sparse.map").unwrap_or_default();
            let nums: Option<Vec<u64>> = text.split(|&c| c == b',').map(parse_dec).collect();
            let nums = nums
                .filter(|n| n.len() % 2 == 0)
                .ok_or_else(|| bad("map"))?;
            if nums.len() / 2 > SPARSE_SEGMENTS_MAX {
                return Err(bad("too many segments"));
            }
            let map = nums.chunks(2).map(|p| (p[0], p[1])).collect();
            Sparse::Map { real_size, map }
        }
        _ => {
            return Err(Error::Unsupported {
                entry: String::from_utf8_lossy(&real_name).into_owned(),
                what: "pax sparse file of format 0.0".into(),
            })
        }
    };
    Ok((real_name, Some(sparse)))
}

/// The map of an old-GNU sparse (`S`) entry: four segments in the header,
/// more in extension blocks that follow it while `isextended` is set, and
/// the real size.
fn gnu_sparse<R: BufRead>(input: &mut Input<R>, block: &[u8], offset: u64) -> Result<Sparse> {
    let bad = || Error::Corrupt {
        offset,
        reason: "bad GNU sparse header".into(),
    };
    let mut map = Vec::new();
    let take = |fields: &[u8], map: &mut Vec<(u64, u64)>| -> Result<()> {
        for seg in fields.chunks_exact(24) {
            if seg[0] == 0 {
                break;
            }
            let off = gnu_num(&seg[..12]).ok_or_else(bad)?;
            let len = gnu_num(&seg[12..]).ok_or_else(bad)?;
            if map.len() >= SPARSE_SEGMENTS_MAX {
                return Err(bad());
            }
            map.push((off, len));
        }
        Ok(())
    };
    take(&block[386..482], &mut map)?;
    let real_size = gnu_num(&block[483..495]).ok_or_else(bad)?;
    let mut extended = block[482] != 0;
    while extended {
        let ext = input.read_vec(BLOCK, "a GNU sparse extension block")?;
        take(&ext[..504], &mut map)?;
        extended = ext[504] != 0;
    }
    Ok(Sparse::Map { real_size, map })
}

/// A GNU numeric field: octal (NUL or space terminated), or base-256 when
/// the high bit of the first byte is set.
fn gnu_num(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let digits: &[u8] = field
        .split(|&c| c == 0 || c == b' ')
        .find(|s| !s.is_empty())
        .unwrap_or(b"0");
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()
}

fn parse_dec(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// The decompressed tar stream with its offset.
pub(super) struct Input<R: BufRead> {
    r: R,
    /// Bytes consumed so far.
    pub(super) pos: u64,
    /// Most bytes that may be consumed (`ExtractOptions::max_size`).
    limit: u64,
}

impl<R: BufRead> Input<R> {
    fn check_limit(&self) -> Result<()> {
        if self.pos > self.limit {
            return Err(Error::limit(format!(
                "the unpacked archive is over the {}-byte limit (max size)",
                self.limit
            )));
        }
        Ok(())
    }

    pub(super) fn fill(&mut self, expected: &'static str) -> Result<&[u8]> {
        self.check_limit()?;
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

    pub(super) fn consume(&mut self, n: usize) {
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
    pub(super) fn read_vec(&mut self, n: usize, expected: &'static str) -> Result<Vec<u8>> {
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
    pub(super) fn read_chunk(&mut self, n: usize, expected: &'static str) -> Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        let mut done = 0;
        while done < n {
            self.check_limit()?;
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

    pub(super) fn skip(&mut self, mut n: u64, expected: &'static str) -> Result<()> {
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
            self.check_limit()?;
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

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod tests;

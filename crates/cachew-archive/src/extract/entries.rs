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
}

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
        if pax.keys().any(|k| k.starts_with(b"GNU.sparse")) {
            return Err(Error::Unsupported {
                entry: crate::escape_name(&name),
                what: "pax sparse file".into(),
            });
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
        })))
    }
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

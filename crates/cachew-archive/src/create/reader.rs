//! The reader threads: they take the walker's batches in turn, open each
//! regular file relative to its directory, take its metadata from the open
//! file and read it whole into a recycled batch buffer (hashing it when
//! digesting), read symlink targets, and hand the results to the writer.
//! Files over [`INLINE_MAX`] are left for the writer to stream.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use rustix::fs::OFlags;

use crate::sys::{self, FileType};
use crate::walk::{Item, Kind, Meta};
use crate::{Error, Result};

/// Files up to this size are read whole by a reader thread; larger ones are
/// streamed by the writer in chunks, so memory stays bounded.
pub(super) const INLINE_MAX: u64 = 512 * 1024;
/// Batches queued between threads. Items travel in batches because a
/// hand-over per file costs a wake-up per file.
pub(super) const QUEUE: usize = 4;
/// Items per batch.
pub(super) const BATCH_ITEMS: usize = 64;
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
pub(super) const CHUNK: usize = 256 << 10;

/// What a reader got of an entry for the writer.
pub(super) enum Data {
    None,
    /// The file was deleted since its directory was read: no entry.
    Skip,
    /// Where the contents are in the batch's buffer.
    Inline(Range<usize>),
    Stream(File),
    Link(Vec<u8>),
}

/// An entry, what was read of it, and the blake3 hash of the contents of
/// a file read whole, when digesting.
pub(super) type Msg = Result<(Item, Data, Option<[u8; 32]>)>;

/// Reader output: some messages, the buffer holding the contents of the
/// files read whole, and whether they finish the walker batch they came
/// from (so the writer knows when to move on to the next reader).
pub(super) struct OutBatch {
    pub(super) msgs: Vec<Msg>,
    pub(super) buf: Vec<u8>,
    pub(super) last: bool,
}

/// An output batch's message list (emptied) and buffer, handed back to the
/// reader for reuse.
pub(super) type Spare = (Vec<Msg>, Vec<u8>);

pub(super) fn reader(
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
                let hash = match (digest, &data) {
                    // Hashed here, beside the compressor threads, not on
                    // the thread that assembles the tar stream.
                    (true, Data::Inline(r)) => Some(*blake3::hash(&buf[r.clone()]).as_bytes()),
                    _ => None,
                };
                Ok((item, data, hash))
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
            let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
            let mut f = match item.at(|dir, name| sys::open_at(dir, name, flags)) {
                Ok(fd) => File::from(fd),
                // Deleted since its directory was read: skipped, as GNU tar
                // does (with a warning).
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Data::Skip),
                Err(e) => {
                    // An empty file is archived even if it cannot be read.
                    if let Ok(st) = item.at(sys::lstat_at) {
                        let meta = Meta::from_stat(&st);
                        if meta.file_type() == FileType::RegularFile && meta.size == 0 {
                            item.meta = meta;
                            return Ok(Data::Inline(*pos..*pos));
                        }
                    }
                    return Err(Error::io("open", item.path(), e));
                }
            };
            let st = sys::fstat(&f).map_err(|e| Error::io("stat", item.path(), e))?;
            item.meta = Meta::from_stat(&st);
            if item.meta.file_type() != FileType::RegularFile {
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

#[cfg(test)]
mod tests;

//! Safe extraction: the public entry point. One thread parses
//! ([`entries`]) and decompresses, except the frames of pzstd-format
//! streams, which `FrameReader` decodes on worker threads; it decides what
//! each entry becomes under the extraction policy ([`policy`]) and hands
//! regular files to a small pool of workers ([`pool`]).
//!
//! Safety invariants (see the crate docs for the policy as seen by users):
//! - Entry names are sanitized lexically: absolute names and `..` are refused.
//! - Every parent directory of an entry is checked with `lstat` (or created)
//!   by the parsing thread before anything is created in it; a file in the
//!   way is replaced by a real directory, and a symlink is followed only if
//!   it resolves, below the target, to a directory inside it (otherwise
//!   the entry is refused). The first time one is followed, every earlier
//!   entry takes effect first, and from then on each entry before the next
//!   (two names may now reach one file).
//! - Files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, after unlinking
//!   whatever was there, so no existing symlink or hard link is written through.
//! - Symlinks and hard links are created only at flush points, when no
//!   worker is busy, and the directory cache is invalidated for what they
//!   replace. Hard link sources are opened component by component with
//!   `O_NOFOLLOW`, so a link can never reach outside the target.
//! - Directory modes and times are applied at the end through descriptors
//!   opened the same way.
//! - Entries take effect in archive order: before an entry at a name (or
//!   below a name) where a file may still be in a worker's queue or a link
//!   is pending, the parser waits for the workers or flushes the links
//!   ([`policy::Order`]).

mod entries;
mod policy;
mod pool;
mod special;

use std::fs;
use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::digest::TreeDigest;
use crate::frames::{FrameReader, STREAM_BUFFER};
use crate::tarfmt;
use crate::{Error, ExtractOptions, ExtractSummary, Result};

use entries::Entries;
use policy::{Extractor, Order};
use pool::{FileJob, FileSink, Job, Pool, CHUNK};

/// Files up to this size are read whole and handed to a worker in one message.
const INLINE_MAX: u64 = 256 * 1024;
/// Symlinks and hard links are created in batches of at most this many.
const LINK_BATCH: usize = 16 * 1024;
/// How many skipped entry names the summary keeps.
const SKIPPED_NAMES: usize = 16;
/// Most threads decoding pzstd frames: one parsing thread consumes what
/// they produce, so more would mostly hold more frames in memory.
const DECODE_THREADS_MAX: usize = 4;

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
    let mut entries = Entries::with_limit(decoder, opts.max_size);
    let mut ex = Extractor::new(target);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    let result = std::thread::scope(|s| -> Result<()> {
        let (mut pool, handles) = pool::start(s, workers, &failed, &first_error);
        let r = parse(&mut entries, &mut ex, &mut pool, cancel);
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
    ex.summary.skippable_frames = entries.get_mut().take_skippable();
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

/// Reads every entry and does what it says, within the policy.
fn parse<R: BufRead>(
    entries: &mut Entries<R>,
    ex: &mut Extractor<'_>,
    pool: &mut Pool<'_>,
    cancel: &AtomicBool,
) -> Result<()> {
    let mut sink_buf: Vec<u8> = Vec::new();
    loop {
        let check = || {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            if pool.failed.load(Ordering::Relaxed) {
                return Err(pool.worker_error());
            }
            Ok(())
        };
        let Some(entry) = entries.next_entry(check)? else {
            return Ok(());
        };
        let entries::Entry {
            offset,
            typ,
            name,
            link,
            size,
            meta,
            sparse,
            dev,
        } = entry;
        let input = entries.input();
        ex.summary.entries += 1;
        let rel = policy::sanitize(&name)?;
        // Every kind that makes something at `rel` is ordered: a later
        // entry wins whatever the kinds, as with GNU tar.
        let dir = matches!(typ, b'5' | b'D');
        let makes = dir
            || matches!(
                typ,
                b'0' | 0 | b'7' | b'S' | b'1' | b'2' | b'3' | b'4' | b'6'
            );
        let order = if makes {
            ex.order(&rel, dir)
        } else {
            Order::Now
        };
        if order != Order::Now {
            pool.barrier()?;
            ex.files_done();
            if order == Order::Flush {
                ex.flush_links()?;
            }
        }
        if makes && !rel.as_os_str().is_empty() && !ex.parents_ready(&rel, dir)? {
            // A symlink in a parent position is to be followed: everything
            // before this entry takes effect first.
            pool.barrier()?;
            ex.files_done();
            ex.flush_links()?;
            let ready = ex.parents_ready(&rel, dir)?;
            debug_assert!(ready, "nothing is pending, so a symlink may be followed");
        }
        if let Some(sp) = sparse {
            special::sparse(input, ex, pool, &rel, &name, offset, meta, size, sp)?;
            continue;
        }
        match typ {
            b'0' | 0 | b'7' => {
                policy::not_root(&rel, &name)?;
                let (path, fixups) = ex.file(&rel, &meta)?;
                if pool.workers() == 0 {
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
                    if ex.file_in_flight(&rel) {
                        pool.barrier()?;
                        ex.files_done();
                    }
                    let w = pool::route(&rel, pool.workers());
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
                ex.dir(rel, meta)?;
                ex.summary.directories += 1;
            }
            b'2' | b'1' => {
                input.skip(size + tarfmt::padding(size) as u64, "link data")?;
                policy::not_root(&rel, &name)?;
                let target = link.unwrap_or_default();
                if target.is_empty() {
                    return Err(Error::Corrupt {
                        offset,
                        reason: format!("link `{}` has an empty target", crate::escape_name(&name)),
                    });
                }
                ex.defer_link(rel, name, typ == b'1', target, meta)?;
                let (count, bytes) = ex.pending_links();
                if count >= LINK_BATCH || bytes >= policy::LINK_BYTES {
                    pool.barrier()?;
                    ex.files_done();
                    ex.flush_links()?;
                }
            }
            b'6' => {
                input.skip(size + tarfmt::padding(size) as u64, "FIFO data")?;
                special::fifo(ex, pool, &rel, &name, meta)?;
            }
            b'3' | b'4' => {
                input.skip(size + tarfmt::padding(size) as u64, "device data")?;
                if special::devices_created(ex.root()) {
                    special::device(ex, pool, &rel, &name, typ == b'4', dev, meta)?;
                } else {
                    // Not root: skipped, as GNU tar cannot create them
                    // either, with one warning for the whole extraction.
                    special::warn_device_once(&ex.summary, &name);
                    ex.summary.skipped += 1;
                    if ex.summary.skipped_names.len() < SKIPPED_NAMES {
                        ex.summary.skipped_names.push(crate::escape_name(&name));
                    }
                }
            }
            b'V' => {
                ex.summary.entries -= 1;
                input.skip(size + tarfmt::padding(size) as u64, "volume label data")?;
            }
            b'S' => {
                return Err(Error::Unsupported {
                    entry: crate::escape_name(&name),
                    what: "GNU sparse file".into(),
                })
            }
            other => {
                return Err(Error::Unsupported {
                    entry: crate::escape_name(&name),
                    what: format!("entry type `{}`", other.escape_ascii()),
                })
            }
        }
    }
}

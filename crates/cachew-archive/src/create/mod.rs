//! Archive creation: the public entry point, which runs the walk
//! ([`crate::walk`]) on its own thread, one or two [`reader`] threads, and
//! the [`writer`] on the caller's thread, and moves batches between them in
//! walk order.

mod header;
mod reader;
mod writer;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, SyncSender};

use crate::exclude::ExcludeSet;
use crate::walk::{self, Item, Root, Sink, Stop};
use crate::{ArchiveOptions, ArchiveSummary, Error, Result};

use reader::{reader, OutBatch, Spare, BATCH_ITEMS, QUEUE};
use writer::TarOut;

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
    let roots = walk::roots(base, includes)?;

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
                let (item, data, hash) = msg?;
                out.entry(item, data, hash, &buf)?;
            }
            // The reader may be done: then the buffers are just dropped.
            let _ = back_to_readers[r].send((msgs, buf));
        }
        drop(from_readers);
        out.finish()
    })
}

/// The walker thread: walks `roots`, handing batches to the readers in turn.
fn walker(
    roots: Vec<Root>,
    excludes: &ExcludeSet,
    to_readers: Vec<SyncSender<Vec<Result<Item>>>>,
    cancel: &AtomicBool,
) {
    let mut sink = ToReaders {
        to_readers,
        pending: Vec::with_capacity(BATCH_ITEMS),
        seq: 0,
        cancel,
    };
    // Regular files are `fstat`ed by the readers, once open.
    if walk::walk(roots, excludes, false, &mut sink).is_ok() {
        let _ = sink.flush();
    }
}

/// The walker's entries, in batches, to the readers in turn.
struct ToReaders<'a> {
    to_readers: Vec<SyncSender<Vec<Result<Item>>>>,
    pending: Vec<Result<Item>>,
    seq: usize,
    cancel: &'a AtomicBool,
}

impl Sink for ToReaders<'_> {
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
}

impl ToReaders<'_> {
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
}

//! The writer pool: worker threads that create regular files from the
//! jobs the parsing thread hands them in batches (a file whole, or its
//! first part and then chunks), writing long runs of zeros as holes and
//! applying owner, mode and time through the open file. A path always goes
//! to the same worker, so duplicate entries are written in archive order.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;
use std::thread::{Scope, ScopedJoinHandle};

use super::entries::Meta;
use super::policy::{self, Fixups};
use crate::sys;
use crate::{Error, Result};

/// Larger files are handed over in chunks of this size.
pub(super) const CHUNK: usize = 256 * 1024;
/// Batches queued per worker; a batch holds at most `BATCH_JOBS` jobs or
/// about `BATCH_BYTES` of data, so memory is bounded by about
/// `workers * (QUEUE + 2) * BATCH_BYTES`.
const QUEUE: usize = 4;
/// Jobs per batch: handing files over one by one costs a wake-up each.
const BATCH_JOBS: usize = 128;
/// Data bytes per batch.
const BATCH_BYTES: usize = 1 << 20;

static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// A file to create, with its first data (all of it when `last`).
pub(super) struct FileJob {
    pub(super) path: PathBuf,
    pub(super) meta: Meta,
    pub(super) fixups: Fixups,
    pub(super) size: u64,
    pub(super) data: Vec<u8>,
    pub(super) last: bool,
}

pub(super) enum Job {
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
pub(super) struct FileSink {
    file: File,
    path: PathBuf,
    meta: Meta,
    fixups: Fixups,
    pos: u64,
    written_end: u64,
}

impl FileSink {
    pub(super) fn create(path: PathBuf, meta: Meta, fixups: Fixups) -> Result<Self> {
        let file = policy::create_file(&path, meta.mode)?;
        Ok(FileSink {
            file,
            path,
            meta,
            fixups,
            pos: 0,
            written_end: 0,
        })
    }

    pub(super) fn write(&mut self, data: &[u8]) -> Result<()> {
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

    /// Leaves a hole up to `pos`, for a sparse file's gaps.
    pub(super) fn hole_to(&mut self, pos: u64) {
        self.pos = self.pos.max(pos);
    }

    pub(super) fn finish(self) -> Result<()> {
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

/// Per-worker counters.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) files: u64,
    pub(super) bytes: u64,
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

/// Starts `workers` workers in `s` (none: the caller writes files itself);
/// they record the first error in `first_error` and set `failed`.
pub(super) fn start<'scope, 'env>(
    s: &'scope Scope<'scope, 'env>,
    workers: usize,
    failed: &'env AtomicBool,
    first_error: &'env Mutex<Option<Error>>,
) -> (Pool<'env>, Vec<ScopedJoinHandle<'scope, Counts>>) {
    let mut txs = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (tx, rx) = sync_channel::<Vec<Job>>(QUEUE);
        txs.push(tx);
        handles.push(s.spawn(move || worker(rx, failed, first_error)));
    }
    let pool = Pool {
        batches: (0..txs.len()).map(|_| Vec::new()).collect(),
        batch_bytes: vec![0; txs.len()],
        txs,
        failed,
        first_error,
    };
    (pool, handles)
}

/// The parsing thread's end of the workers' queues.
pub(super) struct Pool<'a> {
    txs: Vec<SyncSender<Vec<Job>>>,
    batches: Vec<Vec<Job>>,
    batch_bytes: Vec<usize>,
    pub(super) failed: &'a AtomicBool,
    first_error: &'a Mutex<Option<Error>>,
}

impl Pool<'_> {
    /// Workers running (0: files are written by the caller).
    pub(super) fn workers(&self) -> usize {
        self.txs.len()
    }

    pub(super) fn worker_error(&self) -> Error {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or(Error::Panicked("extraction worker".into()))
    }

    /// Queues a job for worker `i`, handing over the batch when it is full.
    pub(super) fn send(&mut self, i: usize, job: Job) -> Result<()> {
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
    pub(super) fn barrier(&mut self) -> Result<()> {
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

/// Routes a path to a worker; the same path always goes to the same worker
/// so duplicate entries are written in archive order.
pub(super) fn route(path: &Path, n: usize) -> usize {
    // FNV-1a: stable across runs and cheap for short keys.
    let mut x: u64 = 0xcbf29ce484222325;
    for &b in path.as_os_str().as_bytes() {
        x ^= u64::from(b);
        x = x.wrapping_mul(0x100000001b3);
    }
    (x % n as u64) as usize
}

#[cfg(test)]
mod tests;

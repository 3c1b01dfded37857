//! The pzstd-format writer: [`FrameWriter`] cuts its input into chunks,
//! has them compressed as independent frames (inline or on its pool of
//! worker threads) and writes the frames, each after its size header, in
//! order.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::ffi::{compress_chunk, Cctx};
use super::format::{pzstd_header, repeat, sticky, CHUNK_SIZE, SKIPPABLE_MAGIC};

/// Compresses one chunk into `out` (cleared first) as one zstd frame.
type CompressFn = fn(&mut Cctx, &[u8], &mut Vec<u8>) -> io::Result<()>;

/// A buffer of [`CHUNK_SIZE`] initialised bytes, of which the first `len`
/// are the chunk. Initialised once (by `calloc`, so lazily), it can be read
/// into directly: see [`FrameWriter::fill_with`].
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            buf: vec![0; CHUNK_SIZE],
            len: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_full(&self) -> bool {
        self.len == CHUNK_SIZE
    }
}

/// A chunk to compress, with the buffer for its frame and where to reply.
struct CompressJob {
    chunk: Chunk,
    out: Vec<u8>,
    reply: SyncSender<io::Result<(Chunk, Vec<u8>)>>,
}

type CompressReply = Receiver<io::Result<(Chunk, Vec<u8>)>>;

struct WriterPool {
    jobs: Option<SyncSender<CompressJob>>,
    /// Replies for the chunks handed out, oldest first.
    pending: VecDeque<CompressReply>,
    /// Empty chunk and frame buffers, for reuse.
    spare: Vec<(Chunk, Vec<u8>)>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl WriterPool {
    /// Stops the workers (after the chunk each is compressing) and waits for them.
    fn shut_down(&mut self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        self.jobs = None;
        let mut ok = true;
        for h in self.handles.drain(..) {
            ok &= h.join().is_ok();
        }
        ok
    }
}

enum Engine {
    /// `threads == 1`: chunks are compressed on the caller's thread.
    Inline {
        compressor: Cctx,
        out: Vec<u8>,
    },
    Pool(WriterPool),
}

/// Writes a zstd stream in pzstd's format: the input is cut into
/// [`CHUNK_SIZE`] chunks, each compressed as an independent frame (with
/// checksum and content size) and preceded by pzstd's 12-byte skippable
/// frame giving its compressed size. `zstd -d` and `pzstd -d` read it.
///
/// With `threads > 1`, full chunks are compressed by that many worker
/// threads, each with its own compressor, while the caller fills the next
/// chunk; frames are written to the inner writer, on the caller's thread,
/// strictly in order. At most `threads` chunks are being compressed or
/// waiting to be written, plus the one being filled, and all buffers are
/// reused.
///
/// Call [`finish`](Self::finish) to complete the stream; dropping the
/// writer without it stops the workers and leaves the stream incomplete.
/// After an error (from a worker or from the inner writer) every later call
/// fails with the same error.
pub(crate) struct FrameWriter<W: Write> {
    inner: W,
    chunk: Chunk,
    engine: Engine,
    compress: CompressFn,
    /// Whether a zstd frame has been started: an empty stream still gets one.
    framed: bool,
    failed: Option<(io::ErrorKind, String)>,
}

impl<W: Write> FrameWriter<W> {
    /// A writer compressing at `level` on `threads` threads (1 = on the
    /// caller's thread only; 0 counts as 1). The format is the same either way.
    pub(crate) fn new(inner: W, level: i32, threads: usize) -> io::Result<Self> {
        Self::with_compress_fn(inner, level, threads, compress_chunk)
    }

    /// [`new`](Self::new) with another compression function (the tests
    /// inject failures).
    pub(super) fn with_compress_fn(
        inner: W,
        level: i32,
        threads: usize,
        compress: CompressFn,
    ) -> io::Result<Self> {
        let compressor = || Cctx::new(level);
        let engine = if threads <= 1 {
            Engine::Inline {
                compressor: compressor()?,
                out: Vec::new(),
            }
        } else {
            let (tx, rx) = sync_channel::<CompressJob>(threads);
            let rx = Arc::new(Mutex::new(rx));
            let stop = Arc::new(AtomicBool::new(false));
            let mut pool = WriterPool {
                jobs: Some(tx),
                pending: VecDeque::with_capacity(threads),
                spare: Vec::new(),
                stop: stop.clone(),
                handles: Vec::with_capacity(threads),
            };
            for i in 0..threads {
                let mut c = compressor()?;
                let (rx, stop) = (rx.clone(), stop.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("cachew-zstd-{i}"))
                    .spawn(move || compress_worker(&mut c, &rx, &stop, compress));
                match spawned {
                    Ok(h) => pool.handles.push(h),
                    Err(e) => {
                        pool.shut_down();
                        return Err(e);
                    }
                }
            }
            Engine::Pool(pool)
        };
        Ok(FrameWriter {
            inner,
            chunk: Chunk::new(),
            engine,
            compress,
            framed: false,
            failed: None,
        })
    }

    /// Ends the current chunk, then appends a skippable frame with magic
    /// `0x184D2A50 + magic_low` and `payload`, after every frame so far.
    /// Waits for the pending frames first (meant for trailers, not for use
    /// in every chunk).
    ///
    /// `magic_low` must be at most 15, and a 4-byte payload with
    /// `magic_low == 0` is refused: readers would take it for pzstd's size
    /// header of a following frame.
    pub(crate) fn write_skippable(&mut self, magic_low: u32, payload: &[u8]) -> io::Result<()> {
        repeat(&self.failed)?;
        if magic_low > 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("skippable frame magic offset {magic_low} is over 15"),
            ));
        }
        if magic_low == 0 && payload.len() == 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a 4-byte skippable frame with magic 0x184D2A50 would read as a pzstd frame header",
            ));
        }
        let len = u32::try_from(payload.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a skippable frame payload must be under 4 GiB",
            )
        })?;
        let r = self.drain(true).and_then(|()| {
            let mut h = [0u8; 8];
            h[..4].copy_from_slice(&(SKIPPABLE_MAGIC + magic_low).to_le_bytes());
            h[4..].copy_from_slice(&len.to_le_bytes());
            self.inner.write_all(&h)?;
            self.inner.write_all(payload)
        });
        r.map_err(|e| sticky(&mut self.failed, e))
    }

    /// Compresses what is buffered (an empty stream gets one empty frame, as
    /// pzstd writes), writes everything in order, flushes the inner writer,
    /// stops the workers and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        repeat(&self.failed)?;
        self.drain(true).map_err(|e| sticky(&mut self.failed, e))?;
        self.inner.flush()?;
        if let Engine::Pool(pool) = &mut self.engine {
            if !pool.shut_down() {
                return Err(io::Error::other("a zstd compression worker panicked"));
            }
        }
        Ok(self.inner)
    }

    /// Lets `fill` write up to `max` bytes straight into the current chunk,
    /// so data read from a file is not copied once more: `fill` gets the
    /// room left (at most `max` bytes, at least one unless `max` is 0) and
    /// returns how many bytes it wrote, from the start. Returns that count.
    ///
    /// An error from `fill` (a read error, say) is returned as is and does
    /// not fail the writer; the chunk then keeps what it held before.
    pub(crate) fn fill_with(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        repeat(&self.failed)?;
        let at = self.chunk.len;
        let room = max.min(CHUNK_SIZE - at);
        let n = fill(&mut self.chunk.buf[at..at + room])?;
        assert!(
            n <= room,
            "fill_with: {n} bytes written into {room} bytes of room"
        );
        self.chunk.len += n;
        if self.chunk.is_full() {
            self.end_chunk().map_err(|e| sticky(&mut self.failed, e))?;
        }
        Ok(n)
    }

    /// Ends the current chunk if it holds data (or if `force` and no frame
    /// was written yet), then writes every pending frame.
    fn drain(&mut self, force: bool) -> io::Result<()> {
        if !self.chunk.is_empty() || (force && !self.framed) {
            self.end_chunk()?;
        }
        if let Engine::Pool(pool) = &mut self.engine {
            while !pool.pending.is_empty() {
                write_oldest(pool, &mut self.inner)?;
            }
        }
        Ok(())
    }

    /// Compresses the current chunk, inline or on a worker.
    fn end_chunk(&mut self) -> io::Result<()> {
        self.framed = true;
        match &mut self.engine {
            Engine::Inline { compressor, out } => {
                (self.compress)(compressor, self.chunk.data(), out)?;
                self.chunk.len = 0;
                write_frame(&mut self.inner, out)
            }
            Engine::Pool(pool) => {
                while pool.pending.len() >= pool.handles.len() {
                    write_oldest(pool, &mut self.inner)?;
                }
                let (mut chunk, out) = pool
                    .spare
                    .pop()
                    .unwrap_or_else(|| (Chunk::new(), Vec::new()));
                std::mem::swap(&mut chunk, &mut self.chunk);
                let (reply, rx) = sync_channel(1);
                let sent = pool
                    .jobs
                    .as_ref()
                    .map(|jobs| jobs.send(CompressJob { chunk, out, reply }).is_ok());
                if sent != Some(true) {
                    return Err(io::Error::other("the zstd compression workers are gone"));
                }
                pool.pending.push_back(rx);
                // Write whatever is already done, oldest first.
                while let Some(rx) = pool.pending.front() {
                    match rx.try_recv() {
                        Err(TryRecvError::Empty) => break,
                        r => {
                            pool.pending.pop_front();
                            take_frame(pool, &mut self.inner, r.ok())?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

fn write_frame<W: Write>(inner: &mut W, frame: &[u8]) -> io::Result<()> {
    inner.write_all(&pzstd_header(frame.len())?)?;
    inner.write_all(frame)
}

/// Waits for the oldest pending frame and writes it.
fn write_oldest<W: Write>(pool: &mut WriterPool, inner: &mut W) -> io::Result<()> {
    let rx = pool.pending.pop_front().expect("a pending frame");
    let r = rx.recv().ok();
    take_frame(pool, inner, r)
}

/// Writes a worker's reply (`None`: the worker died) and keeps its buffers.
fn take_frame<W: Write>(
    pool: &mut WriterPool,
    inner: &mut W,
    reply: Option<io::Result<(Chunk, Vec<u8>)>>,
) -> io::Result<()> {
    match reply {
        Some(Ok((mut chunk, out))) => {
            write_frame(inner, &out)?;
            chunk.len = 0;
            pool.spare.push((chunk, out));
            Ok(())
        }
        Some(Err(e)) => Err(e),
        None => Err(io::Error::other("a zstd compression worker panicked")),
    }
}

fn compress_worker(
    compressor: &mut Cctx,
    jobs: &Mutex<Receiver<CompressJob>>,
    stop: &AtomicBool,
    compress: CompressFn,
) {
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(mut job) = job else { return };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let r = compress(compressor, job.chunk.data(), &mut job.out).map(|()| (job.chunk, job.out));
        // The writer may be gone (dropped after an error): nothing to do then.
        let _ = job.reply.send(r);
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        repeat(&self.failed)?;
        let at = self.chunk.len;
        let n = data.len().min(CHUNK_SIZE - at);
        self.chunk.buf[at..at + n].copy_from_slice(&data[..n]);
        self.chunk.len += n;
        if self.chunk.is_full() {
            self.end_chunk().map_err(|e| sticky(&mut self.failed, e))?;
        }
        Ok(n)
    }

    /// Ends the current chunk (so each call with new data costs a frame),
    /// writes every pending frame and flushes the inner writer.
    fn flush(&mut self) -> io::Result<()> {
        repeat(&self.failed)?;
        self.drain(false)
            .and_then(|()| self.inner.flush())
            .map_err(|e| sticky(&mut self.failed, e))
    }
}

impl Drop for WriterPool {
    /// Dropping the writer without `finish` (an error path) stops the workers.
    fn drop(&mut self) {
        self.shut_down();
    }
}

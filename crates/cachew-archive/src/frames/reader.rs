//! The zstd stream reader: [`FrameReader`] walks the input frame by frame,
//! decodes pzstd's frames ahead on its pool of worker threads (or inline)
//! and hands them out in order, and streams any other zstd frame on the
//! caller's thread.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use zstd::zstd_safe::{self, DCtx, DParameter, InBuffer, OutBuffer, ResetDirective};

use super::format::{
    corrupt_frame, eof, frame_header, invalid, le32, repeat, sticky, too_large_window,
    SkippableFrame, FRAME_IN_MAX, FRAME_OUT_MAX, INPUT_BUFFER, IN_FLIGHT_MAX, LEGACY_MAGICS,
    PZSTD_HEADER, RECORD_COUNT, RECORD_MAX, SKIPPABLE_MAGIC, STREAM_BUFFER, WINDOW_LOG_MAX,
    ZSTD_MAGIC,
};

fn new_dctx() -> DCtx<'static> {
    let mut d = DCtx::create();
    d.set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))
        .expect("27 is a valid window log limit");
    d
}

/// A frame that a pzstd header announced, read into memory.
pub(super) struct Job {
    data: Vec<u8>,
    /// Buffer for the decoded frame (reused).
    out: Vec<u8>,
    /// Compressed-stream offset of the frame, for messages.
    pub(super) offset: u64,
    /// What the frame counts against [`IN_FLIGHT_MAX`].
    charge: usize,
}

pub(super) enum Outcome {
    /// `job.out` holds the decoded frame.
    Done(Job),
    /// The frame does not fit in memory (or did not decode in one go):
    /// stream it from `job.data` instead.
    Stream(Job),
    Failed(io::Error),
}

/// Decodes one in-memory frame (the worker's job).
type DecodeFn = fn(&mut DCtx<'static>, Job) -> Outcome;

pub(super) fn decode_frame(dctx: &mut DCtx<'static>, mut job: Job) -> Outcome {
    let (offset, n) = (job.offset, job.data.len());
    match zstd_safe::find_frame_compressed_size(&job.data) {
        Ok(len) if len == n => {}
        Ok(len) => {
            return Outcome::Failed(invalid(format!(
                "the zstd frame at compressed byte {offset} ends after {len} bytes, but the \
                 pzstd header before it gives {n}"
            )))
        }
        Err(code) => {
            return Outcome::Failed(invalid(format!(
                "the zstd frame at compressed byte {offset} does not end within the {n} bytes \
                 its pzstd header gives: {}",
                zstd_safe::get_error_name(code)
            )))
        }
    }
    // A complete frame has a complete header; anything else is refused.
    let Some(header) = frame_header(&job.data) else {
        return Outcome::Failed(invalid(format!(
            "the zstd frame at compressed byte {offset} has an unreadable header"
        )));
    };
    if header.window > 1 << WINDOW_LOG_MAX {
        return Outcome::Failed(too_large_window(offset, header.window));
    }
    let cap = match header.content_size {
        Some(size) if size > FRAME_OUT_MAX as u64 => return Outcome::Stream(job),
        Some(size) => size as usize,
        None => FRAME_OUT_MAX,
    };
    job.out.clear();
    job.out.reserve(cap);
    match dctx.decompress(&mut job.out, &job.data) {
        Ok(_) => Outcome::Done(job),
        // Without a content size, the frame may just be larger than the
        // buffer: streaming it decodes it, or reports the real error.
        Err(_) if header.content_size.is_none() => Outcome::Stream(job),
        Err(code) => Outcome::Failed(corrupt_frame(offset, code)),
    }
}

fn decode_worker(
    jobs: &Mutex<Receiver<(Job, SyncSender<Outcome>)>>,
    stop: &AtomicBool,
    decode: DecodeFn,
) {
    let mut dctx = new_dctx();
    loop {
        let msg = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((job, reply)) = msg else { return };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // The reader may be gone (dropped early): nothing to do then.
        let _ = reply.send(decode(&mut dctx, job));
    }
}

struct ReaderPool {
    jobs: Option<SyncSender<(Job, SyncSender<Outcome>)>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl ReaderPool {
    fn start(threads: usize, decode: DecodeFn) -> io::Result<Self> {
        let (tx, rx) = sync_channel(threads + 1);
        let rx = Arc::new(Mutex::new(rx));
        let mut pool = ReaderPool {
            jobs: Some(tx),
            stop: Arc::new(AtomicBool::new(false)),
            handles: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let (rx, stop) = (rx.clone(), pool.stop.clone());
            let h = std::thread::Builder::new()
                .name(format!("cachew-unzstd-{i}"))
                .spawn(move || decode_worker(&rx, &stop, decode))?;
            pool.handles.push(h);
        }
        Ok(pool)
    }
}

impl Drop for ReaderPool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.jobs = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// The compressed input, buffered, with its offset.
struct Src<R> {
    r: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Offset in the compressed stream of `buf[start]`.
    offset: u64,
    eof: bool,
}

fn read_retry<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            res => return res,
        }
    }
}

impl<R: Read> Src<R> {
    /// The buffered bytes, reading more if there are none; empty at the end.
    fn fill(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end && !self.eof {
            self.start = 0;
            self.end = read_retry(&mut self.r, &mut self.buf)?;
            self.eof = self.end == 0;
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
        self.offset += n as u64;
    }

    /// The next `n` bytes (`n` is small), fewer only at the end of the stream.
    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        while self.end - self.start < n && !self.eof {
            if self.buf.len() - self.start < n {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let k = read_retry(&mut self.r, &mut self.buf[self.end..])?;
            self.eof = k == 0;
            self.end += k;
        }
        Ok(&self.buf[self.start..self.end.min(self.start + n)])
    }

    /// Appends the next `n` bytes to `v`; returns how many there were.
    fn read_into(&mut self, v: &mut Vec<u8>, n: usize) -> io::Result<usize> {
        let buffered = (self.end - self.start).min(n);
        v.extend_from_slice(&self.buf[self.start..self.start + buffered]);
        self.consume(buffered);
        let base = v.len();
        let want = n - buffered;
        if want == 0 || self.eof {
            return Ok(buffered);
        }
        // Large reads go straight into `v`.
        v.resize(base + want, 0);
        let mut got = 0;
        while got < want {
            let k = read_retry(&mut self.r, &mut v[base + got..])?;
            if k == 0 {
                self.eof = true;
                break;
            }
            got += k;
        }
        v.truncate(base + got);
        self.offset += got as u64;
        Ok(buffered + got)
    }

    /// Skips the next `n` bytes; returns how many there were.
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let mut done = 0;
        while done < n {
            let k = (self.fill()?.len() as u64).min(n - done) as usize;
            if k == 0 {
                break;
            }
            self.consume(k);
            done += k as u64;
        }
        Ok(done)
    }
}

/// A frame in the queue ahead of the reader.
enum Slot {
    /// In memory, to decode on the caller's thread when reached (`threads == 1`).
    Held(Job),
    /// Handed to a worker.
    Sent {
        rx: Receiver<Outcome>,
        charge: usize,
    },
    /// To decode by streaming from the input: a regular zstd frame
    /// (`limit: None`), or one whose pzstd header gives a size too large to
    /// hold. Nothing more is queued behind it until it is decoded.
    Stream { offset: u64, limit: Option<u64> },
    /// The stream is broken here.
    Fail(io::Error),
}

impl Slot {
    fn charge(&self) -> usize {
        match self {
            Slot::Held(job) => job.charge,
            Slot::Sent { charge, .. } => *charge,
            _ => 0,
        }
    }
}

/// Where a streamed frame's compressed bytes come from.
enum StreamFrom {
    /// The input, up to the end of the frame.
    Input,
    /// The input, exactly `len` bytes (from a pzstd header), `left` to go.
    Limited { len: u64, left: u64 },
    /// A frame already in memory.
    Memory { data: Vec<u8>, pos: usize },
}

enum Current {
    Idle,
    /// A decoded frame being handed out.
    Decoded {
        buf: Vec<u8>,
        pos: usize,
    },
    /// A frame being decoded by streaming, straight into the caller's buffer.
    Streaming {
        offset: u64,
        from: StreamFrom,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dispatch {
    /// Reading frames ahead.
    Open,
    /// A streamed frame is queued or being decoded: it owns the input.
    Blocked,
    /// End of stream, or an error queued.
    Done,
}

/// Reads a zstd stream: frames announced by pzstd headers are decoded on
/// `threads` worker threads (1 = on the caller's thread) and handed out in
/// order; any other zstd frame is decoded by streaming, one frame at a time,
/// on the caller's thread, as the `zstd` tool would. Skippable frames other
/// than pzstd's headers are skipped; those of up to 4 KiB are recorded (the
/// last 16), see [`skippable`](Self::skippable).
///
/// Memory is bounded: at most `threads + 1` frames of at most 32 MiB are
/// queued ahead (fewer when they are large), frames that decode to more are
/// streamed, and windows over 128 MiB are refused.
///
/// Errors (a cut, corrupt or mis-sized frame, garbage between frames) are
/// returned after all the data before them, as `InvalidData` or
/// `UnexpectedEof`; every later read repeats them. An empty input is an
/// error, as for `zstd`'s decoder. Dropping the reader stops its workers.
pub(crate) struct FrameReader<R: Read> {
    src: Src<R>,
    threads: usize,
    dctx: DCtx<'static>,
    queue: VecDeque<Slot>,
    /// Sum of the queued slots' charges.
    charged: usize,
    current: Current,
    dispatch: Dispatch,
    pool: Option<ReaderPool>,
    decode: DecodeFn,
    free_in: Vec<Vec<u8>>,
    free_out: Vec<Vec<u8>>,
    /// Output of streamed frames for `fill_buf`, `stream_pos..stream_len` unread.
    stream_buf: Vec<u8>,
    stream_pos: usize,
    stream_len: usize,
    skippable: Vec<SkippableFrame>,
    failed: Option<(io::ErrorKind, String)>,
}

impl<R: Read> FrameReader<R> {
    /// A reader decoding pzstd frames on `threads` threads (1 = on the
    /// caller's thread; 0 counts as 1). Workers start with the first pzstd frame.
    pub(crate) fn new(inner: R, threads: usize) -> Self {
        Self::with_decode_fn(inner, threads, decode_frame)
    }

    /// [`new`](Self::new) with another frame decoder (the tests inject a
    /// panic).
    pub(super) fn with_decode_fn(inner: R, threads: usize, decode: DecodeFn) -> Self {
        FrameReader {
            src: Src {
                r: inner,
                buf: vec![0u8; INPUT_BUFFER].into_boxed_slice(),
                start: 0,
                end: 0,
                offset: 0,
                eof: false,
            },
            threads: threads.max(1),
            dctx: new_dctx(),
            queue: VecDeque::new(),
            charged: 0,
            current: Current::Idle,
            dispatch: Dispatch::Open,
            pool: None,
            decode,
            free_in: Vec::new(),
            free_out: Vec::new(),
            stream_buf: Vec::new(),
            stream_pos: 0,
            stream_len: 0,
            skippable: Vec::new(),
            failed: None,
        }
    }

    /// Skippable frames seen so far (complete once a read has returned 0).
    #[cfg(test)]
    pub(crate) fn skippable(&self) -> &[SkippableFrame] {
        &self.skippable
    }

    /// Takes the recorded skippable frames.
    pub(crate) fn take_skippable(&mut self) -> Vec<SkippableFrame> {
        std::mem::take(&mut self.skippable)
    }

    fn max_slots(&self) -> usize {
        if self.threads == 1 {
            1
        } else {
            self.threads + 1
        }
    }

    /// Reads frame headers and frames ahead, while there is room.
    fn dispatch_more(&mut self) {
        while self.dispatch == Dispatch::Open
            && self.queue.len() < self.max_slots()
            && self.charged < IN_FLIGHT_MAX
        {
            match self.next_slot() {
                Ok(Some(slot)) => {
                    self.charged += slot.charge();
                    self.queue.push_back(slot);
                }
                Ok(None) => {}
                Err(e) => {
                    self.queue.push_back(Slot::Fail(e));
                    self.dispatch = Dispatch::Done;
                }
            }
        }
    }

    /// Reads what starts at the current offset: a frame to queue, or a
    /// skippable frame (recorded, `None`), or the end of the stream (`None`).
    fn next_slot(&mut self) -> io::Result<Option<Slot>> {
        let offset = self.src.offset;
        let head = self.src.peek(PZSTD_HEADER)?;
        if head.is_empty() {
            if offset == 0 {
                return Err(eof("the stream is empty: expected a zstd frame".to_string()));
            }
            self.dispatch = Dispatch::Done;
            return Ok(None);
        }
        if head.len() < 4 {
            return Err(eof(format!(
                "the stream ends {} bytes into the frame at compressed byte {offset}: \
                 expected a 4-byte frame magic number",
                head.len()
            )));
        }
        let magic = le32(head);
        if magic == ZSTD_MAGIC || LEGACY_MAGICS.contains(&magic) {
            self.dispatch = Dispatch::Blocked;
            return Ok(Some(Slot::Stream {
                offset,
                limit: None,
            }));
        }
        if magic & !0xF != SKIPPABLE_MAGIC {
            return Err(invalid(format!(
                "expected a zstd frame or a skippable frame at compressed byte {offset}, found \
                 bytes {:02x?}",
                &head[..4]
            )));
        }
        if head.len() < 8 {
            return Err(eof(format!(
                "the stream ends inside the header of the skippable frame at compressed byte \
                 {offset}"
            )));
        }
        let size = le32(&head[4..]);
        if magic != SKIPPABLE_MAGIC || size != 4 {
            self.src.consume(8);
            let got = if size as usize <= RECORD_MAX {
                let mut payload = Vec::with_capacity(size as usize);
                let got = self.src.read_into(&mut payload, size as usize)? as u64;
                if got == u64::from(size) {
                    if self.skippable.len() == RECORD_COUNT {
                        self.skippable.remove(0);
                    }
                    self.skippable.push(SkippableFrame { magic, payload });
                }
                got
            } else {
                self.src.skip(u64::from(size))?
            };
            if got < u64::from(size) {
                return Err(eof(format!(
                    "the stream ends {got} bytes into the {size}-byte skippable frame at \
                     compressed byte {offset}"
                )));
            }
            return Ok(None);
        }
        // pzstd's header: the size of the frame that follows.
        if head.len() < PZSTD_HEADER {
            return Err(eof(format!(
                "the stream ends inside the pzstd frame header at compressed byte {offset}"
            )));
        }
        let len = le32(&head[8..]) as usize;
        self.src.consume(PZSTD_HEADER);
        let frame_at = offset + PZSTD_HEADER as u64;
        let missing = |got: usize| {
            eof(format!(
                "the stream ends {got} bytes into the {len}-byte zstd frame announced by the \
                 pzstd header at compressed byte {offset}"
            ))
        };
        let not_a_frame = |b: &[u8]| {
            invalid(format!(
                "expected the zstd frame announced by the pzstd header at compressed byte \
                 {offset}, found bytes {:02x?}",
                &b[..b.len().min(4)]
            ))
        };
        if len > FRAME_IN_MAX {
            let b = self.src.peek(4)?;
            if b.len() < 4 {
                return Err(missing(b.len()));
            }
            if le32(b) != ZSTD_MAGIC {
                return Err(not_a_frame(b));
            }
            self.dispatch = Dispatch::Blocked;
            return Ok(Some(Slot::Stream {
                offset: frame_at,
                limit: Some(len as u64),
            }));
        }
        let mut data = self.free_in.pop().unwrap_or_default();
        data.clear();
        let got = self.src.read_into(&mut data, len)?;
        if got < len {
            return Err(missing(got));
        }
        if len < 4 || le32(&data) != ZSTD_MAGIC {
            return Err(not_a_frame(&data));
        }
        let estimate = frame_header(&data).map_or(0, |h| match h.content_size {
            Some(size) => size.min(FRAME_OUT_MAX as u64) as usize,
            // pzstd's frames hold 4 windows of data.
            None => h.window.saturating_mul(4).min(FRAME_OUT_MAX as u64) as usize,
        });
        let job = Job {
            data,
            out: self.free_out.pop().unwrap_or_default(),
            offset: frame_at,
            charge: len + estimate,
        };
        if self.threads == 1 {
            return Ok(Some(Slot::Held(job)));
        }
        if self.pool.is_none() {
            self.pool = Some(ReaderPool::start(self.threads, self.decode)?);
        }
        let charge = job.charge;
        let (reply, rx) = sync_channel(1);
        let jobs = self.pool.as_ref().and_then(|p| p.jobs.as_ref());
        if jobs.is_none_or(|jobs| jobs.send((job, reply)).is_err()) {
            return Err(io::Error::other("the zstd decompression workers are gone"));
        }
        Ok(Some(Slot::Sent { rx, charge }))
    }

    fn take_outcome(&mut self, outcome: Outcome) -> io::Result<()> {
        match outcome {
            Outcome::Done(job) => {
                self.free_in.push(job.data);
                self.current = Current::Decoded {
                    buf: job.out,
                    pos: 0,
                };
            }
            Outcome::Stream(job) => {
                self.free_out.push(job.out);
                self.start_stream(
                    job.offset,
                    StreamFrom::Memory {
                        data: job.data,
                        pos: 0,
                    },
                );
            }
            Outcome::Failed(e) => return Err(e),
        }
        Ok(())
    }

    fn start_stream(&mut self, offset: u64, from: StreamFrom) {
        // Only fails for a context in use by a worker, which this one never is.
        let _ = self.dctx.reset(ResetDirective::SessionOnly);
        self.current = Current::Streaming { offset, from };
    }

    /// Decodes some of the streamed frame into `out`. Returns 0 only when
    /// the frame ended without more output (the current frame is then done).
    fn read_stream(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Current::Streaming { offset, from } = &mut self.current else {
            unreachable!("not streaming")
        };
        let offset = *offset;
        loop {
            let input: &[u8] = match from {
                StreamFrom::Input => self.src.fill()?,
                StreamFrom::Limited { left, .. } => {
                    let b = self.src.fill()?;
                    &b[..b.len().min(usize::try_from(*left).unwrap_or(usize::MAX))]
                }
                StreamFrom::Memory { data, pos } => &data[*pos..],
            };
            let available = input.len();
            let mut ib = InBuffer::around(input);
            let mut ob = OutBuffer::around(&mut *out);
            let hint = self
                .dctx
                .decompress_stream(&mut ob, &mut ib)
                .map_err(|code| corrupt_frame(offset, code))?;
            let (read, written) = (ib.pos(), ob.pos());
            match from {
                StreamFrom::Input => self.src.consume(read),
                StreamFrom::Limited { left, .. } => {
                    self.src.consume(read);
                    *left -= read as u64;
                }
                StreamFrom::Memory { pos, .. } => *pos += read,
            }
            if hint == 0 {
                // The frame is complete; a pzstd header's size must match it.
                let rest = match from {
                    StreamFrom::Input => None,
                    StreamFrom::Limited { len, left } => Some((*len, *left)),
                    StreamFrom::Memory { data, pos } => {
                        Some((data.len() as u64, (data.len() - *pos) as u64))
                    }
                };
                if let Some((len, left)) = rest.filter(|&(_, left)| left > 0) {
                    return Err(invalid(format!(
                        "the zstd frame at compressed byte {offset} ends after {} bytes, but \
                         the pzstd header before it gives {len}",
                        len - left
                    )));
                }
                if let Current::Streaming {
                    from: StreamFrom::Memory { data, .. },
                    ..
                } = std::mem::replace(&mut self.current, Current::Idle)
                {
                    self.free_in.push(data);
                }
                if self.dispatch == Dispatch::Blocked {
                    self.dispatch = Dispatch::Open;
                }
                return Ok(written);
            }
            if written > 0 {
                return Ok(written);
            }
            if read == 0 {
                if available > 0 {
                    return Err(invalid(format!(
                        "the zstd decoder made no progress in the frame at compressed byte \
                         {offset}"
                    )));
                }
                return Err(match from {
                    StreamFrom::Input => eof(format!(
                        "the stream ends inside the zstd frame at compressed byte {offset}"
                    )),
                    StreamFrom::Limited { len, left } if *left > 0 => eof(format!(
                        "the stream ends {} bytes into the {len}-byte zstd frame at compressed \
                         byte {offset}",
                        *len - *left
                    )),
                    StreamFrom::Limited { len, .. } => invalid(format!(
                        "the zstd frame at compressed byte {offset} does not end within the \
                         {len} bytes its pzstd header gives"
                    )),
                    StreamFrom::Memory { data, .. } => invalid(format!(
                        "the zstd frame at compressed byte {offset} does not end within the \
                         {} bytes its pzstd header gives",
                        data.len()
                    )),
                });
            }
        }
    }

    /// The decoded bytes ready to hand out (empty only at the end).
    fn available(&self) -> &[u8] {
        if self.stream_pos < self.stream_len {
            return &self.stream_buf[self.stream_pos..self.stream_len];
        }
        match &self.current {
            Current::Decoded { buf, pos } => &buf[*pos..],
            _ => &[],
        }
    }

    /// Makes decoded bytes available, unless the stream has ended.
    /// `direct`: a streamed frame is decoded into it instead, if it is at
    /// least as large as the stream buffer (returns how much was written).
    fn fill(&mut self, mut direct: Option<&mut [u8]>) -> io::Result<usize> {
        loop {
            if !self.available().is_empty() {
                return Ok(0);
            }
            match &mut self.current {
                Current::Decoded { buf, .. } => {
                    let buf = std::mem::take(buf);
                    self.free_out.push(buf);
                    self.current = Current::Idle;
                }
                Current::Streaming { .. } => match direct.as_deref_mut() {
                    Some(out) if out.len() >= STREAM_BUFFER => {
                        let n = self.read_stream(out)?;
                        if n > 0 {
                            return Ok(n);
                        }
                    }
                    _ => {
                        let mut buf = std::mem::take(&mut self.stream_buf);
                        buf.resize(STREAM_BUFFER, 0);
                        let r = self.read_stream(&mut buf);
                        self.stream_buf = buf;
                        (self.stream_pos, self.stream_len) = (0, r?);
                    }
                },
                Current::Idle => {
                    self.dispatch_more();
                    let Some(slot) = self.queue.pop_front() else {
                        debug_assert!(self.dispatch == Dispatch::Done);
                        return Ok(0);
                    };
                    self.charged -= slot.charge();
                    match slot {
                        Slot::Held(job) => {
                            let outcome = (self.decode)(&mut self.dctx, job);
                            self.take_outcome(outcome)?;
                        }
                        Slot::Sent { rx, .. } => {
                            // Keep the workers busy while waiting for this one.
                            self.dispatch_more();
                            let outcome = rx.recv().map_err(|_| {
                                io::Error::other("a zstd decompression worker panicked")
                            })?;
                            self.take_outcome(outcome)?;
                        }
                        Slot::Stream { offset, limit } => {
                            let from = match limit {
                                None => StreamFrom::Input,
                                Some(len) => StreamFrom::Limited { len, left: len },
                            };
                            self.start_stream(offset, from);
                        }
                        Slot::Fail(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Runs `fill`, making its first error stick.
    fn fill_checked(&mut self, direct: Option<&mut [u8]>) -> io::Result<usize> {
        repeat(&self.failed)?;
        self.fill(direct).map_err(|e| {
            // Stop the workers now: nothing more will be read.
            self.pool = None;
            sticky(&mut self.failed, e)
        })
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let direct = self.fill_checked(Some(&mut *out))?;
        if direct > 0 {
            return Ok(direct);
        }
        let b = self.available();
        let n = b.len().min(out.len());
        out[..n].copy_from_slice(&b[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Hands out decoded frames in place, saving a copy through a `BufReader`.
impl<R: Read> BufRead for FrameReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.fill_checked(None)?;
        Ok(self.available())
    }

    fn consume(&mut self, n: usize) {
        if self.stream_pos < self.stream_len {
            self.stream_pos += n;
            debug_assert!(self.stream_pos <= self.stream_len);
        } else if let Current::Decoded { buf, pos } = &mut self.current {
            *pos += n;
            debug_assert!(*pos <= buf.len());
        } else {
            debug_assert_eq!(n, 0);
        }
    }
}

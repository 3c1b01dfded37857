//! The frame writer's and reader's unit tests: pzstd's layout, chunk
//! boundaries, compatibility with the `zstd` and `pzstd` tools, and every
//! error path (cut, corrupt and mis-sized frames, worker failures).

use std::io::{self, BufRead, Read, Write};
use std::process::Command;

use zstd::zstd_safe::{self, DCtx};

use super::ffi::{compress_chunk, Cctx};
use super::format::{
    frame_header, le32, pzstd_header, FrameHeader, SkippableFrame, CHUNK_SIZE, FRAME_IN_MAX,
    FRAME_OUT_MAX, PZSTD_HEADER, RECORD_COUNT, RECORD_MAX, SKIPPABLE_MAGIC, ZSTD_MAGIC,
};
use super::reader::{decode_frame, FrameReader, Job, Outcome};
use super::writer::FrameWriter;
use cachew_testkit::{noise, sh_in};

fn write_all(data: &[u8], threads: usize, level: i32) -> Vec<u8> {
    let mut w = FrameWriter::new(Vec::new(), level, threads).unwrap();
    // Uneven writes, so chunk boundaries fall inside them.
    for piece in data.chunks(1_000_003) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap()
}

fn read_all(data: &[u8], threads: usize) -> io::Result<(Vec<u8>, Vec<SkippableFrame>)> {
    let mut r = FrameReader::new(data, threads);
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    // The end repeats.
    assert_eq!(r.read(&mut [0u8; 16])?, 0);
    Ok((out, r.skippable().to_vec()))
}

#[derive(Debug, PartialEq, Eq)]
enum Item {
    /// A pzstd size header with the size it gives.
    Pzstd(u32),
    /// A zstd frame with its length and header.
    Zstd(usize, FrameHeader),
    Skippable(u32, Vec<u8>),
}

/// Splits a stream into frames.
fn split_frames(mut s: &[u8]) -> Vec<Item> {
    let mut v = Vec::new();
    while !s.is_empty() {
        let magic = le32(s);
        if magic == ZSTD_MAGIC {
            let len = zstd_safe::find_frame_compressed_size(s).unwrap();
            v.push(Item::Zstd(len, frame_header(s).unwrap()));
            s = &s[len..];
        } else {
            assert_eq!(magic & !0xF, SKIPPABLE_MAGIC, "{magic:x}");
            let size = le32(&s[4..]) as usize;
            if magic == SKIPPABLE_MAGIC && size == 4 {
                v.push(Item::Pzstd(le32(&s[8..])));
            } else {
                v.push(Item::Skippable(magic, s[8..8 + size].to_vec()));
            }
            s = &s[8 + size..];
        }
    }
    v
}

/// Runs `f` on a thread and fails if it has not returned within a
/// minute (a drop that waits for a worker forever, say).
fn finishes_in_a_minute(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        tx.send(()).unwrap();
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("drop hung");
}

fn err_of(r: io::Result<(Vec<u8>, Vec<SkippableFrame>)>) -> io::Error {
    match r {
        Ok((out, _)) => panic!("accepted, {} bytes out", out.len()),
        Err(e) => e,
    }
}

fn pzstd_frame(frame: &[u8]) -> Vec<u8> {
    [&pzstd_header(frame.len()).unwrap()[..], frame].concat()
}

fn skippable(magic_low: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (SKIPPABLE_MAGIC + magic_low).to_le_bytes().to_vec();
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn layout_matches_pzstd() {
    let data = noise(100_000, 1);
    let out = write_all(&data, 1, 3);
    // pzstd's header: magic, frame size 4, then the frame's length.
    assert_eq!(&out[..8], &[0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0]);
    let items = split_frames(&out);
    let [Item::Pzstd(len), Item::Zstd(flen, header)] = &items[..] else {
        panic!("{items:?}")
    };
    assert_eq!(*len as usize, *flen);
    assert_eq!(out.len(), 12 + flen);
    assert_eq!(header.content_size, Some(data.len() as u64));
    // Checksum flag set, like pzstd's frames.
    assert_ne!(out[12 + 4] & 0x04, 0);
    // The real pzstd writes the same structure (without the content size).
    let theirs = sh_in("pzstd -3 -p2 -q -c", &data);
    let their_items = split_frames(&theirs);
    let [Item::Pzstd(_), Item::Zstd(_, h)] = &their_items[..] else {
        panic!("{their_items:?}")
    };
    assert_eq!(h.content_size, None);
    assert_ne!(theirs[12 + 4] & 0x04, 0);
    assert!(read_all(&theirs, 2).unwrap().0 == data);
}

#[test]
fn chunk_boundaries() {
    let big = noise(3 * CHUNK_SIZE + 1, 2);
    for len in [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        3 * CHUNK_SIZE,
    ] {
        let data = &big[..len];
        let one = write_all(data, 1, 3);
        let four = write_all(data, 4, 3);
        assert_eq!(one, four, "threads 1 and 4 differ at {len}");
        let frames = len.div_ceil(CHUNK_SIZE).max(1);
        let items = split_frames(&one);
        assert_eq!(items.len(), 2 * frames, "{len}: {items:?}");
        for (i, pair) in items.chunks(2).enumerate() {
            let [Item::Pzstd(n), Item::Zstd(flen, h)] = pair else {
                panic!("{len}: {items:?}")
            };
            assert_eq!(*n as usize, *flen);
            let expected = (len - (i * CHUNK_SIZE).min(len)).min(CHUNK_SIZE);
            assert_eq!(h.content_size, Some(expected as u64), "{len} frame {i}");
        }
        assert!(zstd::decode_all(one.as_slice()).unwrap() == data, "{len}");
        for threads in [1, 2, 4] {
            assert!(
                read_all(&one, threads).unwrap().0 == data,
                "{len} {threads}"
            );
        }
    }
}

/// `fill_with` and `write` make the same stream; a failed fill changes
/// nothing and does not fail the writer.
#[test]
fn fill_with_writes_in_place() {
    let data = noise(2 * CHUNK_SIZE + 12345, 11);
    for threads in [1, 2] {
        let mut w = FrameWriter::new(Vec::new(), 3, threads).unwrap();
        let mut at = 0;
        while at < data.len() {
            let e = w.fill_with(777, |_| Err(io::Error::other("unreadable")));
            assert_eq!(e.unwrap_err().to_string(), "unreadable");
            // Odd sizes, so fills end short of chunk boundaries.
            let max = (data.len() - at).min(300_001);
            let n = w
                .fill_with(max, |dst| {
                    assert!(!dst.is_empty() && dst.len() <= max);
                    dst.copy_from_slice(&data[at..at + dst.len()]);
                    Ok(dst.len())
                })
                .unwrap();
            at += n;
        }
        assert_eq!(w.fill_with(0, |dst| Ok(dst.len())).unwrap(), 0);
        let filled = w.finish().unwrap();
        assert!(filled == write_all(&data, threads, 3), "threads {threads}");
    }
}

#[test]
fn the_tools_read_our_output() {
    let data = noise(2 * CHUNK_SIZE + 12345, 3);
    let mut w = FrameWriter::new(Vec::new(), 3, 2).unwrap();
    w.write_all(&data).unwrap();
    let plain = w.finish().unwrap();
    let mut w = FrameWriter::new(Vec::new(), 3, 2).unwrap();
    w.write_all(&data).unwrap();
    w.write_skippable(7, b"trailer payload").unwrap();
    let trailed = w.finish().unwrap();
    assert_eq!(&trailed[..plain.len()], &plain[..]);
    assert_eq!(
        &trailed[plain.len()..],
        &skippable(7, b"trailer payload")[..]
    );
    for stream in [&plain, &trailed] {
        assert!(sh_in("zstd -dc", stream) == data);
        assert!(sh_in("pzstd -dc -p2", stream) == data);
    }
    let list = |s: &[u8]| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.zst");
        std::fs::write(&p, s).unwrap();
        let out = Command::new("zstd").arg("-lv").arg(&p).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let l = list(&plain);
    assert!(l.contains("# Zstandard Frames: 3"), "{l}");
    assert!(l.contains("# Skippable Frames: 3"), "{l}");
    assert!(l.contains("Check: XXH64"), "{l}");
    let l = list(&trailed);
    assert!(l.contains("# Zstandard Frames: 3"), "{l}");
    assert!(l.contains("# Skippable Frames: 4"), "{l}");
    let (out, skipped) = read_all(&trailed, 2).unwrap();
    assert!(out == data);
    assert_eq!(
        skipped,
        [SkippableFrame {
            magic: 0x184D_2A57,
            payload: b"trailer payload".to_vec()
        }]
    );
}

#[test]
fn empty_input() {
    for threads in [1, 3] {
        let out = write_all(b"", threads, 3);
        // One empty frame, as pzstd writes for empty input.
        assert!(matches!(
            &split_frames(&out)[..],
            [Item::Pzstd(_), Item::Zstd(..)]
        ));
        assert_eq!(sh_in("zstd -dc", &out), b"");
        assert_eq!(sh_in("pzstd -dc", &out), b"");
        assert_eq!(read_all(&out, threads).unwrap().0, b"");
        // With only a trailer, the empty frame comes first.
        let mut w = FrameWriter::new(Vec::new(), 3, threads).unwrap();
        w.write_skippable(1, b"t").unwrap();
        let out = w.finish().unwrap();
        let items = split_frames(&out);
        let [Item::Pzstd(_), Item::Zstd(..), Item::Skippable(magic, payload)] = &items[..] else {
            panic!("{items:?}")
        };
        assert_eq!((*magic, &payload[..]), (0x184D_2A51, &b"t"[..]));
        assert_eq!(sh_in("zstd -dc", &out), b"");
    }
    // An empty input stream is an error, as for zstd's decoder.
    let e = err_of(read_all(b"", 1));
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    let mut dec = zstd::stream::read::Decoder::new(&b""[..]).unwrap();
    let e = dec.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    // Skippable frames alone are a valid, empty stream.
    let only = [skippable(3, b"abc"), skippable(0, b"")].concat();
    let (out, skipped) = read_all(&only, 2).unwrap();
    assert!(out.is_empty());
    assert_eq!(skipped.len(), 2);
}

#[test]
fn skippable_frames_are_checked() {
    let mut w = FrameWriter::new(Vec::new(), 3, 1).unwrap();
    let e = w.write_skippable(16, b"x").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = w.write_skippable(0, b"four").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    // Refusing them does not break the writer.
    w.write_all(b"data").unwrap();
    w.write_skippable(0, b"five!").unwrap();
    w.write_all(b"more").unwrap();
    let out = w.finish().unwrap();
    let (data, skipped) = read_all(&out, 1).unwrap();
    assert_eq!(data, b"datamore");
    assert_eq!(skipped[0].magic, SKIPPABLE_MAGIC);
    assert_eq!(skipped[0].payload, b"five!");
}

#[test]
fn flush_ends_the_chunk() {
    let mut w = FrameWriter::new(Vec::new(), 3, 2).unwrap();
    w.write_all(b"first").unwrap();
    w.flush().unwrap();
    w.flush().unwrap();
    w.write_all(b"second").unwrap();
    let out = w.finish().unwrap();
    assert_eq!(split_frames(&out).len(), 4);
    assert_eq!(read_all(&out, 2).unwrap().0, b"firstsecond");
}

fn failing_compress(c: &mut Cctx, chunk: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    if chunk.starts_with(b"FAIL") {
        return Err(io::Error::other("injected compression failure"));
    }
    if chunk.starts_with(b"PANIC") {
        panic!("injected compression panic");
    }
    compress_chunk(c, chunk, out)
}

#[test]
fn worker_errors_and_panics_surface() {
    for (marker, threads) in [(&b"FAIL"[..], 1), (b"FAIL", 3), (b"PANIC", 3)] {
        let mut data = noise(3 * CHUNK_SIZE, 4);
        data[CHUNK_SIZE..CHUNK_SIZE + marker.len()].copy_from_slice(marker);
        if marker == b"PANIC" && threads == 1 {
            continue;
        }
        let mut w =
            FrameWriter::with_compress_fn(Vec::new(), 3, threads, failing_compress).unwrap();
        let r = w.write_all(&data).and_then(|()| w.finish().map(drop));
        let e = r.unwrap_err();
        assert!(
            e.to_string().contains("injected") || e.to_string().contains("panicked"),
            "{e}"
        );
        // Whatever comes next repeats it (when the writer is still there).
    }
    // The error sticks.
    let mut data = noise(CHUNK_SIZE, 5);
    data[..4].copy_from_slice(b"FAIL");
    let mut w = FrameWriter::with_compress_fn(Vec::new(), 3, 2, failing_compress).unwrap();
    let mut first = None;
    for _ in 0..4 {
        if let Err(e) = w.write_all(&data) {
            first = Some(e.to_string());
            break;
        }
    }
    let first = first.expect("an error within a few chunks");
    assert_eq!(w.write(b"x").unwrap_err().to_string(), first);
    assert_eq!(w.flush().unwrap_err().to_string(), first);
    assert_eq!(w.finish().unwrap_err().to_string(), first);
}

/// Accepts `limit` bytes, then fails.
struct Failing {
    limit: usize,
    written: usize,
}

impl Write for Failing {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.written + b.len() > self.limit {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        self.written += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn inner_write_errors_surface_and_stick() {
    for threads in [1, 2] {
        let data = noise(4 * CHUNK_SIZE, 6);
        let sink = Failing {
            limit: 1 << 20,
            written: 0,
        };
        let mut w = FrameWriter::new(sink, 3, threads).unwrap();
        let e = w
            .write_all(&data)
            .and_then(|()| w.finish().map(drop))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    }
}

/// Dropping a writer with chunks in flight joins its workers.
#[test]
fn dropping_a_writer_does_not_hang() {
    finishes_in_a_minute(|| {
        let data = noise(3 * CHUNK_SIZE + 5, 7);
        let mut w = FrameWriter::new(Vec::new(), 9, 2).unwrap();
        w.write_all(&data).unwrap();
        drop(w);
    });
}

#[test]
fn reads_plain_zstd_and_mixed_streams() {
    let a = noise(3 * CHUNK_SIZE / 2, 8);
    let b = noise(5 << 20, 9);
    let ours = write_all(&a, 2, 3);
    let plain = zstd::encode_all(b.as_slice(), 3).unwrap();
    let theirs = sh_in("pzstd -1 -p2 -q -c", &b);
    assert!(
        split_frames(&theirs).len() > 2,
        "pzstd -1 cuts 2 MiB chunks"
    );
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        // Plain zstd, one frame and several.
        (plain.clone(), b.clone()),
        ([&plain[..], &plain[..]].concat(), [&b[..], &b[..]].concat()),
        // Two pzstd streams back to back.
        ([&ours[..], &theirs[..]].concat(), [&a[..], &b[..]].concat()),
        // pzstd frames, then a plain frame, then pzstd frames again.
        (
            [&ours[..], &plain[..], &theirs[..]].concat(),
            [&a[..], &b[..], &b[..]].concat(),
        ),
        // A plain frame with a skippable frame in between.
        (
            [&plain[..], &skippable(2, b"hi"), &plain[..]].concat(),
            [&b[..], &b[..]].concat(),
        ),
    ];
    for (i, (stream, expected)) in cases.iter().enumerate() {
        for threads in [1, 2, 4] {
            let (out, _) = read_all(stream, threads).unwrap();
            assert!(out == *expected, "case {i} threads {threads}");
        }
    }
    // Trailers are recorded wherever they are.
    let stream = [
        &plain[..],
        &skippable(2, b"hi"),
        &ours[..],
        &skippable(15, b"end"),
    ]
    .concat();
    let (_, skipped) = read_all(&stream, 2).unwrap();
    assert_eq!(
        skipped,
        [
            SkippableFrame {
                magic: 0x184D_2A52,
                payload: b"hi".to_vec()
            },
            SkippableFrame {
                magic: 0x184D_2A5F,
                payload: b"end".to_vec()
            }
        ]
    );
}

#[test]
fn pzstd_levels_and_small_reads() {
    // pzstd cuts its input every 1 << (windowLog + 2) bytes: 2 MiB at
    // level 1, 8 MiB at level 3, 32 MiB at level 19. A repeated random
    // block keeps level 19 fast.
    let block = noise(1 << 16, 10)
        .iter()
        .zip(noise(1 << 16, 11))
        .map(|(a, b)| a << 4 | b)
        .collect::<Vec<u8>>();
    let repeated: Vec<u8> = block.iter().copied().cycle().take(36 << 20).collect();
    let varied = noise(20 << 20, 12);
    for (level, data, frames) in [(1, &varied, 10), (3, &varied, 3), (19, &repeated, 2)] {
        let stream = sh_in(&format!("pzstd -{level} -p2 -q -c"), data);
        assert!(split_frames(&stream).len() >= 2 * frames, "level {level}");
        for threads in [1, 2, 4] {
            let (out, _) = read_all(&stream, threads).unwrap();
            assert!(out == *data, "level {level} threads {threads}");
        }
        // Odd read sizes.
        let mut r = FrameReader::new(stream.as_slice(), 2);
        let mut out = Vec::new();
        let mut buf = [0u8; 4093];
        let mut k = 1;
        loop {
            let n = r.read(&mut buf[..k]).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            k = k % 4093 + 1;
        }
        assert!(out == *data, "level {level}");
    }
}

/// `fill_buf`/`consume` and reads of every size, over in-memory,
/// streamed and oversized frames.
#[test]
fn buf_read_and_read_sizes_agree() {
    let a = noise(3 * CHUNK_SIZE / 2, 20);
    let b = noise(3 << 20, 21);
    let big = noise(FRAME_OUT_MAX + 4321, 22);
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.write_all(&big).unwrap();
    let oversized = pzstd_frame(&enc.finish().unwrap());
    let stream = [
        write_all(&a, 2, 3),
        zstd::encode_all(b.as_slice(), 3).unwrap(),
        oversized,
        skippable(3, b"x"),
        write_all(&b, 1, 3),
    ]
    .concat();
    let expected = [&a[..], &b[..], &big[..], &b[..]].concat();
    for threads in [1, 3] {
        let mut r = FrameReader::new(stream.as_slice(), threads);
        let mut out = Vec::new();
        let mut k = 1usize;
        loop {
            let buf = r.fill_buf().unwrap();
            if buf.is_empty() {
                break;
            }
            let n = buf.len().min(k);
            out.extend_from_slice(&buf[..n]);
            r.consume(n);
            k = (k * 7 + 3) % 300_000 + 1;
        }
        assert!(out == expected, "fill_buf, threads {threads}");
        let mut r = FrameReader::new(stream.as_slice(), threads);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 400_000];
        loop {
            let n = r.read(&mut buf[..k]).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            k = (k * 7 + 3) % 400_000 + 1;
        }
        assert!(out == expected, "read, threads {threads}");
        assert_eq!(r.skippable().len(), 1);
    }
}

#[test]
fn skippable_records_are_bounded() {
    let frame = write_all(b"x", 1, 3);
    let mut stream = frame.clone();
    stream.extend(skippable(1, &vec![7u8; RECORD_MAX + 1]));
    stream.extend(skippable(1, &vec![8u8; RECORD_MAX]));
    for i in 0..20u8 {
        stream.extend(skippable(u32::from(i % 16), &[i; 5]));
    }
    let (out, skipped) = read_all(&stream, 2).unwrap();
    assert_eq!(out, b"x");
    assert_eq!(skipped.len(), RECORD_COUNT);
    // The last ones are kept.
    assert_eq!(skipped[RECORD_COUNT - 1].payload, [19u8; 5]);
    assert_eq!(skipped[0].payload, [4u8; 5]);
    assert!(skipped.iter().all(|s| s.payload.len() == 5));
}

#[test]
fn every_cut_is_an_error() {
    let data = noise(300_000, 11);
    let plain = zstd::encode_all(data.as_slice(), 3).unwrap();
    let parts = [write_all(&data, 1, 3), plain, skippable(4, b"trailer")];
    let stream = parts.concat();
    // A cut between frames leaves a valid stream.
    let boundaries = [parts[0].len(), parts[0].len() + parts[1].len()];
    let mut cuts: Vec<usize> = (0..40).collect();
    cuts.extend((40..stream.len()).step_by(997));
    cuts.extend(stream.len() - 40..stream.len());
    cuts.extend(boundaries.iter().flat_map(|&b| [b - 1, b + 1]));
    cuts.retain(|c| !boundaries.contains(c));
    for threads in [1, 2] {
        for &cut in &cuts {
            let e = err_of(read_all(&stream[..cut], threads));
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                ),
                "cut {cut}: {e}"
            );
        }
        assert_eq!(read_all(&stream, threads).unwrap().0.len(), 2 * data.len());
    }
    // What the messages say.
    let ours = write_all(&data, 1, 3);
    let e = err_of(read_all(&ours[..6], 1));
    assert!(
        e.to_string()
            .contains("skippable frame at compressed byte 0"),
        "{e}"
    );
    let e = err_of(read_all(&ours[..12], 2));
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    assert!(
        e.to_string().contains("the stream ends 0 bytes into the"),
        "{e}"
    );
    let e = err_of(read_all(&ours[..100], 2));
    assert!(e.to_string().contains("88 bytes into the"), "{e}");
}

#[test]
fn corruption_is_an_error() {
    let data = noise(1 << 20, 12);
    let ours = write_all(&data, 1, 3);
    for threads in [1, 2] {
        for at in [13, 20, ours.len() / 2, ours.len() - 2] {
            let mut bad = ours.clone();
            bad[at] ^= 0x40;
            let e = err_of(read_all(&bad, threads));
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{at}: {e}");
        }
    }
    // A bad checksum is named.
    let mut bad = ours.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let e = err_of(read_all(&bad, 2));
    assert!(e.to_string().contains("checksum"), "{e}");
    // The same without a content size (streamed after the one-shot attempt).
    let theirs = sh_in("pzstd -3 -p1 -q -c", &data);
    let mut bad = theirs.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let e = err_of(read_all(&bad, 2));
    assert!(e.to_string().contains("checksum"), "{e}");
    // Garbage where a frame should start, at the start and after frames.
    let e = err_of(read_all(b"not zstd at all", 2));
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(
        e.to_string()
            .contains("expected a zstd frame or a skippable frame at compressed byte 0"),
        "{e}"
    );
    let trailing = [&ours[..], b"garbage"].concat();
    let e = err_of(read_all(&trailing, 2));
    assert!(
        e.to_string()
            .contains(&format!("at compressed byte {}", ours.len())),
        "{e}"
    );
    // Two stray bytes after the frames.
    let e = err_of(read_all(&[&ours[..], b"\x28\xb5"].concat(), 1));
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn pzstd_sizes_must_match_their_frames() {
    let data = noise(200_000, 13);
    let frame = zstd::bulk::compress(&data, 3).unwrap();
    let n = frame.len();
    let with_len = |len: usize, body: &[u8]| [&pzstd_header(len).unwrap()[..], body].concat();
    for threads in [1, 2] {
        // One byte too many: the next frame's first byte is eaten.
        let s = with_len(n + 1, &[&frame[..], &frame[..]].concat());
        let e = err_of(read_all(&s, threads));
        assert!(
            e.to_string().contains(&format!("ends after {n} bytes")),
            "{e}"
        );
        // One byte too few.
        let s = with_len(n - 1, &frame);
        let e = err_of(read_all(&s, threads));
        assert!(e.to_string().contains("does not end within"), "{e}");
        // A header with no frame after it.
        let s = [&pzstd_frame(&frame)[..], &pzstd_header(n).unwrap()[..]].concat();
        let e = err_of(read_all(&s, threads));
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("0 bytes into the"), "{e}");
        // A header followed by something else than a zstd frame.
        let sk = skippable(1, b"abcdefgh");
        let s = with_len(sk.len(), &sk);
        let e = err_of(read_all(&s, threads));
        assert!(
            e.to_string().contains("expected the zstd frame announced"),
            "{e}"
        );
    }
}

#[test]
fn oversized_frames_are_streamed() {
    // No content size and more than FRAME_OUT_MAX of output: streamed
    // after the one-shot attempt fails.
    let big = noise(FRAME_OUT_MAX + 1000, 14);
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all(&big).unwrap();
    let frame = enc.finish().unwrap();
    assert_eq!(frame_header(&frame).unwrap().content_size, None);
    let s = [&pzstd_frame(&frame)[..], &write_all(b"after", 1, 3)[..]].concat();
    for threads in [1, 2] {
        let (out, _) = read_all(&s, threads).unwrap();
        assert!(out[..big.len()] == big[..] && &out[big.len()..] == b"after");
    }
    // With a content size over the limit: streamed without trying.
    let frame = zstd::bulk::compress(&big, 1).unwrap();
    assert_eq!(
        frame_header(&frame).unwrap().content_size,
        Some(big.len() as u64)
    );
    let s = pzstd_frame(&frame);
    assert!(read_all(&s, 2).unwrap().0 == big);
    // A compressed size over FRAME_IN_MAX: streamed from the input.
    let random: Vec<u8> = {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..FRAME_IN_MAX + 100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    };
    let frame = zstd::bulk::compress(&random, 1).unwrap();
    assert!(frame.len() > FRAME_IN_MAX);
    let s = [&pzstd_frame(&frame)[..], &skippable(9, b"t")[..]].concat();
    for threads in [1, 2] {
        let (out, skipped) = read_all(&s, threads).unwrap();
        assert!(out == random);
        assert_eq!(skipped.len(), 1);
        // Its size is checked too.
        let mut bad = pzstd_frame(&frame);
        bad[8..12].copy_from_slice(&(frame.len() as u32 + 1).to_le_bytes());
        bad.push(0);
        let e = err_of(read_all(&bad, threads));
        assert!(e.to_string().contains("ends after"), "{e}");
    }
}

#[test]
fn large_windows_are_refused_on_every_path() {
    // A frame declaring a 256 MiB window (zstd --long=28 from a pipe).
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.set_parameter(zstd_safe::CParameter::WindowLog(28))
        .unwrap();
    enc.write_all(b"small").unwrap();
    let frame = enc.finish().unwrap();
    assert_eq!(frame_header(&frame).unwrap().window, 1 << 28);
    for stream in [frame.clone(), pzstd_frame(&frame)] {
        for threads in [1, 2] {
            let e = err_of(read_all(&stream, threads));
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            let msg = e.to_string();
            assert!(msg.contains("window") || msg.contains("memory"), "{msg}");
        }
    }
    // 128 MiB is still fine.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.set_parameter(zstd_safe::CParameter::WindowLog(27))
        .unwrap();
    enc.write_all(b"small").unwrap();
    let frame = enc.finish().unwrap();
    for stream in [frame.clone(), pzstd_frame(&frame)] {
        assert_eq!(read_all(&stream, 2).unwrap().0, b"small");
    }
}

fn panicking_decode(dctx: &mut DCtx<'static>, job: Job) -> Outcome {
    if job.offset > PZSTD_HEADER as u64 {
        panic!("injected decompression panic");
    }
    decode_frame(dctx, job)
}

#[test]
fn worker_panics_surface() {
    let data = noise(3 * CHUNK_SIZE, 15);
    let stream = write_all(&data, 2, 1);
    let mut r = FrameReader::with_decode_fn(stream.as_slice(), 2, panicking_decode);
    let mut out = Vec::new();
    let e = r.read_to_end(&mut out).unwrap_err();
    assert!(e.to_string().contains("panicked"), "{e}");
    assert!(out == data[..CHUNK_SIZE]);
    assert_eq!(r.read(&mut [0; 1]).unwrap_err().to_string(), e.to_string());
}

#[test]
fn dropping_a_reader_early_does_not_hang() {
    let data = noise(6 * CHUNK_SIZE, 16);
    let stream = write_all(&data, 2, 1);
    finishes_in_a_minute(move || {
        for threads in [2, 4] {
            let mut r = FrameReader::new(stream.as_slice(), threads);
            let mut buf = vec![0u8; 1000];
            r.read_exact(&mut buf).unwrap();
            drop(r);
        }
    });
}

#[test]
fn frame_headers_parse() {
    let h = |b: &[u8]| frame_header(&[&ZSTD_MAGIC.to_le_bytes()[..], b].concat());
    // pzstd level 3: checksum, window descriptor 0x58 = 2 MiB, no size.
    assert_eq!(
        h(&[0x04, 0x58]),
        Some(FrameHeader {
            window: 2 << 20,
            content_size: None
        })
    );
    // Single segment with a 1-byte size: the window is the size.
    assert_eq!(
        h(&[0x24, 0x05]),
        Some(FrameHeader {
            window: 5,
            content_size: Some(5)
        })
    );
    // 2-byte sizes are offset by 256; mantissa 3 adds 3/8.
    assert_eq!(
        h(&[0x44, 0x5b, 0x00, 0x01]),
        Some(FrameHeader {
            window: (2 << 20) + (3 << 18),
            content_size: Some(512)
        })
    );
    assert_eq!(h(&[0x44, 0x5b, 0x00]), None);
    assert_eq!(frame_header(b"\x28\xb5\x2f"), None);
}

//! pzstd's stream format as data: the magic numbers, sizes and memory
//! limits, the 12-byte size header, zstd frame header parsing, and the
//! small helpers and error messages the writer and reader share.

use std::io;

use zstd::zstd_safe;

/// Skippable frames have magics `0x184D2A50..=0x184D2A5F`; pzstd's size
/// headers use the first.
pub(super) const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// The lowest skippable magic, to which
/// [`FrameWriter::write_skippable`](super::FrameWriter::write_skippable)'s
/// `magic_low` is added.
pub(crate) const SKIPPABLE_BASE: u32 = SKIPPABLE_MAGIC;
/// Regular zstd frames (format v1).
pub(super) const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Pre-1.0 zstd frames (v0.1 to v0.7), which the library still decodes.
pub(super) const LEGACY_MAGICS: std::ops::RangeInclusive<u32> = 0xFD2F_B51E..=0xFD2F_B527;
/// Length of pzstd's size header.
pub(super) const PZSTD_HEADER: usize = 12;

/// Input bytes per frame. pzstd cuts its input every `1 << (windowLog + 2)`
/// bytes; at level 3 (windowLog 21) that is 8 MiB, which keeps the ratio
/// within 1% of one frame (each frame starts with an empty window, and a
/// 2 MiB window only ever looks 2 MiB back anyway) while giving a 705 MB tar
/// 84 frames to spread over the workers. Writing the same size for every
/// level keeps memory per worker fixed.
pub(crate) const CHUNK_SIZE: usize = 8 << 20;

/// Largest decoded frame held in memory. pzstd never writes frames larger
/// than `1 << 25` (it caps windowLog at 23); a frame that decodes to more is
/// decoded by streaming instead, in bounded memory.
pub(super) const FRAME_OUT_MAX: usize = 32 << 20;
/// Largest compressed frame read into memory: the zstd bound for a
/// `FRAME_OUT_MAX` frame. A pzstd header announcing more is decoded by
/// streaming from the input instead.
pub(super) const FRAME_IN_MAX: usize = FRAME_OUT_MAX + (FRAME_OUT_MAX >> 8) + (128 << 10);
/// Frames needing a larger window are refused (2^27 = 128 MiB, zstd's own
/// default limit), on every path, which bounds the decoder's memory.
pub(super) const WINDOW_LOG_MAX: u32 = 27;
/// Compressed plus (estimated) decompressed bytes of the frames queued
/// ahead of the reader; a new frame is read only while the total is below.
pub(super) const IN_FLIGHT_MAX: usize = 96 << 20;
/// Skippable frames with payloads up to this size are recorded.
pub(super) const RECORD_MAX: usize = 4096;
/// How many recorded skippable frames are kept (the last ones).
pub(super) const RECORD_COUNT: usize = 16;
/// Compressed-input buffer of the reader (zstd's recommended input size).
pub(super) const INPUT_BUFFER: usize = 128 << 10;
/// Buffer for the output of streamed frames, when read through `BufRead`
/// or in small reads (larger reads are decoded into directly).
pub(crate) const STREAM_BUFFER: usize = 128 << 10;

/// A skippable frame found in an archive stream, other than pzstd's frame
/// size headers (see [`crate::ExtractSummary::skippable_frames`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippableFrame {
    /// The frame's magic number, `0x184D2A50..=0x184D2A5F`.
    pub magic: u32,
    /// The frame's content.
    pub payload: Vec<u8>,
}

pub(super) fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(super) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub(super) fn eof(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg)
}

/// Remembers the first error so every later call repeats it.
pub(super) fn sticky(slot: &mut Option<(io::ErrorKind, String)>, e: io::Error) -> io::Error {
    *slot = Some((e.kind(), e.to_string()));
    e
}

pub(super) fn repeat(slot: &Option<(io::ErrorKind, String)>) -> io::Result<()> {
    match slot {
        Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
        None => Ok(()),
    }
}

pub(super) fn pzstd_header(frame_len: usize) -> io::Result<[u8; PZSTD_HEADER]> {
    let len = u32::try_from(frame_len)
        .map_err(|_| io::Error::other("a compressed frame does not fit pzstd's 32-bit size"))?;
    let mut h = [0u8; PZSTD_HEADER];
    h[..4].copy_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&4u32.to_le_bytes());
    h[8..].copy_from_slice(&len.to_le_bytes());
    Ok(h)
}

/// What the header of a zstd (v1) frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameHeader {
    /// Window size the decoder needs (the content size for single-segment frames).
    pub(super) window: u64,
    pub(super) content_size: Option<u64>,
}

/// Parses the header at the start of `b` (magic included); `None` if it is
/// not a zstd frame or is cut short.
pub(super) fn frame_header(b: &[u8]) -> Option<FrameHeader> {
    if b.len() < 5 || le32(b) != ZSTD_MAGIC {
        return None;
    }
    let fhd = b[4];
    let single_segment = fhd & 0x20 != 0;
    let mut pos = 5;
    let mut window = 0;
    if !single_segment {
        let wd = *b.get(pos)?;
        pos += 1;
        let base = 1u64 << (10 + u32::from(wd >> 3));
        window = base + (base >> 3) * u64::from(wd & 7);
    }
    pos += [0, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = match fhd >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let fcs = b.get(pos..pos + fcs_len)?;
    let mut size = fcs
        .iter()
        .rev()
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    if fcs_len == 2 {
        size += 256;
    }
    if single_segment {
        window = size;
    }
    Some(FrameHeader {
        window,
        content_size: (fcs_len > 0).then_some(size),
    })
}

pub(super) fn too_large_window(offset: u64, window: u64) -> io::Error {
    invalid(format!(
        "the zstd frame at compressed byte {offset} needs a {window}-byte window, more than \
         the {} bytes allowed",
        1u64 << WINDOW_LOG_MAX
    ))
}

pub(super) fn corrupt_frame(offset: u64, code: usize) -> io::Error {
    invalid(format!(
        "cannot decode the zstd frame at compressed byte {offset}: {}",
        zstd_safe::get_error_name(code)
    ))
}

//! The frame benchmark's way in (the `bench-frames` example, run by `cargo
//! xtask bench archive --frames`): `FrameWriter` and `FrameReader` are
//! crate-private, so it drives them through these two functions. Built only
//! with the `bench` feature; not a stable API.

use std::io::{self, Read, Write};

use super::{FrameReader, FrameWriter};

/// Compresses `input` into `out` with a `FrameWriter` at `level` on
/// `threads` threads, feeding it in 1 MiB reads; returns `out`.
pub fn compress<W: Write>(
    mut input: impl Read,
    out: W,
    level: i32,
    threads: usize,
) -> io::Result<W> {
    let mut w = FrameWriter::new(out, level, threads)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])?;
    }
    w.finish()
}

/// Decodes `input` into `out` with a `FrameReader` on `threads` threads;
/// returns the number of bytes decoded.
pub fn decompress(input: impl Read, out: &mut impl Write, threads: usize) -> io::Result<u64> {
    io::copy(&mut FrameReader::new(input, threads), out)
}

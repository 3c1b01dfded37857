//! zstd streams in pzstd's format: independent frames, each preceded by a
//! skippable frame giving its compressed size, so they can be compressed and
//! decompressed in parallel.
//!
//! ```text
//! [50 2A 4D 18][04 00 00 00][compressed size, u32 LE]   12-byte skippable frame
//! [28 B5 2F FD ... zstd frame of one chunk ...]          exactly that many bytes
//! ... repeated ...
//! [5x 2A 4D 18][payload size, u32 LE][payload]            optional trailers
//! ```
//!
//! [`FrameWriter`] writes that format with one zstd context per worker
//! thread; [`FrameReader`] decodes the frames of such a stream on worker
//! threads and falls back to streaming, one frame at a time on the caller's
//! thread, for anything else (plain `zstd` output, oversized frames), so any
//! valid zstd stream reads as the `zstd` tool would read it.

#[cfg(feature = "bench")]
pub mod bench;
mod ffi;
mod format;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use format::SkippableFrame;
pub(crate) use format::{SKIPPABLE_BASE, STREAM_BUFFER};
pub(crate) use reader::FrameReader;
pub(crate) use writer::FrameWriter;

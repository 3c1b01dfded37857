//! Entry kinds beyond files, directories and links, kept apart from the
//! dispatcher in `mod.rs`: sparse files (GNU `S` entries and pax
//! `GNU.sparse` 0.1 and 1.0, which GNU tar `-S` and bsdtar `--read-sparse`
//! write), restored as sparse files with the same contents; FIFOs, created
//! as GNU tar creates them; device nodes, created as GNU tar does when
//! running as root, otherwise skipped with one warning.

use std::io::BufRead;
use std::path::Path;

use rustix::fs::OFlags;

use super::entries::{Input, Meta, Sparse, SPARSE_SEGMENTS_MAX};
use super::policy::{self, Extractor};
use super::pool::{FileSink, Pool, CHUNK};
use crate::tarfmt::{self, BLOCK};
use crate::{sys, Error, ExtractSummary, Result};

/// Most bytes of a pax 1.0 sparse map (decimal text at the start of the data).
const MAP_TEXT_MAX: u64 = 1 << 20;

/// Restores a sparse file: `size` bytes of data (the map first for pax
/// 1.0, then the segments one after another) become the segments of a
/// file of its real size whose gaps are holes.
#[allow(clippy::too_many_arguments)]
pub(super) fn sparse<R: BufRead>(
    input: &mut Input<R>,
    ex: &mut Extractor<'_>,
    pool: &mut Pool<'_>,
    rel: &Path,
    name: &[u8],
    offset: u64,
    meta: Meta,
    size: u64,
    sparse: Sparse,
) -> Result<()> {
    policy::not_root(rel, name)?;
    let corrupt = |reason: String| Error::Corrupt { offset, reason };
    let mut left = size;
    let (real_size, map) = match sparse {
        Sparse::Map { real_size, map } => (real_size, map),
        Sparse::Pax1 { real_size } => {
            let map = pax1_map(input, &mut left).map_err(corrupt)?;
            (real_size, map)
        }
    };
    // The segments must be in order, inside the file, and exactly fill
    // the data: anything else would write where the archive does not say.
    let mut end = 0u64;
    let mut total = 0u64;
    for &(off, len) in &map {
        let seg_end = off
            .checked_add(len)
            .filter(|&e| off >= end && e <= real_size);
        end = seg_end.ok_or_else(|| corrupt("sparse map out of order or past the end".into()))?;
        total += len;
    }
    if total != left {
        return Err(corrupt(format!(
            "sparse map covers {total} bytes, the entry holds {left}"
        )));
    }
    // A worker may still hold an earlier entry of the same name: let it
    // finish first, as archive order says.
    pool.barrier()?;
    let (path, fixups) = ex.file(rel, &meta)?;
    let mut sink = FileSink::create(path, meta, fixups)?;
    for (off, len) in map {
        sink.hole_to(off);
        let mut n = len;
        while n > 0 {
            let buf = input.fill("sparse file data")?;
            let k = (buf.len() as u64).min(n).min(CHUNK as u64) as usize;
            let chunk = buf[..k].to_vec();
            input.consume(k);
            sink.write(&chunk)?;
            n -= k as u64;
        }
    }
    sink.hole_to(real_size);
    input.skip(tarfmt::padding(size) as u64, "file padding")?;
    sink.finish()?;
    ex.summary.files += 1;
    ex.summary.bytes += total;
    Ok(())
}

/// Reads the map of a pax 1.0 sparse file from the start of its data: the
/// number of segments, then offset and length of each, one decimal number
/// a line, padded to a whole block. `left` loses what was read.
fn pax1_map<R: BufRead>(input: &mut Input<R>, left: &mut u64) -> Result<Vec<(u64, u64)>, String> {
    let mut text = Vec::new();
    let mut nums: Vec<u64> = Vec::new();
    let mut want = None;
    loop {
        if let Some(w) = want {
            if nums.len() == 1 + 2 * w {
                break;
            }
        }
        if *left < BLOCK as u64 || text.len() as u64 >= MAP_TEXT_MAX {
            return Err("pax sparse map truncated or too long".into());
        }
        let block = input
            .read_vec(BLOCK, "a pax sparse map")
            .map_err(|e| e.to_string())?;
        *left -= BLOCK as u64;
        text.extend_from_slice(&block);
        // Take every complete line; what follows the last newline waits
        // for the next block.
        let cut = text.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
        for line in text[..cut].split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            if want.is_some_and(|w| nums.len() == 1 + 2 * w) {
                break;
            }
            let v = std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("bad number in a pax sparse map")?;
            if want.is_none() {
                let w = usize::try_from(v).map_err(|_| "too many sparse segments")?;
                if w > SPARSE_SEGMENTS_MAX {
                    return Err("too many sparse segments".into());
                }
                want = Some(w);
            }
            nums.push(v);
        }
        text.drain(..cut);
    }
    Ok(nums[1..].chunks(2).map(|p| (p[0], p[1])).collect())
}

/// Creates a FIFO where the policy puts a file: whatever was at its path
/// removed first, its parents real directories. It is made private, then
/// opened (without blocking, never through a symlink) to set owner, mode
/// and time through the descriptor, as for files.
pub(super) fn fifo(
    ex: &mut Extractor<'_>,
    pool: &mut Pool<'_>,
    rel: &Path,
    name: &[u8],
    meta: Meta,
) -> Result<()> {
    policy::not_root(rel, name)?;
    // A worker may still hold an earlier entry of the same name.
    pool.barrier()?;
    let (path, fixups) = ex.file(rel, &meta)?;
    let err = |op, e| Error::io(op, &path, e);
    // As `policy::create_file` does: whatever is in the way (never a
    // directory) is removed, and the FIFO made in its place.
    match sys::mkfifo(&path, 0o600) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            policy::remove_non_dir(&path)?;
            sys::mkfifo(&path, 0o600).map_err(|e| err("create FIFO", e))?;
        }
        r => r.map_err(|e| err("create FIFO", e))?,
    }
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY;
    let fd = sys::with_cstr(path.as_os_str().as_encoded_bytes(), |c| {
        sys::open_at(sys::cwd(), c, flags)
    })
    .map_err(|e| err("open FIFO", e))?;
    if fixups.chown {
        sys::fchown(&fd, meta.uid, meta.gid).map_err(|e| err("change owner of", e))?;
    }
    // After chown, which clears set-id bits; always, as it was made 0600.
    sys::fchmod(&fd, meta.mode & 0o7777).map_err(|e| err("change mode of", e))?;
    sys::futimens(&fd, meta.mtime).map_err(|e| err("set times of", e))?;
    ex.summary.fifos += 1;
    Ok(())
}

/// Whether device nodes are created: only by root, as with GNU tar (which
/// as another user fails on each one; we skip them with one warning).
pub(super) fn devices_created(root: bool) -> bool {
    root
}

/// Creates a character or block (`block`) device node with the numbers
/// `dev` where the policy puts a file, as [`fifo`] does a FIFO, but
/// without opening it (opening a device can act on it): owner, mode and
/// time are set through its path, which we just created ourselves.
#[allow(clippy::too_many_arguments)]
pub(super) fn device(
    ex: &mut Extractor<'_>,
    pool: &mut Pool<'_>,
    rel: &Path,
    name: &[u8],
    block: bool,
    dev: (u32, u32),
    meta: Meta,
) -> Result<()> {
    policy::not_root(rel, name)?;
    pool.barrier()?;
    let (path, _) = ex.file(rel, &meta)?;
    let err = |op, e| Error::io(op, &path, e);
    let make = || sys::mknod_device(&path, block, dev.0, dev.1);
    match make() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            policy::remove_non_dir(&path)?;
            make().map_err(|e| err("create device node", e))?;
        }
        r => r.map_err(|e| err("create device node", e))?,
    }
    sys::lchown(&path, meta.uid, meta.gid).map_err(|e| err("change owner of", e))?;
    sys::chmod_path(&path, meta.mode & 0o7777).map_err(|e| err("change mode of", e))?;
    sys::lutimens(&path, meta.mtime).map_err(|e| err("set times of", e))?;
    ex.summary.devices += 1;
    Ok(())
}

/// Warns about the first device node an extraction skips (the summary
/// counts and names them all).
pub(super) fn warn_device_once(summary: &ExtractSummary, name: &[u8]) {
    if summary.skipped == 0 {
        tracing::warn!(
            entry = %String::from_utf8_lossy(name),
            "device nodes in the archive are not created; skipping them"
        );
    }
}

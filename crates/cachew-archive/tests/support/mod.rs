//! Raw tar entries and archives for the extraction tests: hostile names,
//! kinds and orders that no well-behaved writer produces.
#![allow(dead_code)]

/// One raw tar entry (GNU long-name entries added when needed).
pub(crate) fn entry(name: &[u8], typ: u8, link: &[u8], data: &[u8], mode: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, value) in [(b'K', link), (b'L', name)] {
        if value.len() >= 100 {
            out.extend(entry(
                b"././@LongLink",
                kind,
                b"",
                &[value, b"\0"].concat(),
                0o644,
            ));
        }
    }
    let mut h = tar::Header::new_gnu();
    let old = h.as_old_mut();
    old.name[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    old.linkname[..link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::new(typ));
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + (512 - data.len() % 512) % 512, 0);
    out
}

/// A character (`b'3'`) or block (`b'4'`) device entry, or a FIFO (`b'6'`).
pub(crate) fn node(name: &str, typ: u8, major: u32, minor: u32, mode: u32) -> Vec<u8> {
    let mut e = entry(name.as_bytes(), typ, b"", b"", mode);
    let mut h = tar::Header::from_byte_slice(&e[..512]).clone();
    h.set_device_major(major).unwrap();
    h.set_device_minor(minor).unwrap();
    h.set_cksum();
    e[..512].copy_from_slice(h.as_bytes());
    e
}

pub(crate) fn file(name: &str, data: &[u8]) -> Vec<u8> {
    entry(name.as_bytes(), b'0', b"", data, 0o644)
}

pub(crate) fn dir(name: &str) -> Vec<u8> {
    entry(name.as_bytes(), b'5', b"", b"", 0o755)
}

pub(crate) fn sym(name: &str, target: &str) -> Vec<u8> {
    entry(name.as_bytes(), b'2', target.as_bytes(), b"", 0o777)
}

pub(crate) fn hard(name: &str, target: &str) -> Vec<u8> {
    entry(name.as_bytes(), b'1', target.as_bytes(), b"", 0o644)
}

/// Tar stream with the end-of-archive blocks, zstd-compressed.
pub(crate) fn pack(entries: &[Vec<u8>]) -> Vec<u8> {
    compress(&tar_bytes(entries, true))
}

/// zstd with a content checksum, as the zstd tool and our archiver write it.
pub(crate) fn compress(data: &[u8]) -> Vec<u8> {
    let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_checksum(true).unwrap();
    std::io::Write::write_all(&mut enc, data).unwrap();
    enc.finish().unwrap()
}

pub(crate) fn tar_bytes(entries: &[Vec<u8>], end: bool) -> Vec<u8> {
    let mut t = entries.concat();
    if end {
        t.resize(t.len() + 1024, 0);
    }
    t
}

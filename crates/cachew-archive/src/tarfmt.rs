//! Low-level tar (GNU format, as GNU tar 1.34 writes it) helpers.

use tar::{EntryType, Header};

/// Size of a tar block.
pub(crate) const BLOCK: usize = 512;
/// GNU tar pads archives to a multiple of its default record size.
pub(crate) const RECORD: u64 = 10240;
/// Names and link targets of this length or longer go into a
/// `././@LongLink` entry, as GNU tar does.
pub(crate) const NAME_FIELD: usize = 100;
/// Name GNU tar gives its long-name pseudo entries.
pub(crate) const LONG_LINK_NAME: &[u8] = b"././@LongLink";

/// Number of padding bytes after `size` bytes of data.
pub(crate) fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// Fills the 100-byte name field (truncated, as GNU tar does after writing
/// a long-name entry).
pub(crate) fn set_name_field(h: &mut Header, name: &[u8]) {
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    let n = name.len().min(NAME_FIELD);
    field[..n].copy_from_slice(&name[..n]);
}

/// Fills the 100-byte link name field (truncated).
pub(crate) fn set_link_field(h: &mut Header, link: &[u8]) {
    let field = &mut h.as_old_mut().linkname;
    field.fill(0);
    let n = link.len().min(NAME_FIELD);
    field[..n].copy_from_slice(&link[..n]);
}

/// Builds the header and data of a GNU `././@LongLink` pseudo entry
/// (`kind` is `L` for a long name, `K` for a long link target), appended to `out`.
pub(crate) fn long_link(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let mut h = Header::new_gnu();
    set_name_field(&mut h, LONG_LINK_NAME);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(value.len() as u64 + 1);
    h.set_entry_type(EntryType::new(kind));
    // GNU tar names the owner of these pseudo entries `root`.
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(value);
    out.push(0);
    let pad = padding(value.len() as u64 + 1);
    out.resize(out.len() + pad, 0);
}

/// Whether a 512-byte block is all zeros (an end-of-archive marker).
pub(crate) fn is_zero_block(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Verifies a header checksum: the unsigned sum of all bytes with the
/// checksum field taken as spaces (some old writers used a signed sum).
pub(crate) fn checksum_ok(b: &[u8]) -> bool {
    let field = &b[148..156];
    let stored = parse_octal(field);
    // Sum everything, then count the checksum field as eight spaces.
    let unsigned: u64 = b.iter().map(|&x| u64::from(x)).sum::<u64>()
        - field.iter().map(|&x| u64::from(x)).sum::<u64>()
        + 8 * u64::from(b' ');
    let signed: i64 = b.iter().map(|&x| i64::from(x as i8)).sum::<i64>()
        - field.iter().map(|&x| i64::from(x as i8)).sum::<i64>()
        + 8 * i64::from(b' ');
    match stored {
        Some(s) => s == unsigned || s as i64 == signed,
        None => false,
    }
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&c| c == b' ')
        .take_while(|&c| c != 0 && c != b' ')
        .collect();
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for c in s {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Parses a pax extended header body into `(key, value)` records.
/// One pax record: key and value.
pub(crate) type PaxRecord = (Vec<u8>, Vec<u8>);

pub(crate) fn parse_pax(data: &[u8]) -> Result<Vec<PaxRecord>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&c| c == 0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|&c| c == b' ')
            .ok_or("pax record without a length")?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("pax record with a bad length")?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("pax record with a bad length".into());
        }
        let rec = &rest[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|&c| c == b'=')
            .ok_or("pax record without `=`")?;
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records() {
        let recs = parse_pax(b"12 path=a/b\n11 size=42\n").unwrap();
        assert_eq!(recs[0], (b"path".to_vec(), b"a/b".to_vec()));
        assert_eq!(recs[1], (b"size".to_vec(), b"42".to_vec()));
        assert!(parse_pax(b"99 path=a\n").is_err());
    }

    #[test]
    fn long_link_roundtrip_checksum() {
        let mut out = Vec::new();
        long_link(&mut out, b'L', &[b'x'; 150]);
        assert_eq!(out.len(), 512 + 512);
        assert!(checksum_ok(&out[..512]));
        let mut bad = out[..512].to_vec();
        bad[0] ^= 1;
        assert!(!checksum_ok(&bad));
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
    }
}

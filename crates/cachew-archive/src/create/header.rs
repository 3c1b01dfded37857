//! Tar header numbers: the mode, owner, time, size and checksum fields
//! written exactly as the `tar` crate writes them (octal, or GNU base-256
//! when too large), without its per-field allocations.

use tar::Header;

/// Writes the mode, owner, mtime and size fields as `set_mode`, `set_uid`,
/// `set_gid`, `set_mtime` and `set_size` do, without their allocations:
/// numbers that fit are written in octal here, larger ones by the tar
/// crate (base-256).
pub(super) fn set_numbers(h: &mut Header, mode: u32, uid: u64, gid: u64, mtime: u64, size: u64) {
    octal(&mut h.as_old_mut().mode, u64::from(mode));
    if !num_field(&mut h.as_old_mut().uid, uid) {
        h.set_uid(uid);
    }
    if !num_field(&mut h.as_old_mut().gid, gid) {
        h.set_gid(gid);
    }
    if !num_field(&mut h.as_old_mut().mtime, mtime) {
        h.set_mtime(mtime);
    }
    if !num_field(&mut h.as_old_mut().size, size) {
        h.set_size(size);
    }
}

/// Writes `v` into a numeric header field as `tar`'s `octal_into` does
/// (digits right-aligned, zero-padded, then a NUL; digits that do not fit
/// are dropped), without formatting into a new `String` each time.
fn octal(field: &mut [u8], mut v: u64) {
    let (last, digits) = field.split_last_mut().expect("a numeric field");
    *last = 0;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v & 7) as u8;
        v >>= 3;
    }
}

/// Writes `v` as `tar::Header::set_uid`, `set_size`, … would when those
/// write octal; `false` (nothing written) when they would write GNU
/// base-256 instead.
fn num_field(field: &mut [u8], v: u64) -> bool {
    if v >= 1 << 33 || (v >= 1 << 21 && field.len() == 8) {
        return false;
    }
    octal(field, v);
    true
}

/// `tar::Header::set_cksum`: the unsigned sum of the header's bytes with
/// the checksum field counted as spaces, in octal.
pub(super) fn set_cksum(h: &mut Header) {
    h.as_old_mut().cksum = [b' '; 8];
    let sum: u32 = h.as_bytes().iter().map(|&b| u32::from(b)).sum();
    octal(&mut h.as_old_mut().cksum, u64::from(sum));
}

#[cfg(test)]
mod tests;

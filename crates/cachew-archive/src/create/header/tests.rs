use super::*;

#[test]
fn header_fields_match_the_tar_crate() {
    let values = [
        0u64,
        1,
        7,
        8,
        0o644,
        0o7777,
        1000,
        65534,
        (1 << 21) - 1,
        1 << 21,
        1_700_000_000,
        (1 << 33) - 1,
        1 << 33,
        u64::from(u32::MAX),
        u64::MAX,
    ];
    for v in values {
        let mut ours = Header::new_gnu();
        let mut theirs = Header::new_gnu();
        set_numbers(&mut ours, (v & 0o7777) as u32, v, v, v, v);
        theirs.set_mode((v & 0o7777) as u32);
        theirs.set_uid(v);
        theirs.set_gid(v);
        theirs.set_mtime(v);
        theirs.set_size(v);
        let _ = ours.set_username("someone");
        let _ = theirs.set_username("someone");
        set_cksum(&mut ours);
        theirs.set_cksum();
        assert_eq!(ours.as_bytes()[..], theirs.as_bytes()[..], "value {v}");
    }
}

//! The entry reader on tar streams held in memory.

use super::*;

/// Reads every entry of `tar` (skipping their data), or the first error.
fn read_all(tar: &[u8]) -> Result<Vec<Entry>> {
    let mut entries = Entries::new(tar);
    let mut out = Vec::new();
    while let Some(e) = entries.next_entry(|| Ok(()))? {
        let n = e.size + tarfmt::padding(e.size) as u64;
        entries.input().skip(n, "entry data")?;
        out.push(e);
    }
    Ok(out)
}

fn header(path: &str, typ: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(typ);
    h.set_size(size);
    h.set_mode(0o640);
    h.set_uid(1000);
    h.set_gid(100);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

/// A tar stream with one regular file per `(name, data)`, GNU format (long
/// names through `././@LongLink` entries), ended by two zero blocks.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = header("x", tar::EntryType::Regular, data.len() as u64);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A pax extended header entry holding `records`.
fn pax_entry(records: &[(&str, &str)]) -> Vec<u8> {
    let mut data = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        // The length counts its own digits.
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        data.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    let mut b = tar::Builder::new(Vec::new());
    let h = header("PaxHeaders/x", tar::EntryType::XHeader, data.len() as u64);
    b.append(&h, data.as_slice()).unwrap();
    strip_end(b.into_inner().unwrap())
}

/// `tar` without its end-of-archive blocks and record padding.
fn strip_end(mut tar: Vec<u8>) -> Vec<u8> {
    while tar.len() >= BLOCK && tarfmt::is_zero_block(&tar[tar.len() - BLOCK..]) {
        tar.truncate(tar.len() - BLOCK);
    }
    tar
}

#[test]
fn plain_entries_and_their_fields() {
    let tar = tar_of(&[("a.txt", b"hello"), ("dir/b", b"")]);
    let got = read_all(&tar).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].name, b"a.txt");
    assert_eq!(got[0].typ, b'0');
    assert_eq!(got[0].size, 5);
    assert_eq!(got[0].offset, 0);
    assert_eq!(got[0].link, None);
    assert_eq!(
        got[0].meta,
        Meta {
            mode: 0o640,
            uid: 1000,
            gid: 100,
            mtime: 1_700_000_000
        }
    );
    assert_eq!(got[1].name, b"dir/b");
    assert_eq!(got[1].offset, 2 * BLOCK as u64);
}

#[test]
fn gnu_long_names_and_links() {
    let long = format!("{}/file", "d".repeat(150));
    let tar = tar_of(&[(&long, b"data")]);
    // The long name travels in a `././@LongLink` entry before the header.
    assert_eq!(tar[156], b'L');
    let got = read_all(&tar).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, long.as_bytes());
    assert_eq!(got[0].size, 4);

    let target = "t".repeat(200);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header("x", tar::EntryType::Symlink, 0);
    b.append_link(&mut h, "link", &target).unwrap();
    let got = read_all(&b.into_inner().unwrap()).unwrap();
    assert_eq!(got[0].name, b"link");
    assert_eq!(got[0].typ, b'2');
    assert_eq!(got[0].link.as_deref(), Some(target.as_bytes()));
}

#[test]
fn pax_records_override_the_header() {
    let mut tar = pax_entry(&[
        ("path", "from/pax/name"),
        ("mtime", "1234.5"),
        ("uid", "4242"),
        ("size", "3"),
    ]);
    tar.extend(tar_of(&[("short", b"abc")]));
    let mut checks = 0;
    let mut entries = Entries::new(tar.as_slice());
    let e = entries
        .next_entry(|| {
            checks += 1;
            Ok(())
        })
        .unwrap()
        .unwrap();
    // One check before the pax header, one before the entry's own header.
    assert_eq!(checks, 2);
    assert_eq!(e.name, b"from/pax/name");
    assert_eq!(e.meta.mtime, 1234);
    assert_eq!(e.meta.uid, 4242);
    assert_eq!(e.meta.gid, 100);
    assert_eq!(e.size, 3);
    assert_eq!(e.offset, 2 * BLOCK as u64);
}

#[test]
fn bad_checksum_is_corrupt() {
    let mut tar = tar_of(&[("a", b"x")]);
    tar[0] = b'b';
    match read_all(&tar) {
        Err(Error::Corrupt { offset, reason }) => {
            assert_eq!(offset, 0);
            assert_eq!(reason, "header checksum mismatch");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_end_of_archive_is_truncation() {
    let tar = strip_end(tar_of(&[("a", b"x")]));
    assert_eq!(tar.len(), 2 * BLOCK);
    match read_all(&tar) {
        Err(Error::Truncated { offset, expected }) => {
            assert_eq!(offset, 2 * BLOCK as u64);
            assert_eq!(expected, "a tar header or the end-of-archive marker");
        }
        other => panic!("{other:?}"),
    }
    // Cut inside the data.
    match read_all(&tar[..BLOCK + 10]) {
        Err(Error::Truncated { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn metadata_without_its_entry_is_corrupt() {
    let long = "n".repeat(120);
    let tar = tar_of(&[(&long, b"")]);
    // Keep the long-name entry (header and one data block), drop the rest.
    let mut cut = tar[..2 * BLOCK].to_vec();
    cut.extend_from_slice(&[0u8; 2 * BLOCK]);
    match read_all(&cut) {
        Err(Error::Corrupt { offset, reason }) => {
            assert_eq!(offset, 2 * BLOCK as u64);
            assert!(reason.contains("long-name or pax"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn oversized_metadata_is_refused() {
    let h = header("././@LongLink", tar::EntryType::GNULongName, META_MAX + 1);
    // The header alone is enough: the limit is checked before any data.
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[0u8; 4 * BLOCK]);
    match read_all(&tar) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("limit"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_stream_is_read_to_its_end() {
    let mut tar = tar_of(&[("a", b"x")]);
    tar.extend_from_slice(b"trailing bytes");
    let mut entries = Entries::new(tar.as_slice());
    while let Some(e) = entries.next_entry(|| Ok(())).unwrap() {
        entries
            .input()
            .skip(e.size + tarfmt::padding(e.size) as u64, "data")
            .unwrap();
    }
    assert_eq!(entries.input().pos, tar.len() as u64);
    // `check` can stop the reader before any header.
    let mut entries = Entries::new(tar.as_slice());
    assert!(matches!(
        entries.next_entry(|| Err(Error::Cancelled)),
        Err(Error::Cancelled)
    ));
}

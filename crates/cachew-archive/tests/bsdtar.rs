//! Interoperability with bsdtar (libarchive), which macOS runners archive
//! with, both ways: what bsdtar writes (its default restricted pax, `pax`,
//! `gnutar`) restores through our `extract`, and what we write bsdtar
//! extracts to the same tree. Skipped, loudly, where bsdtar is not
//! installed (`apt-get install libarchive-tools`; `.ci/run` installs it).

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::Path;

use cachew_archive::{archive, extract, ArchiveOptions, ExtractOptions};
use cachew_testkit::*;

const LONG: &str =
    "a-component-name-that-is-quite-long-on-purpose-so-that-paths-exceed-the-hundred-byte-field";

fn have_bsdtar() -> bool {
    let found = std::process::Command::new("bsdtar")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: bsdtar not found (apt-get install libarchive-tools)");
    }
    found
}

/// Files, modes, long names and targets, non-UTF-8 names, symlinks, hard
/// links and an empty directory, with distinct mtimes.
fn build_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let w = |rel: &str, data: &[u8], mode: u32| {
        let p = root.join(rel);
        fs::write(&p, data).unwrap();
        chmod(&p, mode);
    };
    w("plain.txt", b"plain\n", 0o644);
    w("empty", b"", 0o600);
    w("exec.sh", b"#!/bin/sh\necho hi\n", 0o755);
    w("ro.txt", b"read only", 0o444);
    fs::create_dir(root.join("emptydir")).unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    w("sub/inside.txt", b"inside", 0o640);
    let deep = root.join(LONG).join(LONG);
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("file-with-a-long-path.txt"), b"deep").unwrap();
    fs::write(root.join(format!("{LONG}-{LONG}.txt")), b"long name").unwrap();
    fs::write(root.join("h\u{e9}llo-\u{4e16}\u{754c}.txt"), b"unicode").unwrap();
    fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"bin\xff.dat")),
        b"bin",
    )
    .unwrap();
    symlink("plain.txt", root.join("rel_link")).unwrap();
    symlink("/etc/hostname", root.join("abs_link")).unwrap();
    symlink("nope/missing", root.join("dangling")).unwrap();
    symlink(format!("{LONG}/{LONG}/x"), root.join("long_target")).unwrap();
    fs::write(root.join("hard_a"), b"shared inode").unwrap();
    fs::hard_link(root.join("hard_a"), root.join("hard_b")).unwrap();
    fs::hard_link(root.join("hard_a"), root.join("sub/hard_c")).unwrap();
    fs::hard_link(root.join("hard_a"), root.join(format!("{LONG}/hard_long"))).unwrap();
    let mut all = Vec::new();
    collect(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.into_iter().enumerate() {
        set_mtime(&p, 1_600_000_000 + 1000 * i as i64);
    }
}

fn collect(p: &Path, out: &mut Vec<std::path::PathBuf>) {
    out.push(p.to_path_buf());
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            collect(&e.unwrap().path(), out);
        }
    }
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn bsdtar_archives_extract_with_ours() {
    if !have_bsdtar() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build_tree(&src);
    for format in ["", "--format pax", "--format gnutar"] {
        let data = sh(&format!(
            "bsdtar {format} -cf - -C {} . | zstd -q -c",
            q(&src)
        ));
        let dst = dir.path().join(format!("dst{}", format.replace(' ', "")));
        for threads in [1, 4] {
            let s = extract(
                data.as_slice(),
                &dst,
                &ExtractOptions::default().with_threads(threads),
            )
            .unwrap_or_else(|e| panic!("bsdtar {format}: {e}"));
            assert_eq!(snapshot(&src), snapshot(&dst), "bsdtar {format}");
            assert_eq!(s.symlinks, 4, "bsdtar {format}");
            assert_eq!(s.hard_links, 3, "bsdtar {format}");
            assert_eq!(s.skipped, 0, "bsdtar {format}");
        }
    }
}

#[test]
fn ours_extracts_with_bsdtar() {
    if !have_bsdtar() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build_tree(&src);
    let none: [&str; 0] = [];
    let mut data = Vec::new();
    archive(&mut data, &src, &["."], &none, &ArchiveOptions::default()).unwrap();
    let dst = dir.path().join("dst");
    fs::create_dir(&dst).unwrap();
    sh_in(&format!("zstd -dc | bsdtar -xpf - -C {}", q(&dst)), &data);
    // bsdtar never sets the times of `.` (not even from its own
    // archives); everything below it must be identical.
    let below = |root: &Path| {
        let mut s = snapshot(root);
        s.remove(&b"."[..]);
        s
    };
    assert_eq!(below(&src), below(&dst));
    // bsdtar reads our zstd frames itself, too.
    let file = dir.path().join("a.tar.zst");
    fs::write(&file, &data).unwrap();
    let listing = sh(&format!("bsdtar -tf {}", q(&file)));
    assert_eq!(
        String::from_utf8_lossy(&listing).lines().count(),
        list(&src).len() + 1,
    );
}

/// A sparse file: a hole, data, a long hole, data, a hole to the end.
fn make_sparse(p: &Path) -> Vec<u8> {
    let mut want = vec![0u8; 8 << 20];
    want[1 << 20..(1 << 20) + 5].copy_from_slice(b"hello");
    want[(6 << 20) + 3..(6 << 20) + 100_003].fill(b'x');
    sh(&format!(
        "truncate -s 8M {p} && printf hello | dd of={p} bs=1 seek=1048576 conv=notrunc 2>/dev/null \
         && head -c 100000 /dev/zero | tr '\\0' x | dd of={p} bs=1 seek=6291459 conv=notrunc 2>/dev/null",
        p = q(p)
    ));
    assert_eq!(fs::read(p).unwrap(), want);
    want
}

#[test]
fn bsdtar_sparse_files_restore_sparse() {
    if !have_bsdtar() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let want = make_sparse(&src.join("sparse"));
    fs::write(src.join("after"), b"the entry after").unwrap();
    for format in ["", "--format pax"] {
        let data = sh(&format!(
            "bsdtar {format} --read-sparse -cf - -C {} . | zstd -q -c",
            q(&src)
        ));
        let dst = dir.path().join(format!("dst{}", format.replace(' ', "")));
        extract(data.as_slice(), &dst, &ExtractOptions::default())
            .unwrap_or_else(|e| panic!("bsdtar {format}: {e}"));
        check_sparse(&dst.join("sparse"), &want);
        assert_eq!(fs::read(dst.join("after")).unwrap(), b"the entry after");
    }
}

#[test]
fn gnu_sparse_files_restore_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let want = make_sparse(&src.join("sparse"));
    fs::write(src.join("after"), b"the entry after").unwrap();
    // Old GNU `S` entries (the default format), then pax 1.0 and 0.1.
    for format in [
        "--format=gnu",
        "--format=posix",
        "--format=posix --sparse-version=0.1",
    ] {
        let data = sh(&format!(
            "tar {format} -S -cf - -C {} . | zstd -q -c",
            q(&src)
        ));
        let dst = dir
            .path()
            .join(format!("dst{}", format.replace([' ', '='], "")));
        extract(data.as_slice(), &dst, &ExtractOptions::default())
            .unwrap_or_else(|e| panic!("tar {format}: {e}"));
        check_sparse(&dst.join("sparse"), &want);
        assert_eq!(fs::read(dst.join("after")).unwrap(), b"the entry after");
    }
}

fn check_sparse(p: &Path, want: &[u8]) {
    assert_eq!(fs::read(p).unwrap(), want, "{}", p.display());
    let m = fs::metadata(p).unwrap();
    // 8 MiB with about 100 KB of data: well under half of it allocated.
    assert!(
        m.blocks() * 512 < m.len() / 2,
        "{} is not sparse: {} blocks",
        p.display(),
        m.blocks()
    );
}

#[test]
fn fifos_cross_with_bsdtar() {
    if !have_bsdtar() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    sh(&format!("mkfifo {}", q(&src.join("fifo"))));
    fs::write(src.join("file"), b"after the fifo").unwrap();
    // Ours to bsdtar: bsdtar makes the FIFO.
    let none: [&str; 0] = [];
    let mut data = Vec::new();
    archive(&mut data, &src, &["."], &none, &ArchiveOptions::default()).unwrap();
    let dst = dir.path().join("dst-bsdtar");
    fs::create_dir(&dst).unwrap();
    sh_in(&format!("zstd -dc | bsdtar -xpf - -C {}", q(&dst)), &data);
    assert!(fs::symlink_metadata(dst.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    // bsdtar to ours: we make the FIFO too, with its mode.
    chmod(&src.join("fifo"), 0o640);
    let data = sh(&format!("bsdtar -cf - -C {} . | zstd -q -c", q(&src)));
    let dst = dir.path().join("dst-ours");
    let s = extract(data.as_slice(), &dst, &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(dst.join("file")).unwrap(), b"after the fifo");
    assert_eq!(s.fifos, 1);
    let m = fs::symlink_metadata(dst.join("fifo")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!(m.mode() & 0o7777, 0o640);
}

/// Extended attributes and ACLs as macOS writes them (`com.apple.*` in
/// `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*`, `SCHILY.acl.*`, file flags)
/// are not restored, and never make extraction fail.
#[test]
fn pax_xattr_and_acl_records_are_skipped() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_pax_extensions([
        (
            "SCHILY.xattr.com.apple.quarantine",
            &b"0081;5f5e1000;Safari;"[..],
        ),
        (
            "LIBARCHIVE.xattr.com.apple.FinderInfo",
            b"AAAAAAAAAAAAAAAAAAAAAA==",
        ),
        ("LIBARCHIVE.xattr.com.apple.provenance", b"AQEAAAAAAAA="),
        ("SCHILY.xattr.user.binary", b"\x00\x01\xff"),
        ("SCHILY.acl.ace", b"group:everyone:deny:delete::12"),
        ("SCHILY.acl.access", b"user::rw-,group::r--,other::r--"),
        ("SCHILY.fflags", b"hidden"),
        ("LIBARCHIVE.creationtime", b"1600000000"),
    ])
    .unwrap();
    b.append_data(&mut h, "quarantined.txt", &b"hello"[..])
        .unwrap();
    let tar = b.into_inner().unwrap();
    let data = zstd::encode_all(tar.as_slice(), 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = extract(data.as_slice(), dir.path(), &ExtractOptions::default()).unwrap();
    assert_eq!(s.files, 1);
    assert_eq!(
        fs::read(dir.path().join("quarantined.txt")).unwrap(),
        b"hello"
    );
}

/// A file with a real extended attribute, archived by bsdtar in pax (which
/// stores it twice, as `LIBARCHIVE.xattr.*` and `SCHILY.xattr.*`).
#[test]
fn bsdtar_xattrs_are_skipped() {
    if !have_bsdtar() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let f = src.join("with-xattr");
    fs::write(&f, b"data").unwrap();
    let set = std::process::Command::new("setfattr")
        .args(["-n", "user.cachew", "-v", "value"])
        .arg(&f)
        .status();
    if !set.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: setfattr not found or user xattrs not supported here");
        return;
    }
    let data = sh(&format!(
        "bsdtar --format pax -cf - -C {} . | zstd -q -c",
        q(&src)
    ));
    let tar = zstd::decode_all(data.as_slice()).unwrap();
    assert!(
        tar.windows(22).any(|w| w == b"SCHILY.xattr.user.cach"),
        "bsdtar wrote no xattr record"
    );
    let dst = dir.path().join("dst");
    extract(data.as_slice(), &dst, &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(dst.join("with-xattr")).unwrap(), b"data");
}

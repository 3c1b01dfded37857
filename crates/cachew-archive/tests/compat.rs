//! Format compatibility with GNU tar 1.34 and the zstd / pzstd tools, both ways.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use cachew_archive::{archive, extract, ArchiveOptions, ExtractOptions};
use cachew_testkit::*;

const LONG_COMPONENT: &str =
    "a-component-name-that-is-quite-long-on-purpose-so-that-paths-exceed-the-hundred-byte-field";

/// A tree with every feature PROTOCOL.md §4 asks to preserve.
fn build_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let w = |rel: &str, data: &[u8], mode: u32| {
        let p = root.join(rel);
        fs::write(&p, data).unwrap();
        chmod(&p, mode);
    };
    w("plain.txt", b"plain\n", 0o644);
    w("empty", b"", 0o644);
    w("exec.sh", b"#!/bin/sh\necho hi\n", 0o755);
    w("ro.txt", b"read only", 0o444);
    w("suid", b"setuid", 0o4755);
    w("sgid", b"setgid", 0o2711);
    fs::create_dir(root.join("emptydir")).unwrap();
    fs::create_dir(root.join("sticky")).unwrap();
    chmod(&root.join("sticky"), 0o1777);
    fs::create_dir(root.join("ro_dir")).unwrap();
    fs::write(root.join("ro_dir/inside.txt"), b"inside").unwrap();
    // Long names: a path over 100 bytes, and a single component over 100 bytes.
    let deep = root.join(LONG_COMPONENT).join(LONG_COMPONENT);
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("file-with-a-long-path.txt"), b"deep").unwrap();
    fs::write(
        root.join(format!("{LONG_COMPONENT}-{LONG_COMPONENT}.txt")),
        b"long name",
    )
    .unwrap();
    // Non-UTF-8 and unicode names.
    fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"bin\xff\xfe.dat")),
        b"binary name",
    )
    .unwrap();
    fs::write(root.join("h\u{e9}llo-\u{4e16}\u{754c}.txt"), b"unicode").unwrap();
    // Symlinks: relative, absolute, dangling, long target, to a directory.
    symlink("plain.txt", root.join("rel_link")).unwrap();
    symlink("/etc/hostname", root.join("abs_link")).unwrap();
    symlink("nope/missing", root.join("dangling")).unwrap();
    symlink(
        format!("{LONG_COMPONENT}/{LONG_COMPONENT}/x"),
        root.join("long_target"),
    )
    .unwrap();
    symlink("sticky", root.join("dir_link")).unwrap();
    // Hard links, one across directories.
    fs::write(root.join("hard_a"), b"shared inode").unwrap();
    fs::hard_link(root.join("hard_a"), root.join("hard_b")).unwrap();
    fs::hard_link(root.join("hard_a"), root.join("ro_dir/hard_c")).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(root.join("plain.txt"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("rel_link"), Some(4321), Some(8765)).unwrap();
        std::os::unix::fs::lchown(root.join("emptydir"), Some(42), Some(43)).unwrap();
    }
    // Distinct mtimes everywhere, directories last (creating entries changes them).
    let mut t = 1_600_000_000;
    let mut all = Vec::new();
    collect_paths(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in all {
        set_mtime(&p, t);
        t += 1000;
    }
    chmod(&root.join("ro_dir"), 0o555);
}

fn collect_paths(p: &Path, out: &mut Vec<std::path::PathBuf>) {
    out.push(p.to_path_buf());
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            collect_paths(&e.unwrap().path(), out);
        }
    }
}

fn ours(base: &Path, include: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let none: [&str; 0] = [];
    archive(&mut out, base, include, &none, &ArchiveOptions::default()).unwrap();
    out
}

#[test]
fn ours_extracts_with_gnu_tar() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build_tree(&src);
    let data = ours(&src, &["."]);
    let dst = dir.path().join("dst");
    fs::create_dir(&dst).unwrap();
    sh_in(
        &format!("zstd -dc | tar -xpf - -C '{}'", dst.display()),
        &data,
    );
    assert_eq!(snapshot(&src), snapshot(&dst));
}

#[test]
fn gnu_pzstd_extracts_with_ours() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build_tree(&src);
    for (tool, threads) in [
        ("pzstd -p 2 -q -c", 2),
        ("zstd -q -c", 1),
        ("zstd -T0 -q -c --no-check", 4),
    ] {
        let data = sh(&format!("tar -cpf - -C '{}' . | {tool}", src.display()));
        let dst = dir.path().join(format!("dst-{threads}"));
        let s = extract(
            data.as_slice(),
            &dst,
            &ExtractOptions::default().with_threads(threads),
        )
        .unwrap();
        assert_eq!(snapshot(&src), snapshot(&dst), "after {tool}");
        assert_eq!(s.hard_links, 2);
        assert_eq!(s.symlinks, 5);
    }
}

#[test]
fn gnu_posix_pax_format_extracts_with_ours() {
    // `--format=posix` stores long and non-ASCII names, link targets and
    // fractional times in pax extended headers instead of GNU long names.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build_tree(&src);
    let data = sh(&format!(
        "tar --format=posix -cpf - -C '{}' . | zstd -q -c",
        src.display()
    ));
    let pax_headers = sh_in("zstd -dc | grep -a -c PaxHeaders", &data);
    assert_ne!(
        String::from_utf8_lossy(&pax_headers).trim(),
        "0",
        "expected pax headers"
    );
    let dst = dir.path().join("dst");
    extract(data.as_slice(), &dst, &ExtractOptions::default()).unwrap();
    assert_eq!(snapshot(&src), snapshot(&dst));
}

#[test]
fn pzstd_output_really_has_several_frames() {
    // pzstd writes a skippable frame before each zstd frame; make sure the
    // input in the test above is what we think, with enough data for two frames.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut state = 1u64;
    let noise: Vec<u8> = (0..12 << 20)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8 & 0x0f
        })
        .collect();
    fs::write(src.join("noise"), &noise).unwrap();
    let data = sh(&format!(
        "tar -cpf - -C '{}' . | pzstd -p 2 -1 -q -c",
        src.display()
    ));
    // Skippable frame magic 0x184D2A50 (little endian) at the start.
    assert_eq!(&data[..4], &[0x50, 0x2a, 0x4d, 0x18]);
    let frames = data
        .windows(4)
        .filter(|w| w == &[0x28, 0xb5, 0x2f, 0xfd])
        .count();
    assert!(frames >= 2, "expected several frames, found {frames}");
    let dst = dir.path().join("dst");
    extract(data.as_slice(), &dst, &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(dst.join("noise")).unwrap(), noise);
}

#[test]
fn entry_names_match_gnu_tar() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build_tree(&src);
    for include in [
        vec!["."],
        vec!["sticky", "ro_dir/"],
        vec!["plain.txt", "rel_link", "./emptydir"],
    ] {
        let gnu = sh(&format!(
            "tar -cpf - -C '{}' -- {} | zstd -q -c",
            src.display(),
            include.join(" ")
        ));
        let ours = ours(&src, &include);
        assert_eq!(gnu_list(&ours), gnu_list(&gnu), "include {include:?}");
    }
    // `./x` style names when the include path is `.`.
    let names = gnu_list(&ours(&src, &["."]));
    assert!(names.contains(&"./".to_string()));
    assert!(names.contains(&"./plain.txt".to_string()));
    assert!(names.contains(&"./sticky/".to_string()));
}

#[test]
fn include_path_errors() {
    let dir = tempfile::tempdir().unwrap();
    let none: [&str; 0] = [];
    let err = archive(
        Vec::new(),
        dir.path(),
        &["foo"],
        &none,
        &ArchiveOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "include path `foo` does not exist under `{}`",
            dir.path().display()
        )
    );
    let empty: [&str; 0] = [];
    assert!(matches!(
        archive(
            Vec::new(),
            dir.path(),
            &empty,
            &none,
            &ArchiveOptions::default()
        ),
        Err(cachew_archive::Error::NoIncludePaths)
    ));
    for bad in ["/etc", "../x", "a/../../b"] {
        assert!(matches!(
            archive(
                Vec::new(),
                dir.path(),
                &[bad],
                &none,
                &ArchiveOptions::default()
            ),
            Err(cachew_archive::Error::InvalidIncludePath { .. })
        ));
    }
}

#[test]
fn files_over_4_gib_both_ways() {
    const SIZE: u64 = (4 << 30) + 4096 + 3;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let big = src.join("big");
    {
        let mut f = fs::File::create(&big).unwrap();
        f.write_all(b"BEG").unwrap();
        f.seek(SeekFrom::Start(SIZE - 3)).unwrap();
        f.write_all(b"END").unwrap();
    }
    fs::write(src.join("zz_after.txt"), b"after the big one").unwrap();

    // Ours -> GNU: the size is listed right, and the member after it is
    // found at the right offset (GNU tar reads through the data to get there).
    let compressed = ours(&src, &["."]);
    let listing = String::from_utf8(sh_in("zstd -dc | tar -tvf -", &compressed)).unwrap();
    assert!(listing.contains(&format!(" {SIZE} ")), "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.contains(" 17 ") && l.ends_with("./zz_after.txt")),
        "{listing}"
    );

    // GNU -> ours: content at both ends, written sparse.
    let gnu = sh(&format!(
        "tar -cpf - -C '{}' . | zstd -1 -T0 -q -c",
        src.display()
    ));
    let dst = dir.path().join("dst");
    extract(gnu.as_slice(), &dst, &ExtractOptions::default()).unwrap();
    let m = fs::metadata(dst.join("big")).unwrap();
    assert_eq!(m.len(), SIZE);
    let mut f = fs::File::open(dst.join("big")).unwrap();
    let mut head = [0u8; 3];
    f.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"BEG");
    f.seek(SeekFrom::Start(SIZE - 3)).unwrap();
    let mut tail = [0u8; 3];
    f.read_exact(&mut tail).unwrap();
    assert_eq!(&tail, b"END");
    assert!(m.blocks() * 512 < 64 << 20, "zeros should become holes");
    assert_eq!(
        fs::read(dst.join("zz_after.txt")).unwrap(),
        b"after the big one"
    );
}

#[test]
fn ownership_restored_only_as_root() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    if is_root() {
        std::os::unix::fs::chown(src.join("f"), Some(777), Some(888)).unwrap();
    }
    let dst = dir.path().join("dst");
    extract(
        ours(&src, &["."]).as_slice(),
        &dst,
        &ExtractOptions::default(),
    )
    .unwrap();
    let m = fs::metadata(dst.join("f")).unwrap();
    if is_root() {
        assert_eq!((m.uid(), m.gid()), (777, 888));
    } else {
        // SAFETY: no preconditions.
        assert_eq!(m.uid(), unsafe { libc::geteuid() });
    }
}

#[test]
fn compression_level_and_threads_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let text: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("line {} of text\n", i % 977).into_bytes())
        .collect();
    fs::write(src.join("t"), &text).unwrap();
    let none: [&str; 0] = [];
    let mut sizes = Vec::new();
    for (level, threads) in [(1, 1), (19, 2)] {
        let mut out = Vec::new();
        let s = archive(
            &mut out,
            &src,
            &["."],
            &none,
            &ArchiveOptions::default()
                .with_level(level)
                .with_threads(threads),
        )
        .unwrap();
        assert_eq!(s.compressed_bytes, out.len() as u64);
        assert_eq!(s.entries, 2);
        assert!(s.uncompressed_bytes > text.len() as u64);
        // Our output is plain zstd: the zstd tool checks it (with its checksum).
        sh_in("zstd -t -q", &out);
        sizes.push(out.len());
    }
    assert!(
        sizes[1] < sizes[0],
        "level 19 should compress better than level 1: {sizes:?}"
    );
}

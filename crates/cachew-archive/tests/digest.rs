//! The archiver's in-pass tree digest agrees with the standalone walk, and
//! its trailer is invisible to every zstd decoder.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use cachew_archive::digest::TRAILER_LEN;
use cachew_archive::{archive, extract, tree_digest, ArchiveOptions, ExtractOptions, TreeDigest};
use cachew_testkit::{sh, sh_in};

/// A tree with every kind the digest covers, and some it leaves out.
fn tree(root: &Path) {
    fs::create_dir_all(root.join("src/sub")).unwrap();
    fs::create_dir_all(root.join("target/debug")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("src/a.rs"), "fn main() {}\n").unwrap();
    fs::write(root.join("src/empty.txt"), "").unwrap();
    // Larger than the archiver reads whole: streamed and hashed in chunks.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(root.join("src/sub/big.bin"), &big).unwrap();
    fs::write(root.join("target/debug/x.o"), "obj").unwrap();
    fs::hard_link(root.join("src/a.rs"), root.join("src/hard.rs")).unwrap();
    fs::hard_link(root.join("src/sub/big.bin"), root.join("big-again.bin")).unwrap();
    symlink("src/a.rs", root.join("link")).unwrap();
    symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    fs::set_permissions(root.join("src/a.rs"), fs::Permissions::from_mode(0o751)).unwrap();
    let fifo = root.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

fn archived(
    base: &Path,
    includes: &[&str],
    excludes: &[&str],
    threads: usize,
) -> (Vec<u8>, TreeDigest) {
    let mut out = Vec::new();
    let opts = ArchiveOptions::default()
        .with_digest(true)
        .with_threads(threads);
    let summary = archive(&mut out, base, includes, excludes, &opts).unwrap();
    let d = summary.digest.expect("digest requested");
    (out, d)
}

#[test]
fn in_pass_digest_equals_the_standalone_walk() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    tree(&base);
    let cases: &[(&[&str], &[&str])] = &[
        (&["."], &[]),
        (&["."], &["target"]),
        (&["."], &["*.o", "*.bin"]),
        (&["src", "link", "big-again.bin"], &[]),
        (&["src/sub/big.bin", "empty"], &[]),
        (&["src/hard.rs", "src"], &[]),
    ];
    let mut seen = Vec::new();
    for (includes, excludes) in cases {
        for threads in [1, 2, 4] {
            let (out, d) = archived(&base, includes, excludes, threads);
            let walked = tree_digest(&base, includes, excludes, 2).unwrap();
            assert_eq!(
                d, walked.digest,
                "{includes:?} {excludes:?} threads {threads}"
            );
            assert_eq!(TreeDigest::from_trailer(&out), Some(d), "{includes:?}");
        }
        let d = tree_digest(&base, includes, excludes, 1).unwrap().digest;
        assert!(!seen.contains(&d), "{includes:?} {excludes:?} collides");
        seen.push(d);
    }
}

#[test]
fn trailer_is_skipped_by_zstd_and_pzstd_and_reported_by_extract() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    tree(&base);
    let (with, d) = archived(&base, &["."], &[], 2);
    let mut without = Vec::new();
    archive(
        &mut without,
        &base,
        &["."],
        &[] as &[&str],
        &ArchiveOptions::default(),
    )
    .unwrap();
    assert_eq!(TreeDigest::from_trailer(&without), None);
    assert_eq!(&with[with.len() - TRAILER_LEN..], &d.to_trailer()[..]);

    // The tar stream inside is the same, and both tools skip the trailer.
    let plain = sh_in("zstd -dc", &without);
    assert_eq!(sh_in("zstd -dc", &with), plain);
    assert_eq!(sh_in("pzstd -dc", &with), plain);
    let listed =
        String::from_utf8(sh_in("zstd -dc | tar -tvf - >/dev/null && echo ok", &with)).unwrap();
    assert_eq!(listed.trim(), "ok");

    let target = dir.path().join("out");
    let summary = extract(with.as_slice(), &target, &ExtractOptions::default()).unwrap();
    assert_eq!(summary.tree_digest, Some(d));
    // The restored tree has the digest the archive carries (the digest
    // leaves FIFOs and device nodes out, on both sides).
    assert_eq!(
        tree_digest(&target, &["."], &[] as &[&str], 2)
            .unwrap()
            .digest,
        d
    );
    let summary = extract(
        without.as_slice(),
        &dir.path().join("out2"),
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(summary.tree_digest, None);
}

#[test]
fn gnu_tar_archives_extract_to_the_same_digest() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    tree(&base);
    let (_, d) = archived(&base, &["."], &["target"], 2);
    let gnu = sh(&format!(
        "tar -cpf - -C '{}' --exclude target . | pzstd -q -c",
        base.display()
    ));
    let target = dir.path().join("out");
    let summary = extract(gnu.as_slice(), &target, &ExtractOptions::default()).unwrap();
    assert_eq!(summary.tree_digest, None, "GNU tar writes no trailer");
    assert_eq!(
        tree_digest(&target, &["."], &[] as &[&str], 2)
            .unwrap()
            .digest,
        d
    );
}

//! Hostile and broken archives: nothing is ever written outside the target,
//! and a truncated or corrupt stream is an error.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use cachew_archive::{extract, Error, ExtractOptions};
use cachew_testkit::*;

mod support;
use support::*;

struct Scene {
    _dir: tempfile::TempDir,
    target: std::path::PathBuf,
    outside: std::path::PathBuf,
}

impl Scene {
    fn new() -> Self {
        let dir = fast_tempdir();
        let target = dir.path().join("target");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        Scene {
            target,
            outside,
            _dir: dir,
        }
    }

    /// Extracts with both the inline path and the worker pool.
    fn extract(&self, archive: &[u8]) -> Vec<Result<cachew_archive::ExtractSummary, Error>> {
        let mut results = Vec::new();
        for threads in [1, 3] {
            let _ = fs::remove_dir_all(&self.target);
            results.push(extract(
                archive,
                &self.target,
                &ExtractOptions::default().with_threads(threads),
            ));
            self.assert_outside_untouched();
        }
        results
    }

    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["secret"],
            "something was written outside the target"
        );
        let m = fs::metadata(self.outside.join("secret")).unwrap();
        assert_eq!(fs::read(self.outside.join("secret")).unwrap(), b"secret");
        assert_eq!(m.nlink(), 1, "a hard link to an outside file was made");
        assert_eq!(m.mode() & 0o7777, 0o644);
        // Nothing next to the target or outside either.
        let parent: Vec<_> = fs::read_dir(self.outside.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        for n in parent {
            assert!(
                n == "outside" || n == "target",
                "unexpected `{n}` next to the target"
            );
        }
    }
}

fn unsafe_reason(r: &Result<cachew_archive::ExtractSummary, Error>) -> String {
    match r {
        Err(Error::UnsafeEntry { reason, .. }) => reason.clone(),
        other => panic!("expected an unsafe-entry error, got {other:?}"),
    }
}

#[test]
fn absolute_and_dotdot_names_are_refused() {
    let s = Scene::new();
    let abs = s.outside.join("abs.txt");
    for r in s.extract(&pack(&[file(abs.to_str().unwrap(), b"x")])) {
        assert_eq!(unsafe_reason(&r), "is an absolute path");
    }
    for name in ["../outside/evil", "a/../../outside/evil", "./../evil", ".."] {
        for r in s.extract(&pack(&[file("ok.txt", b"fine"), file(name, b"x")])) {
            let msg = r.unwrap_err().to_string();
            assert_eq!(
                msg,
                format!("archive entry `{name}` escapes the target directory")
            );
        }
    }
    // A long (GNU long-name) `..` path is refused too.
    let long = format!("{}/../../../outside/evil", "d/".repeat(60));
    for r in s.extract(&pack(&[file(&long, b"x")])) {
        assert_eq!(unsafe_reason(&r), "escapes the target directory");
    }
}

#[test]
fn writing_through_an_archive_symlink_stays_inside() {
    let s = Scene::new();
    let out = s.outside.to_str().unwrap().to_string();
    for link_target in [
        out.as_str(),
        "../outside",
        "../../../../../../../../../../tmp/../tmp",
    ] {
        let archive = pack(&[
            sym("link", link_target),
            file("link/pwned", b"x"),
            file("link/secret", b"overwritten"),
        ]);
        for r in s.extract(&archive) {
            // Either refused or written inside the target: never outside
            // (checked by `extract` itself).
            if r.is_ok() {
                assert!(fs::symlink_metadata(s.target.join("link"))
                    .unwrap()
                    .is_dir());
            }
        }
    }
    // Symlink chains: `a -> .`, `a/b -> ../outside`, then writes through `a/b`.
    let archive = pack(&[
        sym("a", "."),
        sym("a/b", "../outside"),
        file("a/b/secret", b"overwritten"),
    ]);
    s.extract(&archive);
}

/// A symlink already in the target that leads outside it, in a parent
/// position, refuses the entry with an error naming it and the symlink;
/// nothing is written through it (GNU tar would write outside). A file
/// entry at a symlink's own name replaces the symlink.
#[test]
fn existing_symlinks_leading_outside_are_refused() {
    let s = Scene::new();
    let abs = s.outside.to_str().unwrap().to_string();
    for (link, why) in [
        (abs.as_str(), "an absolute path"),
        ("../outside", "a path above the target directory"),
        ("sub/../../outside", "a path above the target directory"),
        ("sub/up/../outside", "a path above the target directory"),
    ] {
        for threads in [1, 2] {
            let _ = fs::remove_dir_all(&s.target);
            fs::create_dir_all(s.target.join("sub")).unwrap();
            symlink("..", s.target.join("sub/up")).unwrap();
            symlink(link, s.target.join("dirlink")).unwrap();
            symlink(s.outside.join("secret"), s.target.join("filelink")).unwrap();
            let archive = pack(&[
                file("filelink", b"overwritten"),
                file("ok", b"fine"),
                file("dirlink/secret", b"overwritten"),
                file("dirlink/new", b"x"),
            ]);
            let err = extract(
                archive.as_slice(),
                &s.target,
                &ExtractOptions::default().with_threads(threads),
            )
            .unwrap_err();
            s.assert_outside_untouched();
            assert_eq!(
                err.to_string(),
                format!(
                    "archive entry `dirlink/secret` would be written through `dirlink`, a \
                     symlink to `{link}`: {why}, outside the target directory"
                ),
                "{link}"
            );
            assert_eq!(
                fs::read_link(s.target.join("dirlink")).unwrap(),
                Path::new(link)
            );
            assert!(fs::symlink_metadata(s.target.join("filelink"))
                .unwrap()
                .is_file());
        }
    }
}

#[test]
fn directory_entry_replaces_a_symlink() {
    let s = Scene::new();
    fs::create_dir(&s.target).unwrap();
    symlink(&s.outside, s.target.join("d")).unwrap();
    let archive = pack(&[dir("d/"), file("d/secret", b"overwritten")]);
    extract(archive.as_slice(), &s.target, &ExtractOptions::default()).unwrap();
    s.assert_outside_untouched();
    assert!(fs::symlink_metadata(s.target.join("d")).unwrap().is_dir());
    // When the archive itself replaces the directory by a symlink leading
    // outside, and a later batch of links is flushed before the directory
    // is used again, the directory cache must not vouch for the path: the
    // entry below it is refused.
    let mut entries = vec![dir("d/"), sym("d", s.outside.to_str().unwrap())];
    for i in 0..16 * 1024 {
        entries.push(sym(&format!("filler/{i}"), "x"));
    }
    entries.push(file("d/secret", b"overwritten"));
    entries.push(dir("d/"));
    for r in s.extract(&pack(&entries)) {
        assert!(unsafe_reason(&r).contains("an absolute path, outside the target"));
        assert!(fs::symlink_metadata(s.target.join("d"))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}

#[test]
fn hard_links_to_outside_are_refused() {
    let s = Scene::new();
    let abs = s.outside.join("secret");
    for r in s.extract(&pack(&[hard("h", abs.to_str().unwrap())])) {
        assert!(unsafe_reason(&r).contains("escapes the target directory"));
    }
    for r in s.extract(&pack(&[hard("h", "../outside/secret")])) {
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("hard link to `../outside/secret`"), "{msg}");
    }
    // Through a symlink the archive placed, absolute or relative: the
    // source's parent is resolved as a parent symlink is, and refused.
    for (link, why) in [
        (s.outside.to_str().unwrap(), "an absolute path"),
        ("../outside", "a path above the target directory"),
    ] {
        for r in s.extract(&pack(&[sym("s", link), hard("h", "s/secret")])) {
            assert_eq!(
                unsafe_reason(&r),
                format!(
                    "would be written through `s`, a symlink to `{link}`: {why}, outside the \
                     target directory"
                )
            );
        }
    }
    // Then writing to the hard link must not reach outside either.
    s.extract(&pack(&[
        sym("s", "../outside/secret"),
        hard("h", "s"),
        file("h", b"overwritten"),
    ]));
}

#[test]
fn existing_hard_link_is_replaced_not_written_through() {
    let s = Scene::new();
    fs::create_dir(&s.target).unwrap();
    fs::hard_link(s.outside.join("secret"), s.target.join("f")).unwrap();
    extract(
        pack(&[file("f", b"new")]).as_slice(),
        &s.target,
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read(s.target.join("f")).unwrap(), b"new");
    s.assert_outside_untouched();
}

/// FIFOs are created, as GNU tar does, with the archive's mode and time,
/// in place of a file (not through it). Device nodes: `tests/devices.rs`.
#[test]
fn fifos_are_created() {
    use std::os::unix::fs::FileTypeExt;
    let s = Scene::new();
    let archive = pack(&[
        dir("sub"),
        file("sub/over-file", b"replaced"),
        entry(b"fifo", b'6', b"", b"", 0o640),
        entry(b"sub/over-file", b'6', b"", b"", 0o600),
        file("ok", b"ok"),
    ]);
    for r in s.extract(&archive) {
        let sum = r.unwrap();
        assert_eq!(sum.skipped, 0);
        assert_eq!(sum.fifos, 2);
        assert_eq!(sum.files, 2);
    }
    let m = fs::symlink_metadata(s.target.join("fifo")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!(m.permissions().mode() & 0o7777, 0o640);
    assert_eq!(m.mtime(), 1_700_000_000);
    let m = fs::symlink_metadata(s.target.join("sub/over-file")).unwrap();
    assert!(m.file_type().is_fifo());
    s.assert_outside_untouched();
}

#[test]
fn the_target_itself_cannot_be_replaced() {
    let s = Scene::new();
    for e in [file("./", b"x"), sym(".", "/"), hard("./", "x")] {
        for r in s.extract(&pack(std::slice::from_ref(&e))) {
            assert_eq!(unsafe_reason(&r), "would replace the target directory");
        }
    }
}

fn valid_archive() -> Vec<u8> {
    let big: Vec<u8> = (0..300_000u32)
        .flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes())
        .collect();
    pack(&[
        dir("d/"),
        file("d/a", b"hello"),
        file("d/big", &big),
        file("d/z", b"last"),
    ])
}

#[test]
fn truncated_streams_are_errors() {
    let s = Scene::new();
    let good = valid_archive();
    assert!(s.extract(&good).into_iter().all(|r| r.is_ok()));
    for cut in [
        0,
        1,
        4,
        20,
        good.len() / 3,
        good.len() / 2,
        good.len() - 5,
        good.len() - 1,
    ] {
        for r in s.extract(&good[..cut]) {
            assert!(
                r.is_err(),
                "truncated at {cut} of {} was accepted",
                good.len()
            );
        }
    }
    // A complete zstd stream whose tar lacks the end-of-archive blocks (a
    // cut at a frame boundary looks like this).
    let no_end = zstd::encode_all(tar_bytes(&[file("a", b"x")], false).as_slice(), 3).unwrap();
    for r in s.extract(&no_end) {
        assert!(matches!(r, Err(Error::Truncated { .. })), "{r:?}");
    }
    // A tar cut inside file data, then validly compressed.
    let mut t = tar_bytes(&[file("a", &[7u8; 5000])], false);
    t.truncate(2048);
    for r in s.extract(&zstd::encode_all(t.as_slice(), 3).unwrap()) {
        assert!(matches!(r, Err(Error::Truncated { .. })), "{r:?}");
    }
}

#[test]
fn corrupt_streams_are_errors() {
    let s = Scene::new();
    let good = valid_archive();
    for at in [good.len() / 4, good.len() / 2, good.len() - 8] {
        let mut bad = good.clone();
        bad[at] ^= 0x55;
        for r in s.extract(&bad) {
            assert!(r.is_err(), "corruption at {at} was accepted");
        }
    }
    // A bad header checksum inside a good zstd stream.
    let mut t = tar_bytes(&[file("a", b"x"), file("b", b"y")], true);
    t[512 * 2 + 3] ^= 1;
    for r in s.extract(&zstd::encode_all(t.as_slice(), 3).unwrap()) {
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
    }
    // Garbage after the archive.
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"garbage after the frames");
    for r in s.extract(&trailing) {
        assert!(r.is_err());
    }
    // Not zstd at all.
    for r in s.extract(&tar_bytes(&[file("a", b"x")], true)) {
        assert!(matches!(r, Err(Error::Read(_))), "{r:?}");
    }
    // An absurd long name is refused before it is buffered.
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_size(1 << 40);
    h.set_entry_type(tar::EntryType::new(b'L'));
    h.set_cksum();
    for r in s.extract(&zstd::encode_all(&h.as_bytes()[..], 3).unwrap()) {
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
    }
}

#[test]
fn read_only_directories_are_loosened_and_restored() {
    let s = Scene::new();
    fs::create_dir_all(s.target.join("ro/sub")).unwrap();
    fs::write(s.target.join("ro/f"), b"old").unwrap();
    chmod(&s.target.join("ro/sub"), 0o500);
    chmod(&s.target.join("ro"), 0o555);
    let archive = pack(&[file("ro/f", b"new"), file("ro/sub/g", b"g")]);
    extract(archive.as_slice(), &s.target, &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(s.target.join("ro/f")).unwrap(), b"new");
    assert_eq!(
        fs::metadata(s.target.join("ro"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o555
    );
    assert_eq!(
        fs::metadata(s.target.join("ro/sub"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o500
    );

    // On failure, too.
    let mut t = tar_bytes(&[file("ro/f", b"newer"), file("ro/h", &[1u8; 3000])], false);
    t.truncate(t.len() - 1000);
    let err = extract(
        zstd::encode_all(t.as_slice(), 3).unwrap().as_slice(),
        &s.target,
        &ExtractOptions::default(),
    );
    assert!(err.is_err());
    assert_eq!(
        fs::metadata(s.target.join("ro"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o555
    );

    // The target itself, read-only.
    chmod(&s.target, 0o555);
    extract(
        pack(&[file("top", b"t")]).as_slice(),
        &s.target,
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read(s.target.join("top")).unwrap(), b"t");
    assert_eq!(
        fs::metadata(&s.target).unwrap().permissions().mode() & 0o7777,
        0o555
    );
    chmod(&s.target, 0o755);

    // A directory entry in the archive sets the final mode.
    let archive = pack(&[dir("ro/"), file("ro/f", b"newest")]);
    extract(archive.as_slice(), &s.target, &ExtractOptions::default()).unwrap();
    assert_eq!(
        fs::metadata(s.target.join("ro"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    chmod(&s.target.join("ro/sub"), 0o755);
}

#[test]
fn existing_files_are_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("t");
    fs::create_dir_all(target.join("d")).unwrap();
    fs::write(target.join("d/f"), b"a much longer old content").unwrap();
    fs::write(target.join("keep"), b"untouched").unwrap();
    symlink("somewhere", target.join("was_link")).unwrap();
    let archive = pack(&[
        file("d/f", b"new"),
        file("was_link", b"now a file"),
        sym("d/l", "f"),
    ]);
    extract(archive.as_slice(), &target, &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(target.join("d/f")).unwrap(), b"new");
    assert_eq!(fs::read(target.join("was_link")).unwrap(), b"now a file");
    assert_eq!(fs::read(target.join("keep")).unwrap(), b"untouched");
    assert_eq!(fs::read_link(target.join("d/l")).unwrap(), Path::new("f"));
    // Extracting the same archive again works (symlink replaced in place).
    extract(archive.as_slice(), &target, &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(target.join("d/l")).unwrap(), b"new");
}

#[test]
fn duplicate_entries_keep_archive_order() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![b'b'; 700_000];
    let archive = pack(&[
        file("f", &big),
        file("f", b"small wins"),
        file("g", b"1"),
        file("g", &big),
    ]);
    for threads in [1, 2, 4] {
        let t = dir.path().join(format!("t{threads}"));
        extract(
            archive.as_slice(),
            &t,
            &ExtractOptions::default().with_threads(threads),
        )
        .unwrap();
        assert_eq!(fs::read(t.join("f")).unwrap(), b"small wins");
        assert_eq!(fs::read(t.join("g")).unwrap(), big);
    }
}

/// Lesson 1 for real: as an ordinary user (root ignores permissions), a
/// read-only tree is made writable, updated, and its modes restored. Runs
/// this test binary again under `setpriv` as `nobody`.
#[test]
fn read_only_tree_as_an_ordinary_user() {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv to switch to an ordinary user");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let reachable = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "test",
            "-x",
        ])
        .arg(&exe)
        .status()
        .is_ok_and(|s| s.success());
    if !reachable {
        eprintln!(
            "skipped: nobody cannot run {} (a private target directory?)",
            exe.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let target = dir.path().join("t");
    fs::create_dir_all(target.join("ro/sub")).unwrap();
    fs::write(target.join("ro/sub/f"), b"old").unwrap();
    let archive = dir.path().join("a.tzst");
    fs::write(
        &archive,
        pack(&[file("ro/sub/f", b"new"), file("ro/g", b"g")]),
    )
    .unwrap();
    let broken = dir.path().join("broken.tzst");
    let mut t = tar_bytes(
        &[file("ro/sub/f", b"newer"), file("ro/h", &[1u8; 3000])],
        false,
    );
    t.truncate(t.len() - 1000);
    fs::write(&broken, compress(&t)).unwrap();
    sh(&format!("chown -R 65534:65534 '{}'", target.display()));
    chmod(&target.join("ro/sub"), 0o555);
    chmod(&target.join("ro"), 0o555);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", "ordinary_user_child", "--nocapture"])
        .env("CACHEW_TEST_RO_DIR", dir.path())
        .output()
        .unwrap();
    child_log(&out);
    assert_eq!(fs::read(target.join("ro/sub/f")).unwrap(), b"new");
    assert_eq!(fs::read(target.join("ro/g")).unwrap(), b"g");
    for d in ["ro", "ro/sub"] {
        assert_eq!(
            fs::metadata(target.join(d)).unwrap().permissions().mode() & 0o7777,
            0o555,
            "{d}"
        );
    }
}

/// The unprivileged half of `read_only_tree_as_an_ordinary_user`; does
/// nothing unless started by it.
#[test]
fn ordinary_user_child() {
    let Some(dir) = std::env::var_os("CACHEW_TEST_RO_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let target = dir.join("t");
    // SAFETY: no preconditions.
    assert_ne!(unsafe { libc::geteuid() }, 0);
    // Without loosening, creating `ro/g` would fail with EACCES.
    let archive = fs::read(dir.join("a.tzst")).unwrap();
    extract(archive.as_slice(), &target, &ExtractOptions::default()).unwrap();
    // A failing extraction restores the modes too.
    let broken = fs::read(dir.join("broken.tzst")).unwrap();
    assert!(extract(broken.as_slice(), &target, &ExtractOptions::default()).is_err());
    println!("child checked");
}

/// One pax record, its length counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}").len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// A pax 1.0 sparse file of `real_size` bytes whose data is `map` (the
/// decimal map, padded here to a block) then `data`.
fn pax_sparse(real_size: u64, map: &str, data: &[u8]) -> Vec<Vec<u8>> {
    let recs = [
        pax_record("GNU.sparse.major", "1"),
        pax_record("GNU.sparse.minor", "0"),
        pax_record("GNU.sparse.name", "sparse"),
        pax_record("GNU.sparse.realsize", &real_size.to_string()),
    ]
    .concat();
    let mut body = map.as_bytes().to_vec();
    body.resize(body.len().div_ceil(512) * 512, 0);
    body.extend_from_slice(data);
    vec![
        entry(b"PaxHeader/sparse", b'x', b"", &recs, 0o644),
        entry(b"GNUSparseFile.0/sparse", b'0', b"", &body, 0o644),
    ]
}

/// A sparse map must stay inside the file, in order, and cover exactly
/// the data that follows; a map without end is not read into memory.
#[test]
fn bad_sparse_maps_are_refused() {
    let ok = pax_sparse(100, "1\n50\n10\n", &[b'x'; 10]);
    let dir = tempfile::tempdir().unwrap();
    extract(pack(&ok).as_slice(), dir.path(), &ExtractOptions::default()).unwrap();
    let got = fs::read(dir.path().join("sparse")).unwrap();
    assert_eq!(got, [&[0u8; 50][..], &[b'x'; 10], &[0u8; 40]].concat());
    for (what, entries) in [
        ("past the end", pax_sparse(100, "1\n95\n10\n", &[b'x'; 10])),
        (
            "offset overflow",
            pax_sparse(100, "1\n18446744073709551615\n10\n", &[b'x'; 10]),
        ),
        (
            "out of order",
            pax_sparse(100, "2\n50\n5\n10\n5\n", &[b'x'; 10]),
        ),
        (
            "data longer than the map",
            pax_sparse(100, "1\n0\n10\n", &[b'x'; 20]),
        ),
        (
            "data shorter than the map",
            pax_sparse(100, "1\n0\n600\n", &[b'x'; 10]),
        ),
        ("too many segments", pax_sparse(100, "99999999999\n", &[])),
        (
            "not a number",
            pax_sparse(100, "1\nfifty\n10\n", &[b'x'; 10]),
        ),
        (
            "no end",
            pax_sparse(100, &format!("1000000\n{}", "0\n".repeat(2000)), &[]),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let r = extract(
            pack(&entries).as_slice(),
            dir.path(),
            &ExtractOptions::default(),
        );
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{what}: {r:?}");
    }
}

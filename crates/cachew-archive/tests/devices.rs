//! Device nodes, as GNU tar treats them: created by root (compared with
//! GNU `tar -xpf` on an archive GNU tar wrote from real nodes made with
//! `mknod`, and GNU tar extracting what we archive from them), skipped
//! with one warning by anyone else (this test binary run
//! again as `nobody` under `setpriv`).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cachew_archive::{extract, ExtractOptions};
use cachew_testkit::*;

mod support;
use support::*;

fn tree(dir: &Path) -> Vec<(String, String)> {
    snapshot(dir)
        .into_iter()
        .filter(|(k, _)| k != b".")
        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
        .collect()
}

/// As root: nodes made with `mknod`, archived by GNU tar, come out of our
/// extraction as out of GNU tar's (kind, numbers, mode, owner, time),
/// also over an existing file and with both the inline path and workers.
#[test]
fn devices_match_gnu_tar_as_root() {
    if !is_root() {
        eprintln!("skipped: only root creates device nodes (the other path is tested below)");
        return;
    }
    let dir = fast_tempdir();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    sh(&format!(
        "cd '{}' && mknod null c 1 3 && chmod 0640 null && chown 12:34 null \
         && mknod loop b 7 0 && chmod 0600 loop && mkdir d && mknod d/zero c 1 5 \
         && mkfifo fifo && echo hi > f \
         && touch -h -d @1700000000 null loop d/zero fifo f d \
         && tar -cpf ../a.tar .",
        src.display()
    ));
    let raw = fs::read(dir.path().join("a.tar")).unwrap();
    let gnu = dir.path().join("gnu");
    fs::create_dir(&gnu).unwrap();
    fs::write(gnu.join("null"), b"in the way").unwrap();
    sh(&format!(
        "tar -xpf '{}' -C '{}'",
        dir.path().join("a.tar").display(),
        gnu.display()
    ));
    let want = tree(&gnu);
    assert!(
        want.iter()
            .any(|(k, v)| k == "./null" && v.starts_with("char device 1,3 mode=640")),
        "{want:?}"
    );
    for threads in [1, 3] {
        let ours = dir.path().join(format!("ours-{threads}"));
        fs::create_dir(&ours).unwrap();
        fs::write(ours.join("null"), b"in the way").unwrap();
        let sum = extract(
            compress(&raw).as_slice(),
            &ours,
            &ExtractOptions::default().with_threads(threads),
        )
        .unwrap();
        assert_eq!((sum.devices, sum.skipped, sum.fifos), (3, 0, 1));
        assert_eq!(tree(&ours), want, "threads {threads}");
    }
    // What we archive from the same nodes, GNU tar extracts the same way.
    let mut ours = Vec::new();
    let opts = cachew_archive::ArchiveOptions::default();
    cachew_archive::archive(&mut ours, &src, &["."], &[] as &[&str], &opts).unwrap();
    let tar = dir.path().join("ours.tar");
    fs::write(&tar, zstd::decode_all(ours.as_slice()).unwrap()).unwrap();
    let back = dir.path().join("gnu-from-ours");
    fs::create_dir(&back).unwrap();
    fs::write(back.join("null"), b"in the way").unwrap();
    sh(&format!(
        "tar -xpf '{}' -C '{}'",
        tar.display(),
        back.display()
    ));
    assert_eq!(tree(&back), want);
}

/// Counts `WARN` events.
struct Warnings(Arc<AtomicUsize>);

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        if *e.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// As an ordinary user: device nodes are skipped, counted and named
/// (escaped) in the summary, with one warning for the whole extraction,
/// and the rest of the archive is restored. Runs the child below as
/// `nobody`, a real unprivileged process (not a policy switch).
#[test]
fn devices_are_skipped_as_an_ordinary_user() {
    if !is_root() {
        // Already unprivileged: check in this process.
        check_skipped(&fast_tempdir().path().join("t"));
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs setpriv to switch to an ordinary user");
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
    chmod(dir.path(), 0o777);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", "ordinary_user_devices_child", "--nocapture"])
        .env("CACHEW_TEST_DEV_DIR", dir.path())
        .output()
        .unwrap();
    child_log(&out);
}

/// The unprivileged half of `devices_are_skipped_as_an_ordinary_user`;
/// does nothing unless started by it.
#[test]
fn ordinary_user_devices_child() {
    let Some(dir) = std::env::var_os("CACHEW_TEST_DEV_DIR") else {
        return;
    };
    assert!(!is_root());
    check_skipped(&Path::new(&dir).join("t"));
    println!("child checked");
}

fn check_skipped(target: &Path) {
    let archive = pack(&[
        node("chr", b'3', 1, 3, 0o666),
        node("blk", b'4', 7, 0, 0o660),
        node("dev\x1b[31m", b'3', 1, 5, 0o644),
        node("fifo", b'6', 0, 0, 0o640),
        file("ok", b"ok"),
    ]);
    for threads in [1, 3] {
        let _ = fs::remove_dir_all(target);
        let warnings = Arc::new(AtomicUsize::new(0));
        let sum = tracing::subscriber::with_default(Warnings(warnings.clone()), || {
            extract(
                archive.as_slice(),
                target,
                &ExtractOptions::default().with_threads(threads),
            )
        })
        .unwrap();
        assert_eq!(
            warnings.load(Ordering::Relaxed),
            1,
            "one warning for three nodes"
        );
        assert_eq!(
            (sum.skipped, sum.devices, sum.fifos, sum.files),
            (3, 0, 1, 1)
        );
        assert_eq!(sum.skipped_names, ["chr", "blk", "dev\\x1b[31m"]);
        for n in ["chr", "blk", "dev\x1b[31m"] {
            assert!(fs::symlink_metadata(target.join(n)).is_err(), "{n} created");
        }
        assert!(fs::symlink_metadata(target.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(fs::read(target.join("ok")).unwrap(), b"ok");
        assert_ne!(fs::metadata(target).unwrap().uid(), 0);
    }
}

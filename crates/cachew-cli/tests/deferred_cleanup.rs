//! `cachew restore` into an existing directory exits with the new tree in
//! place and leaves the removal of the displaced old tree to a detached
//! `cachew __remove-staging PATH`, which removes nothing but a committed
//! staging directory; a killed removal leaves staging that `cachew gc` or
//! the next restore removes; `CACHEW_CLEANUP=sync` removes it before the
//! restore exits.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{cachew, run, TestServer};

/// A tree of `files` small files in 20 directories.
fn wide_tree(root: &Path, files: usize) -> PathBuf {
    let p = root.join("src");
    for i in 0..files {
        let dir = p.join(format!("d{}", i % 20));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{i}")), format!("new {i}")).unwrap();
    }
    p
}

/// Names beside the target other than the ones given.
fn beside(parent: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// Waits until nothing but `keep` is in `parent`.
fn wait_until_only(parent: &Path, keep: &[&str], deadline: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if beside(parent, keep).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A server holding `files` files under key `k` of namespace `ns`, and a
/// target restored from it: (tmp, server, parent, target).
fn restored(files: usize) -> (tempfile::TempDir, TestServer, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = wide_tree(tmp.path(), files);
    let server = TestServer::start();
    let (code, _, err) = run(cachew(&server.url())
        .args(["save", "ns"])
        .arg(&src)
        .args(["--key", "k"]));
    assert_eq!(code, 0, "{err}");
    let parent = fs::canonicalize(tmp.path()).unwrap().join("ws");
    fs::create_dir(&parent).unwrap();
    let target = parent.join("target");
    let (code, _, err) = run(cachew(&server.url())
        .args(["restore", "ns"])
        .arg(&target)
        .args(["--key", "k"]));
    assert_eq!(code, 0, "{err}");
    (tmp, server, parent, target)
}

#[test]
fn an_in_place_restore_exits_with_the_new_tree_and_the_old_one_goes_after() {
    let (_tmp, server, parent, target) = restored(500);
    for (round, cleanup) in [None, Some("sync"), None].into_iter().enumerate() {
        fs::write(target.join("d0/f0"), b"old").unwrap();
        fs::write(target.join("mine"), b"kept").unwrap();
        let mut cmd = cachew(&server.url());
        if let Some(c) = cleanup {
            cmd.env("CACHEW_CLEANUP", c);
        }
        let (code, out, err) = run(cmd
            .env("RUST_LOG", "cachew_client=debug")
            .args(["restore", "ns"])
            .arg(&target)
            .args(["--key", "k"]));
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, "", "round {round}: stdout");
        assert!(err.contains("restored ns/k"), "{err}");
        // The restore did not remove the old tree itself...
        assert!(
            err.contains("old entries left for the caller to remove"),
            "{err}"
        );
        // ...and exited with the new tree in place.
        assert_eq!(fs::read(target.join("d0/f0")).unwrap(), b"new 0");
        assert_eq!(fs::read(target.join("mine")).unwrap(), b"kept");
        if cleanup == Some("sync") {
            assert_eq!(beside(&parent, &["target"]), Vec::<String>::new());
        } else {
            // Removed by the detached child, after the restore exited.
            assert!(
                wait_until_only(&parent, &["target"], Duration::from_secs(10)),
                "round {round}: left {:?}",
                beside(&parent, &["target"])
            );
        }
    }
    // --json prints the same report either way.
    let report = |cleanup: &str| {
        let (code, out, err) = run(cachew(&server.url())
            .env("CACHEW_CLEANUP", cleanup)
            .args(["restore", "ns"])
            .arg(&target)
            .args(["--key", "k", "--json"]));
        assert_eq!(code, 0, "{err}");
        let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_object_mut().unwrap().remove("seconds");
        v
    };
    assert_eq!(report("background"), report("sync"));
    assert!(wait_until_only(
        &parent,
        &["target"],
        Duration::from_secs(10)
    ));
    // A bad value is a usage error.
    let (code, _, err) = run(cachew(&server.url())
        .env("CACHEW_CLEANUP", "later")
        .args(["restore", "ns"])
        .arg(&target)
        .args(["--key", "k"]));
    assert_eq!(code, 80, "{err}");
}

#[test]
fn the_removal_child_refuses_anything_but_a_committed_staging_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let p = fs::canonicalize(tmp.path()).unwrap();
    let decoy = p.join("precious");
    fs::create_dir_all(decoy.join("tree")).unwrap();
    fs::write(decoy.join("tree/data"), b"keep me").unwrap();
    // A committed journal (magic, target, commit record) does not make
    // another name removable.
    let target = p.join("target");
    let mut journal = b"cachewj1".to_vec();
    journal.extend_from_slice(&(target.as_os_str().len() as u32).to_le_bytes());
    journal.extend_from_slice(target.as_os_str().as_encoded_bytes());
    fs::write(decoy.join("journal"), [&journal[..], b"C"].concat()).unwrap();
    // A staging name, but the journal is not committed.
    let uncommitted = p.join(".target.cachew-4194303-1-00000001.staging");
    fs::create_dir_all(uncommitted.join("tree")).unwrap();
    fs::write(uncommitted.join("tree/data"), b"keep me").unwrap();
    fs::write(uncommitted.join("journal"), &journal).unwrap();
    // A staging name on a symlink to the decoy.
    let link = p.join(".target.cachew-4194303-1-00000002.staging");
    std::os::unix::fs::symlink(&decoy, &link).unwrap();
    let child = |args: &[&Path]| {
        let mut cmd = cachew("http://127.0.0.1:1");
        cmd.arg("__remove-staging").args(args);
        run(&mut cmd)
    };
    for path in [&decoy, &uncommitted, &link, &p] {
        let (code, out, err) = child(&[path]);
        assert_eq!(code, 1, "{}: {err}", path.display());
        assert_eq!(out, "");
        assert!(err.contains("refusing to remove"), "{err}");
    }
    for args in [&[][..], &[decoy.as_path(), decoy.as_path()][..]] {
        let (code, _, err) = child(args);
        assert_eq!(code, 80, "{err}");
    }
    for dir in [&decoy, &uncommitted] {
        assert_eq!(fs::read(dir.join("tree/data")).unwrap(), b"keep me");
    }
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    // Once committed, it goes.
    fs::write(uncommitted.join("journal"), [&journal[..], b"C"].concat()).unwrap();
    let (code, _, err) = child(&[&uncommitted]);
    assert_eq!(code, 0, "{err}");
    assert!(!uncommitted.exists());
    assert!(decoy.join("tree/data").exists());
}

/// The pids of running `cachew __remove-staging PATH` processes with PATH
/// in `parent`.
fn removal_children(parent: &Path) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let ours = args.get(1) == Some(&&b"__remove-staging"[..])
                && args
                    .get(2)
                    .is_some_and(|a| a.starts_with(parent.as_os_str().as_encoded_bytes()));
            ours.then_some(pid)
        })
        .collect()
}

/// Restores in place and kills the detached removal as soon as it shows;
/// `true` if the kill left the staging directory behind.
fn restore_and_kill_the_removal(url: &str, parent: &Path, target: &Path) -> bool {
    let mut restore = cachew(url)
        .args(["restore", "ns"])
        .arg(target)
        .args(["--key", "k"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut killed = false;
    while !killed && start.elapsed() < Duration::from_secs(30) {
        for pid in removal_children(parent) {
            // SAFETY: kill(2) of a process we found by its command line.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        // The removal finished before it was seen: this round missed.
        if !killed
            && restore.try_wait().unwrap().is_some()
            && beside(parent, &["target"]).is_empty()
        {
            break;
        }
        if !killed {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    assert!(restore.wait().unwrap().success());
    // The killed process is gone once /proc no longer lists it.
    let start = Instant::now();
    while !removal_children(parent).is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    !beside(parent, &["target"]).is_empty()
}

#[test]
fn a_killed_removal_leaves_staging_that_gc_and_the_next_restore_remove() {
    let (_tmp, server, parent, target) = restored(5_000);
    let url = server.url();
    for next in ["gc", "restore"] {
        let landed = (0..5).any(|_| restore_and_kill_the_removal(&url, &parent, &target));
        assert!(
            landed,
            "{next}: every removal finished before it was killed"
        );
        for n in beside(&parent, &["target"]) {
            assert!(
                n.starts_with(".target.cachew-") && n.ends_with(".staging"),
                "{n}"
            );
        }
        assert_eq!(fs::read(target.join("d0/f0")).unwrap(), b"new 0");
        let (code, _, err) = if next == "gc" {
            run(cachew(&url).arg("gc").arg(&parent))
        } else {
            run(cachew(&url)
                .env("CACHEW_CLEANUP", "sync")
                .args(["restore", "ns"])
                .arg(&target)
                .args(["--key", "k"]))
        };
        assert_eq!(code, 0, "{err}");
        if next == "gc" {
            assert!(err.contains("removed stale staging"), "{err}");
        }
        assert_eq!(beside(&parent, &["target"]), Vec::<String>::new(), "{next}");
        assert_eq!(fs::read(target.join("d0/f0")).unwrap(), b"new 0");
    }
}

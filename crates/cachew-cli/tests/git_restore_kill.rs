//! `cachew git restore` killed with SIGKILL half-way: what it leaves is a
//! staging directory named for its owner's pid beside DIR, removed by
//! `cachew gc` and by the next restore of DIR, which then ends with a good
//! clone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod git_support;

use git_support::{dead_url, git, head, isolate_git, noise, Fixture, REPO};

/// What a restore is doing when it is killed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// The snapshot streams into `clone/`.
    Snapshot,
    /// The delta bundle streams into `bundle`.
    Bundle,
}

/// Starts `cachew git restore REPO DIR` against `url`, waits until its
/// staging directory beside DIR shows `stage` under way (the download is
/// throttled, so it is still streaming), kills it with SIGKILL, and returns
/// the staging directory it left.
fn kill_during(fx: &Fixture, url: &str, dir: &Path, stage: Stage) -> PathBuf {
    let mut child = fx
        .command(url, &[REPO, dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
    let prefix = format!(".{name}.cachew-{pid}-");
    let parent = dir.parent().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let staging = loop {
        let found = std::fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with(&prefix)
                    && n.ends_with(".staging")
                    && match stage {
                        Stage::Snapshot => p.join("clone/.git").is_dir(),
                        Stage::Bundle => p.join("bundle").metadata().is_ok_and(|m| m.len() > 0),
                    }
            });
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no staging directory in stage {stage:?} appeared beside {}",
            dir.display()
        );
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the restore ended: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(staging.join("clone/.git").is_dir(), "{}", staging.display());
    assert_eq!(
        staging.join("bundle").exists(),
        stage == Stage::Bundle,
        "{}",
        staging.display()
    );
    staging
}

/// `cachew gc DIR`.
fn gc(dir: &Path) -> std::process::Output {
    let mut gc = Command::new(env!("CARGO_BIN_EXE_cachew"));
    isolate_git(&mut gc);
    gc.arg("gc").arg(dir).stdin(Stdio::null()).output().unwrap()
}

fn fsck(dir: &Path) {
    git(dir, &["fsck", "--full", "--strict"]);
    assert_eq!(git(dir, &["status", "--porcelain"]), "");
}

#[test]
fn what_a_killed_restore_leaves_is_removed_by_gc_and_by_the_next_restore() {
    // 512 KB/s per connection: a 2 MiB delta bundle streams for 4 s.
    let fx = Fixture::with_rate(Some(512_000));
    let first = fx.commit("a.txt", b"one");
    // The snapshot is taken at `first`, and a clone made from it.
    let dir = fx.path("clone");
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // Upstream moves on by 2 MiB: the snapshot stays small, the bundle is
    // large.
    let second = fx.commit("big.bin", &noise(2 << 20));

    // A restore into a new DIR, killed: `cachew gc` removes its staging.
    let fresh = fx.path("fresh");
    let left = kill_during(&fx, &fx.url(), &fresh, Stage::Bundle);
    assert!(!fresh.exists());
    let out = gc(fx.tmp.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("removed stale staging"), "{err}");
    assert!(!left.exists(), "{err}");
    assert_eq!(fx.entries(), ["clone", "root"]);

    // A restore into the existing clone, killed: the clone is untouched,
    // and the next restore of it removes the staging, even one that needs
    // nothing from the server (the clone has the pinned SHA).
    let left = kill_during(&fx, &fx.url(), &dir, Stage::Bundle);
    assert_eq!(head(&dir), first);
    fsck(&dir);
    let pin = format!("main={first}");
    let (code, err) = fx.restore(&dead_url(), &[REPO, dir.to_str().unwrap(), "--ref", &pin]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing to do"), "{err}");
    assert!(!left.exists(), "{err}");
    // A full restore then ends at upstream's HEAD with a clean fsck.
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(head(&dir), second);
    assert_eq!(std::fs::read(dir.join("big.bin")).unwrap(), noise(2 << 20));
    fsck(&dir);
    assert_eq!(fx.entries(), ["clone", "root"]);

    // A fresh snapshot (with the 2 MiB file): a restore into a new DIR
    // killed while it streams, then run again.
    let drop = Command::new("curl")
        .args(["-sSf", "-X", "DELETE"])
        .arg(format!(
            "{}/git/example.test/org/repo/snapshot.tar.zst",
            fx.url()
        ))
        .status()
        .unwrap();
    assert!(drop.success());
    let late = fx.path("late");
    let left = kill_during(&fx, &fx.url(), &late, Stage::Snapshot);
    assert!(!late.exists());
    let (code, err) = fx.restore(&fx.url(), &[REPO, late.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!left.exists(), "{err}");
    assert_eq!(head(&late), second);
    fsck(&late);
    assert_eq!(fx.entries(), ["clone", "late", "root"]);

    // A staging directory of a live process is not touched by gc.
    let live = fx.tmp.path().join(format!(
        ".other.cachew-{}-{}-0badc0de.staging",
        std::process::id(),
        own_start_time()
    ));
    std::fs::create_dir(&live).unwrap();
    let out = gc(fx.tmp.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(live.is_dir());
}

/// This process's start time in clock ticks since boot (`/proc/self/stat`
/// field 22), as staging names record it.
fn own_start_time() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A merge into an existing clone that was killed half-way leaves its
/// marker in DIR; the next restore must merge again even when DIR's refs
/// claim every requested SHA.
#[test]
fn a_merge_killed_half_way_is_redone() {
    let fx = Fixture::new();
    let c1 = fx.commit("a.txt", b"one");
    let dir = fx.path("ws");
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // What a kill between two renames of a merge leaves: an old file, and
    // the marker.
    std::fs::write(dir.join("a.txt"), b"half-merged").unwrap();
    std::fs::write(dir.join(".cachew-git-restore-incomplete"), b"").unwrap();
    let pin = format!("main={c1}");
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir.to_str().unwrap(), "--ref", &pin]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(in place)"), "{err}");
    assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"one");
    assert!(!dir.join(".cachew-git-restore-incomplete").exists());
    assert_eq!(head(&dir), c1);
    fsck(&dir);
}

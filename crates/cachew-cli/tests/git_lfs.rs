//! `cachew git restore --lfs` with real `git-lfs`: the reference server
//! builds the LFS snapshot as upstream's does (`git lfs fetch origin HEAD`
//! in a clone of its mirror, `.git/lfs` archived), and `git lfs` in the
//! restored clone finds every object locally, with no LFS server reachable.
//! Prints `SKIPPED: git-lfs not found` where `git-lfs` is missing.

use std::path::Path;
use std::process::{Command, Stdio};

mod git_support;

use git_support::{dead_url, git, head, isolate_git, noise, Fixture, REPO};

fn have_git_lfs() -> bool {
    Command::new("git-lfs")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `git lfs ARGS` in `dir`, with the LFS endpoint pointed at a dead port:
/// whatever it needs must be local. Returns (success, stdout + stderr).
fn lfs_offline(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("git");
    isolate_git(&mut cmd);
    let out = cmd
        .arg("-C")
        .arg(dir)
        .args(["-c", &format!("lfs.url={}/lfs", dead_url()), "lfs"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Commits `content` as LFS-tracked `file` upstream; returns the new HEAD.
fn commit_lfs(fx: &Fixture, file: &str, content: &[u8]) -> String {
    std::fs::write(fx.upstream.join(file), content).unwrap();
    git(&fx.upstream, &["add", ".gitattributes", file]);
    git(
        &fx.upstream,
        &["commit", "-q", "-m", &format!("add {file}")],
    );
    git(&fx.upstream, &["rev-parse", "HEAD"])
}

/// The names in the server's LFS snapshot, as GNU tar lists them.
fn lfs_snapshot_names(fx: &Fixture) -> Vec<String> {
    let url = format!(
        "{}/git/example.test/org/repo/lfs-snapshot.tar.zst",
        fx.url()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"set -o pipefail; curl -sSf "$1" | zstd -dc | tar -tf -"#)
        .arg("bash")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_owned())
        .filter(|l| l.starts_with("lfs/objects/") && l.matches('/').count() == 4)
        .collect();
    names.sort();
    names
}

/// `lfs/objects/aa/bb/OID` for `content`, as git-lfs stores it.
fn object_name(fx: &Fixture, file: &str) -> String {
    let pointer = git(&fx.upstream, &["show", &format!("HEAD:{file}")]);
    let oid = pointer
        .lines()
        .find_map(|l| l.strip_prefix("oid sha256:"))
        .unwrap_or_else(|| panic!("{file} is no LFS pointer: {pointer}"))
        .to_owned();
    format!("lfs/objects/{}/{}/{oid}", &oid[..2], &oid[2..4])
}

#[test]
fn restored_lfs_objects_serve_git_lfs_without_a_server() {
    if !have_git_lfs() {
        eprintln!("SKIPPED: git-lfs not found");
        return;
    }
    let fx = Fixture::new();
    git(&fx.upstream, &["lfs", "install", "--local"]);
    git(&fx.upstream, &["lfs", "track", "*.bin"]);
    std::fs::write(fx.upstream.join("plain.txt"), b"not in LFS").unwrap();
    git(&fx.upstream, &["add", "plain.txt"]);
    let c1 = commit_lfs(&fx, "one.bin", &noise(300 << 10));
    let one = object_name(&fx, "one.bin");

    // The archive holds the object under `lfs/`, relative to `.git`.
    assert_eq!(lfs_snapshot_names(&fx), std::slice::from_ref(&one));

    let dir = fx.path("with-lfs");
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir.to_str().unwrap(), "--lfs"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("LFS objects"), "{err}");
    assert_eq!(head(&dir), c1);
    assert_eq!(
        std::fs::read(dir.join(".git").join(&one)).unwrap(),
        noise(300 << 10)
    );
    let (ok, out) = lfs_offline(&dir, &["fsck"]);
    assert!(ok, "{out}");
    // Checking the files out needs no server either.
    git(&dir, &["lfs", "install", "--local"]);
    let (ok, out) = lfs_offline(&dir, &["pull"]);
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read(dir.join("one.bin")).unwrap(),
        noise(300 << 10)
    );
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
    git(&dir, &["fsck", "--strict"]);

    // Without --lfs the objects are missing, and git lfs needs the server.
    let bare = fx.path("without-lfs");
    let (code, err) = fx.restore(&fx.url(), &[REPO, bare.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (ok, out) = lfs_offline(&bare, &["fsck"]);
    assert!(!ok, "{out}");
    git(&bare, &["lfs", "install", "--local"]);
    let (ok, out) = lfs_offline(&bare, &["pull"]);
    assert!(!ok, "{out}");

    // Upstream gains an LFS file after the snapshot: the bundle brings the
    // pointer, and the server's LFS snapshot follows the mirror's HEAD.
    let c2 = commit_lfs(&fx, "two.bin", &noise(100 << 10)[..]);
    let two = object_name(&fx, "two.bin");
    let again = fx.path("later");
    let (code, err) = fx.restore(&fx.url(), &[REPO, again.to_str().unwrap(), "--lfs"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("bundle applied"), "{err}");
    assert_eq!(head(&again), c2);
    let mut want = vec![one, two];
    want.sort();
    assert_eq!(lfs_snapshot_names(&fx), want);
    let (ok, out) = lfs_offline(&again, &["fsck"]);
    assert!(ok, "{out}");
    assert_eq!(fx.entries(), ["later", "root", "with-lfs", "without-lfs"]);
}

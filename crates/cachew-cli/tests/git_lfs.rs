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

    // The archive holds the object under `lfs/`, relative to `.git`, and
    // is served with ranges like the snapshot.
    assert_eq!(lfs_snapshot_names(&fx), std::slice::from_ref(&one));
    let url = format!(
        "{}/git/example.test/org/repo/lfs-snapshot.tar.zst",
        fx.url()
    );
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .args(["-r", "0-9", &url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "206 10");

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

/// A server without `git-lfs` (a `PATH` with `git` alone) answers 404
/// saying so, and `--lfs` restores the clone without LFS objects.
#[test]
fn a_server_without_git_lfs_answers_404() {
    use std::io::BufRead;

    if !have_git_lfs() {
        eprintln!("SKIPPED: git-lfs not found");
        return;
    }
    let fx = Fixture::new();
    git(&fx.upstream, &["lfs", "install", "--local"]);
    git(&fx.upstream, &["lfs", "track", "*.bin"]);
    let c1 = commit_lfs(&fx, "one.bin", b"large file");
    let bin = fx.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let real_git = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::os::unix::fs::symlink(real_git.trim(), bin.join("git")).unwrap();

    let mut serve = Command::new(env!("CARGO_BIN_EXE_cachew"));
    isolate_git(&mut serve);
    let mut child = serve
        .args(["serve", "--bind", "127.0.0.1:0", "--dir"])
        .arg(fx.path("served-cache"))
        .arg("--git-root")
        .arg(&fx.root)
        .env("PATH", &bin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split(" at ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
        .expect("cachew serve prints its URL");
    let dir = fx.path("clone");
    let (code, err) = fx.restore(&url, &[REPO, dir.to_str().unwrap(), "--lfs"]);
    let lfs_url = format!("{url}/git/example.test/org/repo/lfs-snapshot.tar.zst");
    let answer = Command::new("curl")
        .args(["-s", "-w", " %{http_code}", &lfs_url])
        .output()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no LFS snapshot on the server"), "{err}");
    assert_eq!(head(&dir), c1);
    let answer = String::from_utf8_lossy(&answer.stdout);
    assert!(answer.ends_with(" 404"), "{answer}");
    assert!(answer.contains("git-lfs is not installed"), "{answer}");
}

/// An LFS object the upstream lacks: the server's fetch fails (502), and
/// so does the restore, leaving nothing behind.
#[test]
fn a_failed_lfs_fetch_fails_the_restore_cleanly() {
    if !have_git_lfs() {
        eprintln!("SKIPPED: git-lfs not found");
        return;
    }
    let fx = Fixture::new();
    git(&fx.upstream, &["lfs", "install", "--local"]);
    git(&fx.upstream, &["lfs", "track", "*.bin"]);
    commit_lfs(&fx, "one.bin", b"large file");
    std::fs::remove_dir_all(fx.upstream.join(".git/lfs/objects")).unwrap();
    let dir = fx.path("clone");
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir.to_str().unwrap(), "--lfs"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("git-lfs fetch failed"), "{err}");
    assert!(!dir.exists());
    assert_eq!(fx.entries(), ["root"]);
}

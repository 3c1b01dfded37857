//! Fault injection against the `cachew` binary: SIGINT/SIGTERM/SIGHUP
//! during save and restore, kill -9 at random points of a restore (new
//! and existing targets), a full disk (a 4 MiB tmpfs), a server that dies
//! mid-body, truncated, bit-flipped and hostile objects, kill -9 between
//! the swaps of an in-place publish, mounts inside the target and a target
//! that is a mount point. After each, the target's snapshot is the one
//! before (or, for a kill after the publish, the restored tree), no upload
//! became visible, and no staging is left once the next run has cleaned up.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cachew_testkit::{random_bytes, snapshot};
use support::{cachew, run, TestServer};

type Snapshot = std::collections::BTreeMap<Vec<u8>, String>;

/// A tree of about 3 MiB of incompressible data in a few hundred files.
fn big_tree(root: &Path) -> PathBuf {
    let p = root.join("src");
    for d in 0..8 {
        let dir = p.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..40 {
            let len = if f == 0 { 300_000 } else { 1_000 };
            fs::write(
                dir.join(format!("f{f}")),
                random_bytes(len, d * 100 + f + 1),
            )
            .unwrap();
        }
    }
    p
}

/// An existing target that overlaps the saved tree.
fn existing_target(root: &Path) -> PathBuf {
    let t = root.join("target");
    fs::create_dir_all(t.join("d0")).unwrap();
    fs::write(t.join("d0/f0"), b"old f0").unwrap();
    fs::write(t.join("mine"), b"kept").unwrap();
    fs::hard_link(t.join("mine"), t.join("mine-too")).unwrap();
    t
}

/// Names beside the target other than the ones given.
fn beside(parent: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

fn wait_for_staging(parent: &Path, keep: &[&str], deadline: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if parent.is_dir() && beside(parent, keep).iter().any(|n| n.contains(".cachew-")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// A TCP proxy to `upstream`: client-to-server bytes limited to
/// `up_rate` bytes/s, and the connection cut after `cut_after` bytes from
/// the server (a server that dies mid-body).
fn proxy(upstream: &str, up_rate: Option<u64>, cut_after: Option<usize>) -> String {
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 << 10];
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if let Some(rate) = up_rate {
                        std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                    }
                }
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 << 10];
                let mut sent = 0usize;
                while let Ok(n) = s_read.read(&mut buf) {
                    let n = match cut_after {
                        Some(cut) => n.min(cut.saturating_sub(sent)),
                        None => n,
                    };
                    if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n;
                }
                let _ = c_write.shutdown(std::net::Shutdown::Both);
                let _ = s_read.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    url
}

struct Fixture {
    tmp: tempfile::TempDir,
    server: TestServer,
    /// The same cache, sending 2 MB/s per connection.
    slow: TestServer,
    src: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let src = big_tree(tmp.path());
        let server = TestServer::start();
        let slow = TestServer::start_with(|b| b.rate_limit_per_connection(2_000_000));
        let f = Fixture {
            tmp,
            server,
            slow,
            src,
        };
        for url in [f.server.url(), f.slow.url()] {
            let (code, _, err) = run(cachew(&url)
                .args(["save", "ns"])
                .arg(&f.src)
                .args(["--key", "k"]));
            assert_eq!(code, 0, "{err}");
        }
        f
    }

    /// A fresh place to restore into: (parent, target, snapshot before).
    fn place(&self, name: &str, existing: bool) -> (PathBuf, PathBuf, Option<Snapshot>) {
        let parent = self.tmp.path().join(name);
        fs::create_dir_all(&parent).unwrap();
        if existing {
            let t = existing_target(&parent);
            let s = snapshot(&t);
            (parent, t, Some(s))
        } else {
            (parent.clone(), parent.join("target"), None)
        }
    }

    fn restored(&self) -> Snapshot {
        let t = self.tmp.path().join("reference");
        let (code, _, err) = run(cachew(&self.server.url())
            .args(["restore", "ns"])
            .arg(&t)
            .args(["--key", "k"]));
        assert_eq!(code, 0, "{err}");
        snapshot(&t)
    }
}

/// The target is as before: its old snapshot, or absent if it was new.
fn assert_unchanged(target: &Path, before: &Option<Snapshot>, what: &str) {
    match before {
        Some(s) => assert_eq!(&snapshot(target), s, "{what}: the target changed"),
        None => assert!(!target.exists(), "{what}: a new target appeared"),
    }
}

#[test]
fn signals_during_restore_exit_128_plus_n_and_leave_the_target() {
    let f = Fixture::new();
    for (i, (sig, code)) in [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
    ]
    .into_iter()
    .enumerate()
    {
        for existing in [false, true] {
            let (top, target, before) = f.place(&format!("sig{i}-{existing}"), existing);
            // A new target two missing levels down: they go too.
            let (parent, target) = if existing {
                (top.clone(), target)
            } else {
                (top.join("x/y"), top.join("x/y/target"))
            };
            let child = cachew(&f.slow.url())
                .args(["restore", "ns"])
                .arg(&target)
                .args(["--key", "k", "--zstd-threads", "2"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            assert!(wait_for_staging(
                &parent,
                &["target"],
                Duration::from_secs(10)
            ));
            std::thread::sleep(Duration::from_millis(100));
            signal(&child, sig);
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(code), "{err}");
            assert!(err.contains("interrupted by SIG"), "{err}");
            assert_unchanged(&target, &before, "signal");
            assert!(
                beside(&top, &["target"]).is_empty(),
                "staging or parents left"
            );
        }
    }
}

#[test]
fn signals_during_save_abort_the_upload() {
    let f = Fixture::new();
    // Uploads through a proxy that forwards 1 MB/s: the save takes seconds.
    let url = proxy(&f.server.url(), Some(1_000_000), None);
    let objects = f.server.objects();
    for (sig, code) in [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
    ] {
        let child = cachew(&url)
            .args(["save", "ns"])
            .arg(&f.src)
            .args(["--key", &format!("new-{sig}")])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains("nothing was uploaded"), "{err}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        f.server.objects(),
        objects,
        "an interrupted upload became visible"
    );
}

#[test]
fn kill_9_at_random_points_leaves_the_target_or_the_result_and_staging_is_collected() {
    let f = Fixture::new();
    let restored = f.restored();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..6 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let existing = round % 2 == 1;
        let (parent, target, before) = f.place(&format!("kill{round}"), existing);
        let mut child = cachew(&f.slow.url())
            .args(["restore", "ns"])
            .arg(&target)
            .args(["--key", "k"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Anywhere from before the download starts to after it ends.
        std::thread::sleep(Duration::from_millis(x % 2000));
        signal(&child, libc::SIGKILL);
        child.wait().unwrap();
        // What is left is ours by name, and the next run removes it.
        for n in beside(&parent, &["target"]) {
            assert!(n.starts_with(".target.cachew-"), "round {round}: {n}");
        }
        let (code, _, err) = run(cachew(&f.server.url()).arg("gc").arg(&parent));
        assert_eq!(code, 0, "{err}");
        assert!(beside(&parent, &["target"]).is_empty(), "round {round}");
        // Once the staging is gone (its hard links too), compare.
        let now = if target.exists() {
            Some(snapshot(&target))
        } else {
            None
        };
        let mut merged = before.clone().unwrap_or_default();
        merged.extend(restored.clone());
        let done = now.as_ref() == Some(&restored)
            || (existing
                && now.as_ref().is_some_and(|n| {
                    // An existing target after the swap: the archive merged in.
                    n.iter()
                        .filter(|(k, _)| k.as_slice() != b".")
                        .all(|(k, v)| merged.get(k) == Some(v))
                        && n.len() == merged.len()
                }));
        assert!(
            done || now == before,
            "round {round}: a half-restored target:\n now {now:?}\n before {before:?}\n merged {merged:?}"
        );
    }
}

#[test]
fn a_server_that_dies_mid_body_leaves_the_target() {
    let f = Fixture::new();
    let url = proxy(&f.server.url(), None, Some(1_000_000));
    for existing in [false, true] {
        let (parent, target, before) = f.place(&format!("cut-{existing}"), existing);
        let (code, _, err) = run(cachew(&url)
            .args(["restore", "ns"])
            .arg(&target)
            .args(["--key", "k"]));
        assert_eq!(code, 1, "{err}");
        assert_unchanged(&target, &before, "cut");
        assert!(beside(&parent, &["target"]).is_empty());
        // With --best-effort it is a miss.
        let (code, _, err) = run(cachew(&url)
            .env("CACHEW_BEST_EFFORT", "1")
            .args(["restore", "ns"])
            .arg(&target)
            .args(["--key", "k"]));
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("warning"), "{err}");
        assert_unchanged(&target, &before, "cut, best effort");
    }
}

/// Puts `body` under `key` with `cachew put`.
fn put(url: &str, key: &str, body: &[u8], dir: &Path) {
    let file = dir.join(format!("{key}.bin"));
    fs::write(&file, body).unwrap();
    let (code, _, err) = run(cachew(url).args(["put", "ns", key]).arg(&file));
    assert_eq!(code, 0, "{err}");
}

fn deep_path_archive() -> Vec<u8> {
    let name = vec!["d"; 6000].join("/");
    let mut tar = Vec::new();
    let mut b = tar::Builder::new(&mut tar);
    let mut ln = tar::Header::new_gnu();
    ln.set_path("././@LongLink").unwrap();
    ln.set_entry_type(tar::EntryType::GNULongName);
    ln.set_size(name.len() as u64 + 1);
    ln.set_cksum();
    b.append(&ln, [name.as_bytes(), b"\0"].concat().as_slice())
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("x").unwrap();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    b.finish().unwrap();
    drop(b);
    zstd::encode_all(tar.as_slice(), 3).unwrap()
}

/// 50,000 entries of the same directory: bounded memory and time.
fn many_entries_archive() -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path("d").unwrap();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_cksum();
    let mut enc = zstd::Encoder::new(Vec::new(), 1).unwrap();
    for _ in 0..50_000 {
        enc.write_all(h.as_bytes()).unwrap();
    }
    // Then a bad header: the archive fails after all of them.
    enc.write_all(&[1u8; 512]).unwrap();
    enc.write_all(&[0u8; 1024]).unwrap();
    enc.finish().unwrap()
}

#[test]
fn bad_objects_leave_the_target_and_fall_through_to_fallback_keys() {
    let f = Fixture::new();
    let url = f.server.url();
    let out = cachew(&url).args(["get", "ns", "k"]).output().unwrap();
    assert!(out.status.success());
    let good = out.stdout;
    let mut flipped = good.clone();
    let at = flipped.len() / 3;
    flipped[at] ^= 0x10;
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("flipped", flipped),
        ("deep", deep_path_archive()),
        ("many", many_entries_archive()),
    ];
    for (key, body) in &bodies {
        put(&url, key, body, f.tmp.path());
        for existing in [false, true] {
            let (parent, target, before) = f.place(&format!("bad-{key}-{existing}"), existing);
            let started = Instant::now();
            let (code, _, err) = run(cachew(&url)
                .args(["restore", "ns"])
                .arg(&target)
                .args(["--key", key]));
            assert_eq!(code, 1, "{key}: {err}");
            eprintln!("{key}: failed in {:?}", started.elapsed());
            assert!(started.elapsed() < Duration::from_secs(30), "{key}");
            assert!(!err.contains("overflow"), "{err}");
            assert_unchanged(&target, &before, key);
            assert!(beside(&parent, &["target"]).is_empty(), "{key}");
            // A good fallback key restores, with a warning for the bad one.
            let (code, _, err) = run(cachew(&url).args(["restore", "ns"]).arg(&target).args([
                "--key",
                key,
                "--fallback-key",
                "k",
            ]));
            assert_eq!(code, 0, "{key}: {err}");
            assert!(err.contains("trying the next key"), "{key}: {err}");
        }
    }
}

#[test]
fn a_full_disk_leaves_the_target() {
    let f = Fixture::new();
    let mnt = f.tmp.path().join("tmpfs");
    fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED a_full_disk_leaves_the_target: cannot mount a tmpfs (not root?)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    // 2.4 MiB of the 4 MiB are taken by the target's own files: the
    // 2.5 MiB archive does not fit beside it.
    let target = mnt.join("target");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("big"), random_bytes(2_400_000, 1)).unwrap();
    fs::write(target.join("small"), b"small").unwrap();
    let before = Some(snapshot(&target));
    let (code, _, err) = run(cachew(&f.server.url())
        .args(["restore", "ns"])
        .arg(&target)
        .args(["--key", "k"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("No space left") || err.contains("space"),
        "{err}"
    );
    assert_unchanged(&target, &before, "ENOSPC");
    assert!(beside(&mnt, &["target"]).is_empty());
    // A new target on the full disk: nothing appears.
    fs::remove_dir_all(&target).unwrap();
    fs::write(mnt.join("filler"), random_bytes(2_400_000, 2)).unwrap();
    let (code, _, _) = run(cachew(&f.server.url())
        .args(["restore", "ns"])
        .arg(&target)
        .args(["--key", "k"]));
    assert_eq!(code, 1);
    assert!(beside(&mnt, &["filler"]).is_empty());
}

/// A tmpfs mounted at `at`, unmounted on drop; `None` where mounting is
/// not permitted (not root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn mounts_inside_the_target_are_never_touched_or_removed() {
    let f = Fixture::new();
    let (parent, target, _) = f.place("mounted", true);
    // A mount where the archive has nothing: left alone, the rest swapped in.
    let Some(_m) = Tmpfs::mount(&target.join("m"), "1m") else {
        eprintln!("SKIPPED mounts_inside_the_target_...: cannot mount a tmpfs (not root?)");
        return;
    };
    fs::write(target.join("m/precious"), b"p").unwrap();
    let (code, _, err) = run(cachew(&f.server.url())
        .args(["restore", "ns"])
        .arg(&target)
        .args(["--key", "k"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read(target.join("m/precious")).unwrap(), b"p");
    assert_eq!(fs::read(target.join("d0/f1")).unwrap().len(), 1_000);
    // The displaced old entries go in a detached process, after the exit.
    let start = Instant::now();
    while !beside(&parent, &["target"]).is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(beside(&parent, &["target"]).is_empty());
    // A mount where the archive has entries (d1): they cannot be renamed
    // into it, so the restore fails and the target is as it was.
    let _d1 = Tmpfs::mount(&target.join("d1"), "1m").unwrap();
    fs::write(target.join("d1/precious"), b"q").unwrap();
    let before = Some(snapshot(&target));
    let (code, _, err) = run(cachew(&f.server.url())
        .args(["restore", "ns"])
        .arg(&target)
        .args(["--key", "k"]));
    assert_eq!(code, 1, "{err}");
    assert_unchanged(&target, &before, "mount in the way");
    assert!(beside(&parent, &["target"]).is_empty());
}

#[test]
fn a_mount_point_target_is_restored_all_or_nothing() {
    let f = Fixture::new();
    let parent = f.tmp.path().join("mp");
    let target = parent.join("target");
    let Some(_m) = Tmpfs::mount(&target, "16m") else {
        eprintln!("SKIPPED a_mount_point_target_...: cannot mount a tmpfs (not root?)");
        return;
    };
    fs::write(target.join("mine"), b"kept").unwrap();
    let url = f.server.url();
    // A truncated object, then a kill -9 mid-restore: unchanged, and the
    // staging (inside the target) is gone after the next run.
    let out = cachew(&url).args(["get", "ns", "k"]).output().unwrap();
    put(
        &url,
        "half",
        &out.stdout[..out.stdout.len() / 2],
        f.tmp.path(),
    );
    let before = Some(snapshot(&target));
    let (code, _, err) = run(cachew(&url)
        .args(["restore", "ns"])
        .arg(&target)
        .args(["--key", "half"]));
    assert_eq!(code, 1, "{err}");
    assert_unchanged(&target, &before, "truncated, mount point");
    assert_eq!(beside(&target, &["mine"]), Vec::<String>::new());
    let mut child = cachew(&f.slow.url())
        .args(["restore", "ns"])
        .arg(&target)
        .args(["--key", "k"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_staging(
        &target,
        &["mine"],
        Duration::from_secs(10)
    ));
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    assert!(beside(&target, &["mine"])
        .iter()
        .all(|n| n.starts_with(".target.cachew-")));
    // The next restore removes it and succeeds; no warning about mounts.
    let (code, _, err) = run(cachew(&url)
        .args(["restore", "ns"])
        .arg(&target)
        .args(["--key", "k"]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("mount point"), "{err}");
    assert_eq!(fs::read(target.join("mine")).unwrap(), b"kept");
    assert_eq!(fs::read(target.join("d0/f1")).unwrap().len(), 1_000);
    let mut left = beside(&target, &["mine"]);
    left.retain(|n| !n.starts_with('d'));
    assert!(left.is_empty(), "{left:?}");
}

/// A snapshot without modification times, to compare trees made at
/// different moments.
fn shape(s: &Snapshot) -> Snapshot {
    s.iter()
        .map(|(k, v)| {
            let v: Vec<&str> = v.split(' ').filter(|w| !w.starts_with("mtime=")).collect();
            (k.clone(), v.join(" "))
        })
        .collect()
}

/// Whether two snapshots are equal; prints the first difference if not.
fn same(a: &Snapshot, b: &Snapshot) -> bool {
    if a == b {
        return true;
    }
    let diff = a
        .iter()
        .find(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| (k, Some(v), b.get(k)))
        .or_else(|| {
            b.iter()
                .find(|(k, _)| !a.contains_key(*k))
                .map(|(k, v)| (k, None, Some(v)))
        });
    if let Some((k, x, y)) = diff {
        eprintln!(
            "first difference at {}: {x:?} vs {y:?}",
            String::from_utf8_lossy(k)
        );
    }
    false
}

/// Staging directories of `target` in `parent` whose journal exists and
/// does not end with the commit record: a publish stopped halfway.
fn mid_publish(parent: &Path) -> bool {
    beside(parent, &["target"])
        .iter()
        .any(|n| fs::read(parent.join(n).join("journal")).is_ok_and(|j| j.last() != Some(&b'C')))
}

#[test]
fn kill_9_during_the_swap_is_rolled_back_by_the_next_run() {
    // 500 directories the target also has, each with a file the archive
    // lacks: each is merged (a journal record per step), so the publish
    // takes long enough to be killed in the middle.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for d in 0..500 {
        let dir = src.join(format!("d{d:04}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("f"), format!("new {d}")).unwrap();
        fs::write(dir.join("g"), format!("new g {d}")).unwrap();
    }
    let server = TestServer::start();
    let url = server.url();
    let (code, _, err) = run(cachew(&url)
        .args(["save", "ns"])
        .arg(&src)
        .args(["--key", "wide"]));
    assert_eq!(code, 0, "{err}");
    let old = |t: &Path| {
        for d in 0..500 {
            let dir = t.join(format!("d{d:04}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("f"), format!("old {d}")).unwrap();
            fs::write(dir.join("mine"), format!("mine {d}")).unwrap();
        }
    };
    // The complete result, for comparison.
    let reference = tmp.path().join("reference/target");
    old(&reference);
    let (code, _, err) = run(cachew(&url)
        .args(["restore", "ns"])
        .arg(&reference)
        .args(["--key", "wide"]));
    assert_eq!(code, 0, "{err}");
    let new = shape(&snapshot(&reference));
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let (mut halfway, mut rolled_back) = (0, 0);
    let mut rounds = 0;
    for round in 0..12 {
        rounds += 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let parent = tmp.path().join(format!("r{round}"));
        let target = parent.join("target");
        old(&target);
        let before = snapshot(&target);
        let mut child = cachew(&url)
            .args(["restore", "ns"])
            .arg(&target)
            .args(["--key", "wide"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the journal (the publish has begun), then a little more.
        let start = Instant::now();
        let journal = loop {
            let found = beside(&parent, &["target"])
                .into_iter()
                .map(|n| parent.join(n).join("journal"))
                .find(|j| j.exists());
            if found.is_some() || start.elapsed() > Duration::from_secs(20) {
                break found;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        assert!(journal.is_some(), "round {round}: no publish seen");
        // The publish of 500 merged directories takes some 10-50 ms.
        std::thread::sleep(Duration::from_micros(x % 15_000));
        signal(&child, libc::SIGKILL);
        child.wait().unwrap();
        let stopped = mid_publish(&parent);
        if stopped {
            // Killed between swaps: a mix of old and new, for now (unless
            // before the first swap or after the last).
            let now = snapshot(&target);
            if now != before && shape(&now) != new {
                halfway += 1;
            }
        }
        eprintln!("round {round}: stopped mid-publish: {stopped}");
        // The next run (gc here, or a restore) settles it: old or new.
        let (code, _, err) = run(cachew(&url).arg("gc").arg(&parent));
        assert_eq!(code, 0, "{err}");
        assert!(beside(&parent, &["target"]).is_empty(), "round {round}");
        let now = snapshot(&target);
        if stopped {
            assert!(same(&now, &before), "round {round}: not rolled back");
            rolled_back += 1;
        } else {
            assert!(now == before || shape(&now) == new, "round {round}: a mix");
        }
        if round % 2 == 0 {
            let (code, _, err) = run(cachew(&url)
                .args(["restore", "ns"])
                .arg(&target)
                .args(["--key", "wide"]));
            assert_eq!(code, 0, "{err}");
            assert!(same(&shape(&snapshot(&target)), &new), "round {round}");
        }
        if halfway >= 3 {
            break;
        }
    }
    eprintln!("{halfway} of {rounds} kills landed between swaps, {rolled_back} rolled back");
    assert!(halfway >= 2, "only {halfway} kills landed mid-publish");
}

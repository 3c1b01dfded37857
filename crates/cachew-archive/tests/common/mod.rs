//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

/// A description of every entry under `root` (including `root` itself as
/// `.`), keyed by relative path bytes: kind, mode, mtime, owner, size,
/// content, link target and hard-link group.
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut paths = Vec::new();
    collect(root, b".".to_vec(), &mut paths);
    paths.sort();
    for (rel, path) in &paths {
        let m = fs::symlink_metadata(path).unwrap();
        let ft = m.file_type();
        let mut desc = format!("mtime={} owner={}:{}", m.mtime(), m.uid(), m.gid());
        if ft.is_symlink() {
            let t = fs::read_link(path).unwrap();
            desc = format!("symlink -> {:?} {}", t, desc.split(' ').nth(1).unwrap());
        } else if ft.is_dir() {
            desc = format!("dir mode={:o} {desc}", m.mode() & 0o7777);
        } else {
            let content = if m.len() > 1 << 20 {
                format!("{} bytes (large, not compared here)", m.len())
            } else {
                format!("{:?}", String::from_utf8_lossy(&fs::read(path).unwrap()))
            };
            desc = format!("file mode={:o} {desc} content={content}", m.mode() & 0o7777);
            if m.nlink() > 1 {
                let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
                desc.push_str(&format!(
                    " hardlink-group={}",
                    String::from_utf8_lossy(first)
                ));
            }
        }
        out.insert(rel.clone(), desc);
    }
    out
}

fn collect(path: &Path, rel: Vec<u8>, out: &mut Vec<(Vec<u8>, std::path::PathBuf)>) {
    out.push((rel.clone(), path.to_path_buf()));
    let m = fs::symlink_metadata(path).unwrap();
    if m.is_dir() {
        for e in fs::read_dir(path).unwrap() {
            let e = e.unwrap();
            let mut r = rel.clone();
            r.push(b'/');
            r.extend_from_slice(e.file_name().as_bytes());
            collect(&e.path(), r, out);
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn set_mtime(p: &Path, t: i64) {
    filetime::set_symlink_file_times(
        p,
        filetime::FileTime::from_unix_time(t, 0),
        filetime::FileTime::from_unix_time(t, 0),
    )
    .unwrap();
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs a shell pipeline, panicking with its stderr on failure.
pub fn sh(script: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The log of a test run in a child process, once it is checked that the
/// child succeeded and got to its end (it prints `child checked` last).
pub fn child_log(out: &std::process::Output) -> String {
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("child checked"),
        "the child did not run: {log}"
    );
    log
}

/// Compressible but not trivially so: random nibbles.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8 & 0x0f
        })
        .collect()
}

/// Runs a shell command that reads `input` on stdin.
pub fn sh_in(script: &str, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Sorted member names of a compressed archive, as GNU tar lists them.
pub fn gnu_list(archive: &[u8]) -> Vec<String> {
    let out = sh_in("zstd -dc | tar -tf -", archive);
    let mut v: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// A temporary directory on tmpfs when there is one: some tests create
/// tens of thousands of entries, which is slow on some disks.
pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// A shell command that writes a tar stream of one regular file `bomb` of
/// `size` zero bytes (plus the end-of-archive blocks): a compression bomb
/// once piped into `zstd`. The header is written into `dir`.
pub fn zero_bomb_tar(dir: &Path, size: u64) -> String {
    let mut h = tar::Header::new_gnu();
    h.set_path("bomb").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    let header = dir.join("header");
    fs::write(&header, h.as_bytes()).unwrap();
    format!(
        "(cat '{}'; head -c {size} /dev/zero; head -c 1024 /dev/zero)",
        header.display()
    )
}

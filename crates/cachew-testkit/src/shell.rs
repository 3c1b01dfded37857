//! Running the independent tools the tests compare us with (GNU tar,
//! zstd, git, …) through `sh`, and reading child-process test logs.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Whether the tests run as root (some checks differ: root may chown and
/// make device nodes).
pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
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

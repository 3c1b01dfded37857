//! Same-name entries take effect in archive order whatever their kinds,
//! exactly as with GNU `tar -xpf`: a table of archives, each extracted by
//! GNU tar and by us, the two trees compared with `snapshot`.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use cachew_archive::{extract, ExtractOptions};
use cachew_testkit::*;

mod support;
use support::*;

fn mode_dir(name: &str, mode: u32) -> Vec<u8> {
    entry(name.as_bytes(), b'5', b"", b"", mode)
}

fn mode_file(name: &str, data: &[u8], mode: u32) -> Vec<u8> {
    entry(name.as_bytes(), b'0', b"", data, mode)
}

fn fifo(name: &str) -> Vec<u8> {
    node(name, b'6', 0, 0, 0o640)
}

/// A character device like `/dev/null` (1,3).
fn chr(name: &str) -> Vec<u8> {
    node(name, b'3', 1, 3, 0o666)
}

/// A block device like `/dev/loop0` (7,0).
fn blk(name: &str) -> Vec<u8> {
    node(name, b'4', 7, 0, 0o660)
}

/// The table: a name for each case and its entries in archive order.
/// Cases with device nodes are left out unless we run as root, the only
/// user GNU tar (and we) create them for.
fn cases() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut all = table();
    if !is_root() {
        all.retain(|(name, _)| !name.contains("device"));
    }
    all
}

fn table() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("symlink then fifo", vec![sym("s", "t"), fifo("s")]),
        ("fifo then symlink", vec![fifo("s"), sym("s", "t")]),
        ("file then fifo", vec![file("f", b"old"), fifo("f")]),
        ("fifo then file", vec![fifo("f"), file("f", b"new")]),
        ("fifo then dir", vec![fifo("f"), dir("f")]),
        ("empty dir then fifo", vec![dir("f"), fifo("f")]),
        (
            "hard link then fifo",
            vec![file("a", b"1"), hard("h", "a"), fifo("h")],
        ),
        (
            "fifo then hard link to it",
            vec![fifo("p"), hard("h", "p"), file("p", b"new")],
        ),
        (
            "a big file then fifo",
            vec![file("f", &vec![7u8; 600_000]), fifo("f")],
        ),
        ("symlink then char device", vec![sym("s", "t"), chr("s")]),
        ("char device then symlink", vec![chr("s"), sym("s", "t")]),
        ("file then block device", vec![file("f", b"old"), blk("f")]),
        ("block device then file", vec![blk("f"), file("f", b"new")]),
        ("fifo then char device", vec![fifo("f"), chr("f")]),
        ("char device then dir", vec![chr("f"), dir("f")]),
        (
            "hard link then block device",
            vec![file("a", b"1"), hard("h", "a"), blk("h")],
        ),
        ("file then file", vec![file("f", b"old"), file("f", b"new")]),
        ("file then dir", vec![file("f", b"old"), dir("f")]),
        ("empty dir then file", vec![dir("f"), file("f", b"new")]),
        (
            "non-empty dir then file",
            vec![dir("f"), file("f/x", b"1"), file("f", b"new")],
        ),
        ("symlink then file", vec![sym("s", "t"), file("s", b"new")]),
        ("file then symlink", vec![file("s", b"old"), sym("s", "t")]),
        ("symlink then dir", vec![sym("s", "t"), dir("s")]),
        ("empty dir then symlink", vec![dir("s"), sym("s", "t")]),
        ("symlink then symlink", vec![sym("s", "a"), sym("s", "b")]),
        (
            "hard link sees the data at the time of the link",
            vec![file("f", b"old"), hard("h", "f"), file("f", b"new")],
        ),
        (
            "hard links before and after a replacement",
            vec![
                file("f", b"old"),
                hard("h1", "f"),
                file("f", b"new"),
                hard("h2", "f"),
            ],
        ),
        (
            "file replaces a hard link",
            vec![file("a", b"old"), hard("h", "a"), file("h", b"new")],
        ),
        (
            "symlink replaces a hard link",
            vec![file("a", b"old"), hard("h", "a"), sym("h", "a")],
        ),
        (
            "hard link replaces a symlink",
            vec![file("a", b"old"), sym("h", "x"), hard("h", "a")],
        ),
        (
            "hard link to a symlink",
            vec![sym("s", "t"), hard("h", "s"), file("s", b"new")],
        ),
        (
            "hard link then dir",
            vec![file("a", b"1"), hard("h", "a"), dir("h")],
        ),
        (
            "repeated dirs: the last mode wins",
            vec![
                mode_dir("d", 0o700),
                file("d/f", b"1"),
                mode_dir("d", 0o750),
            ],
        ),
        (
            "repeated files: the last mode wins",
            vec![mode_file("f", b"1", 0o600), mode_file("f", b"2", 0o640)],
        ),
        (
            "a big file replaced by a link and back",
            vec![
                file("f", &vec![7u8; 600_000]),
                sym("f", "x"),
                file("f", b"small"),
                hard("g", "f"),
            ],
        ),
        (
            "dir replaced, then entries below the new name",
            vec![
                file("d", b"1"),
                dir("d"),
                file("d/x", b"2"),
                sym("d/y", "x"),
            ],
        ),
    ]
}

/// GNU tar's result: `Ok(())` or its stderr.
fn gnu_extract(tar: &[u8], dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).unwrap();
    let mut child = Command::new("tar")
        .args(["-xpf", "-", "-C"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), tar).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The snapshot without the root, whose times depend on when it was made.
fn tree(dir: &Path) -> Vec<(String, String)> {
    snapshot(dir)
        .into_iter()
        .filter(|(k, _)| k != b".")
        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
        .collect()
}

#[test]
fn same_name_entries_match_gnu_tar() {
    let dir = fast_tempdir();
    let mut failures = Vec::new();
    let mut compared = 0;
    for (i, (name, entries)) in cases().into_iter().enumerate() {
        let raw = tar_bytes(&entries, true);
        let gnu_dir = dir.path().join(format!("{i}-gnu"));
        let gnu = gnu_extract(&raw, &gnu_dir);
        for threads in [1, 3] {
            let ours_dir = dir.path().join(format!("{i}-ours-{threads}"));
            let ours = extract(
                compress(&raw).as_slice(),
                &ours_dir,
                &ExtractOptions::default().with_threads(threads),
            );
            match (&gnu, &ours) {
                (Ok(()), Ok(_)) => {
                    compared += 1;
                    let (g, o) = (tree(&gnu_dir), tree(&ours_dir));
                    if g != o {
                        failures.push(format!(
                            "{name} (threads {threads}):\n  gnu:  {g:?}\n  ours: {o:?}"
                        ));
                    }
                }
                (Err(_), Err(_)) => {}
                (Ok(()), Err(e)) => {
                    failures.push(format!("{name} (threads {threads}): we failed: {e}"))
                }
                (Err(e), Ok(_)) => failures.push(format!(
                    "{name} (threads {threads}): GNU tar failed ({e}), we did not"
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Only "non-empty dir then file" fails with both.
    assert_eq!(compared, 2 * (cases().len() - 1));
}

//! Bounded resources on hostile input: a name with thousands of components,
//! 300,000 repeated entries, a zstd bomb and long runs of pax headers
//! end with a clear error (or succeed) in bounded stack, memory and time;
//! names in messages are escaped.

use std::fs;
use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use cachew_archive::{extract, Error, ExtractOptions};
use cachew_testkit::*;

mod support;
use support::*;

/// A name of `n` components `a/a/…/a`.
fn deep_name(n: usize) -> String {
    vec!["a"; n].join("/")
}

#[test]
fn a_name_with_6000_components_is_a_clear_error() {
    let dir = fast_tempdir();
    for kind in [b'5', b'0', b'2'] {
        let link: &[u8] = if kind == b'2' { b"x" } else { b"" };
        let archive = pack(&[entry(deep_name(6000).as_bytes(), kind, link, b"", 0o755)]);
        // The archive was 135 bytes: a long name compresses to nothing.
        assert!(archive.len() < 400, "{}", archive.len());
        for threads in [1, 3] {
            let target = dir.path().join(format!("t{}-{threads}", kind as char));
            let err = extract(
                archive.as_slice(),
                &target,
                &ExtractOptions::default().with_threads(threads),
            )
            .unwrap_err();
            assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
            assert!(err.to_string().contains("512 name components"), "{err}");
            assert!(
                list(&target).is_empty(),
                "nothing was created in the target"
            );
        }
    }
    // Also as a hard link target and under a deep directory chain built of
    // many entries, each within the limit.
    let archive = pack(&[file("f", b"x"), hard("h", &deep_name(6000))]);
    let err = extract(
        archive.as_slice(),
        &dir.path().join("hard"),
        &ExtractOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("escapes") || err.to_string().contains("limit"));
}

#[test]
fn names_up_to_the_depth_limit_are_extracted_without_recursion() {
    // 500 components in one entry: each parent is created in a loop, not a
    // recursion, and the directory modes are applied at the end.
    let dir = fast_tempdir();
    let name = deep_name(500);
    let archive = pack(&[dir_entry(&name), file(&format!("{name}/f"), b"deep")]);
    let target = dir.path().join("t");
    // A small stack: recursion per component would overflow it.
    let t2 = target.clone();
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            extract(
                archive.as_slice(),
                &t2,
                &ExtractOptions::default().with_threads(1),
            )
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(
        fs::read(target.join(&name).join("f")).unwrap(),
        b"deep".to_vec()
    );
}

fn dir_entry(name: &str) -> Vec<u8> {
    entry(name.as_bytes(), b'5', b"", b"", 0o755)
}

/// A tar stream of `n` copies of `unit` and the end blocks, generated as
/// it is read (so the parent never holds it whole).
struct Repeat {
    unit: Vec<u8>,
    left: usize,
    pos: usize,
    end: usize,
}

impl Read for Repeat {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            let n = out.len().min(self.end);
            out[..n].fill(0);
            self.end -= n;
            return Ok(n);
        }
        let n = out.len().min(self.unit.len() - self.pos);
        out[..n].copy_from_slice(&self.unit[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.unit.len() {
            self.pos = 0;
            self.left -= 1;
        }
        Ok(n)
    }
}

fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Enough that 92 bytes kept per entry would show (26 MiB), few enough
/// for a debug build to parse in seconds.
const MANY: usize = 300_000;

/// The measuring half of the next test, run in a child process so that
/// other tests do not disturb its peak RSS.
#[test]
fn many_entries_child() {
    let Ok(path) = std::env::var("CACHEW_MANY_ENTRIES_ARCHIVE") else {
        return;
    };
    let archive = fs::read(&path).unwrap();
    let target = std::path::PathBuf::from(format!("{path}.target"));
    let before = peak_rss_kib();
    let summary = extract(
        archive.as_slice(),
        &target,
        &ExtractOptions::default().with_threads(2),
    )
    .unwrap();
    assert_eq!(summary.entries, MANY as u64 + 2);
    println!("PEAK-GROWTH-KIB {}", peak_rss_kib().saturating_sub(before));
    println!("child checked");
}

#[test]
fn many_repeated_entries_take_bounded_memory() {
    let dir = fast_tempdir();
    // Directory entries for the same two names over and over (92 bytes
    // each were kept before), then a file.
    let mut unit = dir_entry("d");
    unit.extend(dir_entry("d/e"));
    // The files first, then the repeated entries and the end blocks.
    let mut enc = zstd::Encoder::new(Vec::new(), 1).unwrap();
    let mut head = file("d/e/f", b"last");
    head.extend(file("d/g", b"x"));
    std::io::Write::write_all(&mut enc, &head).unwrap();
    let mut src = Repeat {
        unit,
        left: MANY / 2,
        pos: 0,
        end: 1024,
    };
    std::io::copy(&mut src, &mut enc).unwrap();
    let archive = enc.finish().unwrap();
    let path = dir.path().join("many.tar.zst");
    fs::write(&path, &archive).unwrap();

    let started = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "many_entries_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CACHEW_MANY_ENTRIES_ARCHIVE", &path)
        .output()
        .unwrap();
    let log = child_log(&out);
    assert!(out.status.success(), "{log}");
    let growth: u64 = log
        .lines()
        .find_map(|l| l.split("PEAK-GROWTH-KIB ").nth(1))
        .unwrap_or_else(|| panic!("no measurement in {log}"))
        .trim()
        .parse()
        .unwrap();
    // Decoding buffers and queues are a few MiB.
    assert!(growth < 12 * 1024, "peak RSS grew by {growth} KiB");
    assert!(started.elapsed() < Duration::from_secs(60));
    let t = dir.path().join("many.tar.zst.target");
    assert_eq!(fs::read(t.join("d/e/f")).unwrap(), b"last");
}

#[test]
fn a_zstd_bomb_stops_at_max_size() {
    let dir = fast_tempdir();
    let bomb = sh(&format!(
        "{} | zstd -q -c",
        zero_bomb_tar(dir.path(), 64 << 20)
    ));
    for threads in [1, 3] {
        let target = dir.path().join(format!("t{threads}"));
        let err = extract(
            bomb.as_slice(),
            &target,
            &ExtractOptions::default()
                .with_threads(threads)
                .with_max_size(Some(1 << 20)),
        )
        .unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
        assert!(err.to_string().contains("1048576-byte limit"), "{err}");
    }
    // Under the limit, the same archive extracts.
    extract(
        bomb.as_slice(),
        &dir.path().join("ok"),
        &ExtractOptions::default().with_max_size(Some(65 << 20)),
    )
    .unwrap();
}

#[test]
fn a_run_of_pax_headers_shares_one_limit() {
    // 40 pax headers of 64 KiB each with distinct keys before one entry:
    // 2.5 MiB of records would be held for a single entry.
    let mut entries = Vec::new();
    for i in 0..40 {
        let value = "v".repeat(64 * 1024);
        let rec_body = format!(" k{i}={value}\n");
        let mut len = rec_body.len() + 1;
        while format!("{len}{rec_body}").len() != len {
            len += 1;
        }
        let rec = format!("{len}{rec_body}");
        entries.push(entry(b"pax", b'x', b"", rec.as_bytes(), 0o644));
    }
    entries.push(file("f", b"x"));
    let err = extract(
        pack(&entries).as_slice(),
        &fast_tempdir().path().join("t"),
        &ExtractOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("pax headers"), "{err}");
}

#[test]
fn control_characters_in_names_are_escaped_in_messages() {
    let dir = fast_tempdir();
    let hostile: &[&[u8]] = &[
        b"/abs\x1b[2J\x1b]0;title\x07",
        b"../up\r\nFAKE: restored ok",
        b"bad\xff\xfe/../x",
    ];
    for name in hostile {
        let archive = pack(&[entry(name, b'0', b"", b"x", 0o644)]);
        let err = extract(
            archive.as_slice(),
            &dir.path().join("t"),
            &ExtractOptions::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            !text.bytes().any(|b| b < 0x20 || b == 0x7f),
            "raw control bytes in {text:?}"
        );
        assert!(text.contains("\\x1b") || text.contains("\\r\\n") || text.contains("\\xff"));
    }
    // Names of skipped entries (device nodes, when not root) are escaped
    // in the summary too: `tests/devices.rs`, which runs as an ordinary user.
}

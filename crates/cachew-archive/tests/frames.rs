//! pzstd-format streams through the public `extract`: several frames
//! decoded in parallel, trailers after the archive, broken framing, and
//! memory bounded on the parallel path.

use std::fs;
use std::path::Path;
use std::process::Command;

use cachew_archive::{extract, Error, ExtractOptions, ExtractSummary, SkippableFrame};
use cachew_testkit::*;

/// A tree with a large file (several frames at any level) and small ones.
fn build_tree(root: &Path) {
    fs::create_dir_all(root.join("sub")).unwrap();
    // A repeated random block: 36 MiB, more than one 32 MiB frame at level
    // 19, yet quick to compress.
    let block: Vec<u8> = noise(1 << 16, 1)
        .iter()
        .zip(noise(1 << 16, 2))
        .map(|(a, b)| a << 4 | b)
        .collect();
    let big: Vec<u8> = block.iter().copied().cycle().take(36 << 20).collect();
    fs::write(root.join("big"), big).unwrap();
    fs::write(root.join("sub/noise"), noise(9 << 20, 3)).unwrap();
    for i in 0..200 {
        fs::write(root.join(format!("sub/small-{i}")), format!("file {i}\n")).unwrap();
    }
}

fn tar_of(root: &Path) -> Vec<u8> {
    sh(&format!("tar -cpf - -C '{}' .", root.display()))
}

fn skippable(magic_low: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (0x184D_2A50 + magic_low).to_le_bytes().to_vec();
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// pzstd's 12-byte header announcing a frame of `len` bytes.
fn pzstd_header(len: usize) -> Vec<u8> {
    [
        &0x184D_2A50u32.to_le_bytes()[..],
        &4u32.to_le_bytes(),
        &(len as u32).to_le_bytes(),
    ]
    .concat()
}

/// Frame boundaries of a pzstd stream: (header offset, frame length).
fn pzstd_frames(s: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut i = 0;
    while i + 12 <= s.len() && s[i..i + 8] == pzstd_header(0)[..8] {
        let len = u32::from_le_bytes(s[i + 8..i + 12].try_into().unwrap()) as usize;
        v.push((i, len));
        i += 12 + len;
    }
    v
}

fn extract_with(
    data: &[u8],
    target: &Path,
    threads: usize,
) -> cachew_archive::Result<ExtractSummary> {
    let _ = fs::remove_dir_all(target);
    extract(
        data,
        target,
        &ExtractOptions::default().with_threads(threads),
    )
}

#[test]
fn pzstd_output_at_several_levels() {
    let dir = fast_tempdir();
    let src = dir.path().join("src");
    build_tree(&src);
    let tar = tar_of(&src);
    for level in [1, 3, 19] {
        let data = sh_in(&format!("pzstd -{level} -p2 -q -c"), &tar);
        assert!(pzstd_frames(&data).len() >= 2, "level {level}");
        for threads in [1, 2, 4] {
            let dst = dir.path().join("dst");
            let s = extract_with(&data, &dst, threads).unwrap();
            assert_eq!(s.files, 202);
            assert!(s.skippable_frames.is_empty());
            assert_eq!(
                snapshot(&src),
                snapshot(&dst),
                "level {level} threads {threads}"
            );
            assert!(fs::read(dst.join("big")).unwrap() == fs::read(src.join("big")).unwrap());
        }
    }
}

#[test]
fn mixed_streams_and_trailers() {
    let dir = fast_tempdir();
    let src = dir.path().join("src");
    build_tree(&src);
    let tar = tar_of(&src);
    // The tar cut in two: pzstd frames, then a plain zstd frame.
    let (head, tail) = tar.split_at(20 << 20);
    let mixed = [sh_in("pzstd -3 -p2 -q -c", head), sh_in("zstd -q -c", tail)].concat();
    // Two pzstd streams back to back, then a trailer.
    let trailer = skippable(9, b"digest: 0123456789abcdef");
    let doubled = [
        sh_in("pzstd -1 -p2 -q -c", head),
        sh_in("pzstd -3 -p2 -q -c", tail),
        trailer.clone(),
    ]
    .concat();
    // Plain zstd with a trailer.
    let plain = [sh_in("zstd -q -c", &tar), trailer.clone()].concat();
    for (name, data, trailers) in [
        ("mixed", &mixed, 0),
        ("doubled", &doubled, 1),
        ("plain", &plain, 1),
    ] {
        // What the tools make of it.
        assert!(sh_in("zstd -dc", data) == tar, "{name}");
        for threads in [1, 3] {
            let dst = dir.path().join("dst");
            let s = extract_with(data, &dst, threads).unwrap();
            assert_eq!(snapshot(&src), snapshot(&dst), "{name} threads {threads}");
            assert_eq!(s.skippable_frames.len(), trailers, "{name}");
            if trailers == 1 {
                let f: &SkippableFrame = &s.skippable_frames[0];
                assert_eq!(f.magic, 0x184D_2A59);
                assert_eq!(f.payload, b"digest: 0123456789abcdef");
            }
        }
    }
}

#[test]
fn broken_framing_is_an_error() {
    let dir = fast_tempdir();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), noise(20 << 20, 4)).unwrap();
    let data = sh_in("pzstd -3 -p2 -q -c", &tar_of(&src));
    let frames = pzstd_frames(&data);
    assert_eq!(frames.len(), 3);
    let dst = dir.path().join("dst");
    let (second, len) = frames[1];
    // Cut inside a header, inside a frame, and right after a header.
    for cut in [
        5,
        12,
        100,
        second + 6,
        second + 12,
        second + 12 + len / 2,
        data.len() - 1,
    ] {
        for threads in [1, 2] {
            let r = extract_with(&data[..cut], &dst, threads);
            assert!(
                matches!(r, Err(Error::Read(_)) | Err(Error::Truncated { .. })),
                "cut at {cut}: {r:?}"
            );
        }
    }
    // A cut exactly between frames is a valid zstd stream, but the tar is short.
    let r = extract_with(&data[..second], &dst, 2);
    assert!(matches!(r, Err(Error::Truncated { .. })), "{r:?}");
    // A header giving one byte more, or one byte less, than its frame.
    for delta in [1i64, -1] {
        let mut bad = data.clone();
        let given = (len as i64 + delta) as u32;
        bad[second + 8..second + 12].copy_from_slice(&given.to_le_bytes());
        for threads in [1, 2] {
            match extract_with(&bad, &dst, threads) {
                Err(Error::Read(e)) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                    assert!(e.to_string().contains("pzstd header"), "{e}");
                }
                r => panic!("size off by {delta} accepted: {r:?}"),
            }
        }
    }
    // Corrupt frame data and a bad checksum.
    for at in [second + 12 + len / 3, second + 12 + len - 1] {
        let mut bad = data.clone();
        bad[at] ^= 0x10;
        for threads in [1, 2] {
            let r = extract_with(&bad, &dst, threads);
            assert!(
                matches!(r, Err(Error::Read(_))),
                "corruption at {at}: {r:?}"
            );
        }
    }
    // Garbage after the frames, and where the first frame should be.
    let trailing = [&data[..], b"garbage"].concat();
    let r = extract_with(&trailing, &dst, 2);
    match r {
        Err(Error::Read(e)) => assert!(
            e.to_string()
                .contains("expected a zstd frame or a skippable frame"),
            "{e}"
        ),
        r => panic!("{r:?}"),
    }
    // An empty stream, as before.
    let r = extract_with(b"", &dst, 2);
    assert!(
        matches!(r, Err(Error::Read(ref e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{r:?}"
    );
}

/// The peak RSS of this process (`getrusage`, not Linux's
/// `/proc/self/status`, so that it runs on macOS too).
fn peak_rss_kib() -> u64 {
    // SAFETY: all-zero is a valid `rusage`, and getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a `rusage`.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) }, 0);
    let max = ru.ru_maxrss as u64;
    // Kilobytes on Linux and the BSDs, bytes on macOS.
    if cfg!(target_vendor = "apple") {
        max / 1024
    } else {
        max
    }
}

/// Runs `child` (a test of this binary) in its own process, so the peak RSS
/// it measures is its own.
fn run_child(child: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env("CACHEW_FRAMES_CHILD", "1")
        .output()
        .unwrap();
    let log = child_log(&out);
    eprintln!("{log}");
}

fn in_child() -> bool {
    std::env::var_os("CACHEW_FRAMES_CHILD").is_some()
}

#[test]
fn memory_is_bounded_on_the_parallel_path() {
    run_child("bounded_memory_child");
}

/// 1 GiB of zeros in one frame announced by a pzstd header (with and
/// without a content size), and 1 GiB in 128 pzstd frames of 8 MiB.
#[test]
fn bounded_memory_child() {
    if !in_child() {
        return;
    }
    const SIZE: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let tar = zero_bomb_tar(dir.path(), SIZE);
    // From a pipe, zstd writes no content size; with --stream-size it does.
    let unsized_frame = sh(&format!("{tar} | zstd -q -c"));
    let sized_frame = sh(&format!(
        "{tar} | zstd -q -c --stream-size={}",
        SIZE + 512 + 1024
    ));
    assert_ne!(unsized_frame[4] & 0xc0, sized_frame[4] & 0xc0);
    let framed = |f: &[u8]| [&pzstd_header(f.len())[..], f].concat();
    let many = sh(&format!("{tar} | pzstd -3 -p2 -q -c"));
    assert!(pzstd_frames(&many).len() >= 128);
    let before = peak_rss_kib();
    for (name, data) in [
        ("one frame, no content size", framed(&unsized_frame)),
        ("one frame with content size", framed(&sized_frame)),
        ("128 frames", many),
    ] {
        for threads in [1, 2] {
            let target = dir.path().join("t");
            let s = extract_with(&data, &target, threads).unwrap();
            assert_eq!(s.bytes, SIZE, "{name}");
            assert_eq!(fs::metadata(target.join("bomb")).unwrap().len(), SIZE);
            let grown = peak_rss_kib().saturating_sub(before);
            println!("{name}, threads {threads}: peak RSS grew by {grown} KiB");
            assert!(grown < 100 * 1024, "{name}: peak RSS grew by {grown} KiB");
        }
    }
    println!("child checked");
}

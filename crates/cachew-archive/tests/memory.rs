//! Memory stays bounded whatever the compression ratio. Alone in its own
//! test binary so the peak RSS is ours.

use std::fs;

use cachew_archive::{extract, ExtractOptions};
use cachew_testkit::*;

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

#[test]
fn a_compression_bomb_is_extracted_in_bounded_memory() {
    const SIZE: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    // 1 GiB of zeros compresses to a few tens of KiB.
    let bomb = sh(&format!("{} | zstd -q -c", zero_bomb_tar(dir.path(), SIZE)));
    assert!(bomb.len() < 1 << 20);
    let before = peak_rss_kib();
    for threads in [1, 2] {
        let target = dir.path().join(format!("t{threads}"));
        let s = extract(
            bomb.as_slice(),
            &target,
            &ExtractOptions::default().with_threads(threads),
        )
        .unwrap();
        assert_eq!(s.bytes, SIZE);
        assert_eq!(fs::metadata(target.join("bomb")).unwrap().len(), SIZE);
    }
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 100 * 1024, "peak RSS grew by {grown} KiB");
}

//! Memory stays bounded whatever the compression ratio. Alone in its own
//! test binary so the peak RSS is ours.

use std::fs;

use cachew_archive::{extract, ExtractOptions};
use cachew_testkit::*;

fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
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

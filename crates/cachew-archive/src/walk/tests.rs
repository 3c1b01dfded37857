use super::*;
use crate::{archive, extract, ArchiveOptions, ExtractOptions};
use std::fs;

/// Deeper than `DIR_FDS_MAX`, so the lower levels are opened by path.
#[test]
fn deep_trees_are_archived_whole() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let depth = DIR_FDS_MAX + 40;
    let mut p = src.clone();
    for i in 0..depth {
        p.push(format!("d{i}"));
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("f"), format!("file {i}")).unwrap();
        fs::write(p.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink(format!("target {i}"), p.join("l")).unwrap();
    }
    let none: [&str; 0] = [];
    let mut out = Vec::new();
    let s = archive(&mut out, &src, &["d0"], &none, &ArchiveOptions::default()).unwrap();
    assert_eq!(s.entries, 4 * depth as u64);
    let dst = dir.path().join("dst");
    extract(out.as_slice(), &dst, &ExtractOptions::default()).unwrap();
    let mut p = dst.clone();
    for i in 0..depth {
        p.push(format!("d{i}"));
        assert_eq!(
            fs::read(p.join("f")).unwrap(),
            format!("file {i}").as_bytes()
        );
        assert_eq!(fs::read(p.join("empty")).unwrap(), b"");
        let target = fs::read_link(p.join("l")).unwrap();
        assert_eq!(target, Path::new(&format!("target {i}")));
    }
}

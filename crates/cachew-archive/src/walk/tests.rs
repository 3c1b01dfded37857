use super::*;
use crate::{archive, extract, ArchiveOptions, ExtractOptions};
use std::fs;
use std::os::unix::fs::MetadataExt;

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

/// The directory reader this build uses (getdents64, or readdir with the
/// `portable-dirs` feature and off Linux) lists what std lists, with the
/// types `lstat` gives, across more than one buffer fill, and works on a
/// descriptor the walk opened with its own flags.
#[test]
fn read_dir_at_lists_what_std_lists() {
    eprintln!("directory reader: {}", sys::DIR_READER);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Long names so that 32 KiB of records is filled several times.
    for i in 0..600 {
        fs::write(root.join(format!("{i:04}-{}", "n".repeat(200))), b"x").unwrap();
    }
    fs::create_dir(root.join("sub")).unwrap();
    std::os::unix::fs::symlink("sub", root.join("link")).unwrap();
    std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let mut want: Vec<(Vec<u8>, FileType)> = fs::read_dir(root)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let mode = fs::symlink_metadata(e.path()).unwrap().mode();
            let ft = FileType::from_raw_mode(mode as _);
            (e.file_name().as_bytes().to_vec(), ft)
        })
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let fd = sys::with_cstr(root.as_os_str().as_bytes(), |c| {
        sys::open_at(sys::cwd(), c, DIR_FLAGS)
    })
    .unwrap();
    let mut buf = Vec::with_capacity(sys::DIR_BUF);
    let mut got = Vec::new();
    sys::read_dir_at(&fd, &mut buf, |n, t| {
        got.push((n.to_bytes().to_vec(), t));
    })
    .unwrap();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got.len(), 603);
    // A file system may say `Unknown`; the walk then asks `lstat`.
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0);
        assert!(g.1 == w.1 || g.1 == FileType::Unknown, "{g:?} vs {w:?}");
    }
}

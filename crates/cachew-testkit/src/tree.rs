//! Snapshots and listings of directory trees, to compare what a restore
//! made with its source, and the small setters tests build trees with.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            // Never opened: a FIFO would block, a device act.
            let kind = if ft.is_fifo() {
                "fifo".to_string()
            } else {
                let kind = if ft.is_char_device() { "char" } else { "block" };
                let (major, minor) = (
                    (m.rdev() >> 8) & 0xfff,
                    (m.rdev() & 0xff) | ((m.rdev() >> 12) & 0xfff00),
                );
                format!("{kind} device {major},{minor}")
            };
            desc = format!("{kind} mode={:o} {desc}", m.mode() & 0o7777);
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

fn collect(path: &Path, rel: Vec<u8>, out: &mut Vec<(Vec<u8>, PathBuf)>) {
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

/// Sets the modification (and access) time of `p` itself, not following a
/// symlink, to `t` seconds after the epoch.
pub fn set_mtime(p: &Path, t: i64) {
    filetime::set_symlink_file_times(
        p,
        filetime::FileTime::from_unix_time(t, 0),
        filetime::FileTime::from_unix_time(t, 0),
    )
    .unwrap();
}

/// Sets the permission bits of `p`.
pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
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

/// One entry of a tree listing: contents, modes, link targets and mtimes.
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir {
        /// Permission bits (`mode & 0o7777`).
        mode: u32,
        /// Modification time, seconds since the epoch.
        mtime: i64,
    },
    /// A regular file.
    File {
        /// Permission bits (`mode & 0o7777`).
        mode: u32,
        /// Modification time, seconds since the epoch.
        mtime: i64,
        /// The whole contents.
        data: Vec<u8>,
    },
    /// A symbolic link.
    Link {
        /// Where it points, as stored.
        target: PathBuf,
    },
}

/// Everything below `root` (not `root` itself).
pub fn list(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for ent in fs::read_dir(dir).unwrap() {
            let path = ent.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                Node::Link {
                    target: fs::read_link(&path).unwrap(),
                }
            } else if meta.is_dir() {
                walk(root, &path, out);
                Node::Dir {
                    mode,
                    mtime: meta.mtime(),
                }
            } else {
                Node::File {
                    mode,
                    mtime: meta.mtime(),
                    data: fs::read(&path).unwrap(),
                }
            };
            out.insert(rel, node);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts two trees are equal, naming the first difference.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (la, lb) = (list(a), list(b));
    let names_a: Vec<_> = la.keys().collect();
    let names_b: Vec<_> = lb.keys().collect();
    assert_eq!(names_a, names_b, "different entries");
    for (name, node) in &la {
        assert_eq!(Some(node), lb.get(name), "{} differs", name.display());
    }
    assert!(la.len() > 5, "suspiciously small tree");
}

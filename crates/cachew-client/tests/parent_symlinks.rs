//! The archive crate's policy for symlinks in a parent position, through
//! an all-or-nothing restore into an existing directory: one leading
//! inside the target is followed (as GNU tar does) and the result swapped
//! in; one leading outside fails the restore, and the target and what is
//! outside are left as they were.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use cachew_client::{restore, CacheExt, CreateOptions, Key, MemoryCache, RestoreOptions};
use cachew_testkit::snapshot;
use http::HeaderMap;

/// A tar+zstd object of regular files and directories (`name/`), in order.
fn object(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_mtime(1_700_000_000);
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    zstd::encode_all(b.into_inner().unwrap().as_slice(), 3).unwrap()
}

/// `parent/target` with `sub/`, `a -> sub`, `out -> ../outside`, and an
/// empty `parent/outside`.
fn existing(parent: &Path) -> PathBuf {
    let t = parent.join("target");
    fs::create_dir_all(t.join("sub")).unwrap();
    fs::create_dir(parent.join("outside")).unwrap();
    fs::write(t.join("keep"), b"mine").unwrap();
    symlink("sub", t.join("a")).unwrap();
    symlink("../outside", t.join("out")).unwrap();
    t
}

async fn restore_object(body: Vec<u8>, target: &Path) -> cachew_client::Result<()> {
    let cache = MemoryCache::new(0);
    let key = Key::new("k");
    cache
        .put_bytes(
            &key,
            body.into(),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    restore(&cache, &[key], target, &RestoreOptions::default())
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_symlink_inside_the_target_is_followed() {
    let parent = tempfile::tempdir().unwrap();
    let target = existing(parent.path());
    restore_object(object(&[("a/f", b"through a")]), &target)
        .await
        .unwrap();
    assert_eq!(fs::read(target.join("sub/f")).unwrap(), b"through a");
    assert_eq!(fs::read_link(target.join("a")).unwrap(), Path::new("sub"));
    assert_eq!(fs::read(target.join("keep")).unwrap(), b"mine");
    // A directory entry at the symlink's name replaces it, as GNU tar does.
    restore_object(object(&[("a/", b""), ("a/g", b"g")]), &target)
        .await
        .unwrap();
    assert!(fs::symlink_metadata(target.join("a")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("a/g")).unwrap(), b"g");
    assert_eq!(fs::read(target.join("sub/f")).unwrap(), b"through a");
}

#[tokio::test]
async fn a_symlink_leading_outside_fails_the_restore_and_changes_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let target = existing(parent.path());
    let before = snapshot(&target);
    let err = restore_object(
        object(&[("first", b"1"), ("a/f", b"2"), ("out/f", b"3")]),
        &target,
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`out/f` would be written through `out`, a symlink to `../outside`"),
        "{msg}"
    );
    assert_eq!(snapshot(&target), before, "the target changed");
    assert_eq!(
        fs::read_dir(parent.path().join("outside")).unwrap().count(),
        0
    );
    let names: Vec<_> = fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "staging left behind: {names:?}");
}

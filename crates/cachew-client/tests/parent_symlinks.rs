//! Symlinks in a parent position through an all-or-nothing restore into an
//! existing directory: an archive with entries below a symlink of the
//! target is refused by name, the target and what is outside left as they
//! were; symlinks it does not pass through are kept.

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

/// The staging dir has gone and the target is as before.
fn assert_untouched(
    parent: &Path,
    target: &Path,
    before: &std::collections::BTreeMap<Vec<u8>, String>,
) {
    assert_eq!(&snapshot(target), before, "the target changed");
    assert_eq!(fs::read_dir(parent.join("outside")).unwrap().count(), 0);
    let names: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "staging left behind: {names:?}");
}

/// GNU tar writes `a/f` through an existing `a -> sub` and replaces `a` for
/// an `a/` entry. An in-place restore extracts into a fresh staging tree, in
/// which the two look alike, so it refuses both, naming the symlink, before
/// anything in the target changes (extracting straight into a directory
/// with `cachew-archive` follows GNU: `cachew-archive/tests/parent_symlinks.rs`).
#[tokio::test]
async fn a_symlink_inside_the_target_is_refused_by_name_and_nothing_changes() {
    let parent = tempfile::tempdir().unwrap();
    let target = existing(parent.path());
    let before = snapshot(&target);
    for entries in [
        &[("a/f", &b"through a"[..])][..],
        &[("a/", &b""[..]), ("a/g", &b"g"[..])][..],
    ] {
        let err = restore_object(object(entries), &target)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("a symlink (to `sub`)"), "{err}");
        assert!(err.contains("target/a"), "{err}");
        assert_untouched(parent.path(), &target, &before);
    }
}

#[tokio::test]
async fn a_symlink_leading_outside_fails_the_restore_and_changes_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let target = existing(parent.path());
    let before = snapshot(&target);
    let err = restore_object(object(&[("first", b"1"), ("out/f", b"3")]), &target)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("a symlink (to `../outside`)"), "{msg}");
    assert_untouched(parent.path(), &target, &before);
}

/// Symlinks the archive does not reach below are kept as they are.
#[tokio::test]
async fn symlinks_the_archive_does_not_pass_through_are_kept() {
    let parent = tempfile::tempdir().unwrap();
    let target = existing(parent.path());
    restore_object(object(&[("sub/f", b"direct"), ("new", b"n")]), &target)
        .await
        .unwrap();
    assert_eq!(fs::read(target.join("sub/f")).unwrap(), b"direct");
    assert_eq!(fs::read_link(target.join("a")).unwrap(), Path::new("sub"));
    assert_eq!(
        fs::read_link(target.join("out")).unwrap(),
        Path::new("../outside")
    );
    assert_eq!(fs::read(target.join("keep")).unwrap(), b"mine");
}

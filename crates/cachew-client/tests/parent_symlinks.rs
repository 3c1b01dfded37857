//! Symlinks in a parent position through an all-or-nothing restore into an
//! existing directory, compared with GNU tar 1.34 `tar -xpf` over a copy
//! of the same target: `a/f` through an existing `a -> sub` lands in
//! `sub/f`, an `a/` entry replaces the symlink by a directory; a symlink
//! that leads outside (or cannot be followed, or would make two entries
//! land on one name) fails the restore by name, and the target, what is
//! outside and the parent are left as they were.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cachew_client::{restore, CacheExt, CreateOptions, Key, MemoryCache, RestoreOptions};
use cachew_testkit::snapshot;
use http::HeaderMap;

/// A regular file (or a directory, `name/`) and its contents.
type Entry<'a> = (&'a str, &'a [u8]);

/// A tar of regular files and directories, in order.
fn tarball(entries: &[Entry<'_>]) -> Vec<u8> {
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
    b.into_inner().unwrap()
}

/// `parent/target` with `sub/`, `keep`, `a -> sub`, `chain -> a`,
/// `other/`, `sub/y -> ../other`,
/// `out -> ../outside`, `abs -> /…/outside`, `gone -> nothere` and
/// `tofile -> keep`, and an empty `parent/outside`.
fn existing(parent: &Path) -> PathBuf {
    let t = parent.join("target");
    fs::create_dir_all(t.join("sub")).unwrap();
    fs::create_dir(parent.join("outside")).unwrap();
    fs::write(t.join("keep"), b"mine").unwrap();
    symlink("sub", t.join("a")).unwrap();
    symlink("a", t.join("chain")).unwrap();
    fs::create_dir(t.join("other")).unwrap();
    symlink("../other", t.join("sub/y")).unwrap();
    symlink("../outside", t.join("out")).unwrap();
    symlink(parent.join("outside"), t.join("abs")).unwrap();
    symlink("nothere", t.join("gone")).unwrap();
    symlink("keep", t.join("tofile")).unwrap();
    t
}

async fn restore_object(tar: &[u8], target: &Path) -> cachew_client::Result<()> {
    let cache = MemoryCache::new(0);
    let key = Key::new("k");
    let body = zstd::encode_all(tar, 3).unwrap();
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

fn gnu_extract(tar: &[u8], dir: &Path) -> Result<(), String> {
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

/// The tree without directory times (both tools leave those of the
/// directories they write into, and of the ones they create as parents,
/// to the clock) and with the absolute symlink made comparable.
fn tree(target: &Path) -> BTreeMap<Vec<u8>, String> {
    let parent = target.parent().unwrap().to_string_lossy().into_owned();
    snapshot(target)
        .into_iter()
        .map(|(k, v)| {
            let v = if v.starts_with("dir ") {
                v.split(' ')
                    .filter(|w| !w.starts_with("mtime="))
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                v.replace(&parent, "PARENT")
            };
            (k, v)
        })
        .collect()
}

/// The staging dir has gone and the target is as before.
fn assert_untouched(parent: &Path, target: &Path, before: &BTreeMap<Vec<u8>, String>) {
    assert_eq!(&snapshot(target), before, "the target changed");
    assert_eq!(fs::read_dir(parent.join("outside")).unwrap().count(), 0);
    let names: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "staging left behind: {names:?}");
}

/// Symlinks inside the target: the result is GNU tar's over the same tree.
#[tokio::test]
async fn symlinks_inside_the_target_are_treated_as_gnu_tar_treats_them() {
    let cases: Vec<(&str, Vec<Entry<'_>>)> = vec![
        ("a file below the symlink", vec![("a/f", b"through a")]),
        (
            "a directory entry at the symlink's name replaces it",
            vec![("a/", b""), ("a/g", b"g")],
        ),
        (
            "a new directory below the symlink",
            vec![("a/x/f", b"deep"), ("new", b"n")],
        ),
        (
            "the archive's own entries where it leads",
            vec![("sub/", b""), ("sub/g", b"g"), ("a/f", b"through a")],
        ),
        ("a chain of symlinks", vec![("chain/f", b"twice")]),
        (
            "a symlink below a followed one",
            vec![("a/y/f", b"2"), ("a/y/z/g", b"3"), ("a/h", b"4")],
        ),
        (
            "replacing a file there",
            vec![("keep", b"old"), ("a/f", b"1")],
        ),
    ];
    let mut failures = Vec::new();
    for (what, entries) in cases {
        let tar = tarball(&entries);
        let (ours, gnu) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (t_ours, t_gnu) = (existing(ours.path()), existing(gnu.path()));
        // `sub` holds a file of its own that both must keep.
        for t in [&t_ours, &t_gnu] {
            fs::write(t.join("sub/old"), b"kept").unwrap();
        }
        gnu_extract(&tar, &t_gnu).unwrap_or_else(|e| panic!("{what}: GNU tar failed: {e}"));
        if let Err(e) = restore_object(&tar, &t_ours).await {
            failures.push(format!("{what}: {e}"));
            continue;
        }
        let (o, g) = (tree(&t_ours), tree(&t_gnu));
        if o != g {
            failures.push(format!("{what}:\n  gnu:  {g:?}\n  ours: {o:?}"));
        }
        let left = fs::read_dir(ours.path()).unwrap().count();
        if left != 2 {
            failures.push(format!("{what}: staging left behind"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Symlinks that cannot be followed safely, and archives whose result
/// would depend on the order of its entries, fail before anything changes.
#[tokio::test]
async fn symlinks_that_cannot_be_followed_fail_the_restore_and_change_nothing() {
    let many: Vec<String> = (0..4097).map(|i| format!("p{i}/f")).collect();
    let mut overflow: Vec<Entry<'_>> = many.iter().map(|n| (n.as_str(), &b""[..])).collect();
    overflow.push(("a/f", b"1"));
    let cases: Vec<(Vec<Entry<'_>>, &str)> =
        vec![
        (
            vec![("first", b"1"), ("out/f", b"3")],
            "symlink (to `../outside`), and it leads to a path above the target directory",
        ),
        (
            vec![("abs/f", b"3")],
            "it leads to an absolute path, outside the target directory",
        ),
        (vec![("gone/f", b"3")], "it leads to `nothere`: No such file"),
        (
            vec![("tofile/f", b"3")],
            "it leads to `keep`, which is not a directory",
        ),
        (
            vec![("sub/f", b"1"), ("a/f", b"2")],
            "two entries of the archive, `a/f` (through the symlink `a`) and `sub/f`, land on it",
        ),
        (
            vec![("a/f", b"1"), ("a/", b"")],
            "the archive has entries below `a` before its directory entry `a/`",
        ),
        (overflow, "created more than 4096 directories without entries"),
    ];
    for (entries, want) in cases {
        let parent = tempfile::tempdir().unwrap();
        let target = existing(parent.path());
        let before = snapshot(&target);
        let err = restore_object(&tarball(&entries), &target)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "want {want:?} in: {err}");
        assert!(err.contains("target/"), "names the symlink: {err}");
        assert_untouched(parent.path(), &target, &before);
    }
}

/// Symlinks the archive does not reach below are kept as they are.
#[tokio::test]
async fn symlinks_the_archive_does_not_pass_through_are_kept() {
    let parent = tempfile::tempdir().unwrap();
    let target = existing(parent.path());
    restore_object(&tarball(&[("sub/f", b"direct"), ("new", b"n")]), &target)
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

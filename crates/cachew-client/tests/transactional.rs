//! All-or-nothing restores: into an existing directory, a truncated,
//! bit-flipped, hostile or unverifiable object leaves it byte for byte as
//! it was; a success swaps the result in; fallback keys skip corrupt
//! objects; stale staging of a dead process is removed or rolled back.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cachew_client::{
    gc, restore, save, CacheExt, CreateOptions, Key, MemoryCache, RestoreOptions, RestoreOutcome,
    SaveOptions,
};
use cachew_testkit::snapshot;
use http::HeaderMap;

/// A saved tree: `a.txt`, `sub/b.txt`, a symlink, a read-only directory.
fn source() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs::create_dir_all(p.join("sub/ro")).unwrap();
    fs::write(p.join("a.txt"), b"new a").unwrap();
    fs::write(
        p.join("sub/b.txt"),
        cachew_testkit::random_bytes(300_000, 7),
    )
    .unwrap();
    fs::write(p.join("sub/ro/c.txt"), b"new c").unwrap();
    symlink("a.txt", p.join("link")).unwrap();
    fs::set_permissions(p.join("sub/ro"), fs::Permissions::from_mode(0o555)).unwrap();
    dir
}

/// An existing target with overlapping and extra entries, hard links and
/// a read-only directory.
fn existing(parent: &Path) -> PathBuf {
    let t = parent.join("target");
    fs::create_dir_all(t.join("sub/ro")).unwrap();
    fs::write(t.join("a.txt"), b"old a").unwrap();
    fs::hard_link(t.join("a.txt"), t.join("a-link")).unwrap();
    fs::write(t.join("extra"), b"mine").unwrap();
    fs::write(t.join("sub/ro/c.txt"), b"old c").unwrap();
    symlink("/nowhere", t.join("sub/dangling")).unwrap();
    fs::set_permissions(t.join("sub/ro"), fs::Permissions::from_mode(0o555)).unwrap();
    t
}

async fn saved(cache: &MemoryCache, key: &Key, src: &Path) -> Bytes {
    save(
        cache,
        key,
        src,
        &[PathBuf::from(".")],
        &SaveOptions::default(),
    )
    .await
    .unwrap();
    cache.get_bytes(key).await.unwrap()
}

async fn put(cache: &MemoryCache, key: &Key, body: Vec<u8>) {
    cache
        .put_bytes(
            key,
            body.into(),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
}

/// Names in `dir` other than `keep`.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[tokio::test]
async fn a_failed_restore_into_an_existing_directory_changes_nothing() {
    let src = source();
    let cache = MemoryCache::new(0);
    let good = saved(&cache, &Key::new("good"), src.path()).await;
    let mut flipped = good.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    // A deep name, a huge unpacked size and an unsafe name: hostile objects.
    let deep = {
        let mut h = tar::Header::new_gnu();
        h.set_path("x").unwrap();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_cksum();
        let name = vec!["d"; 6000].join("/");
        let mut tar = Vec::new();
        let mut b = tar::Builder::new(&mut tar);
        let mut ln = tar::Header::new_gnu();
        ln.set_path("././@LongLink").unwrap();
        ln.set_entry_type(tar::EntryType::GNULongName);
        ln.set_size(name.len() as u64 + 1);
        ln.set_cksum();
        b.append(&ln, [name.as_bytes(), b"\0"].concat().as_slice())
            .unwrap();
        b.append(&h, &[][..]).unwrap();
        b.finish().unwrap();
        drop(b);
        zstd::encode_all(tar.as_slice(), 3).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, RestoreOptions)> = vec![
        (
            "truncated",
            good[..good.len() * 2 / 3].to_vec(),
            RestoreOptions::default(),
        ),
        ("bit-flipped", flipped, RestoreOptions::default()),
        ("deep path", deep, RestoreOptions::default()),
        (
            "over max size",
            good.to_vec(),
            RestoreOptions::default().with_max_size(Some(100_000)),
        ),
    ];
    for (what, body, options) in cases {
        for threads in [1, 3] {
            let parent = tempfile::tempdir().unwrap();
            let target = existing(parent.path());
            let before = snapshot(&target);
            let key = Key::new(what);
            put(&cache, &key, body.clone()).await;
            let err = restore(
                &cache,
                &[key],
                &target,
                &options.clone().with_zstd_threads(threads),
            )
            .await
            .unwrap_err();
            assert!(err.is_corrupt_object(), "{what}: {err}");
            assert_eq!(snapshot(&target), before, "{what}: the target changed");
            assert_eq!(fs::metadata(target.join("a.txt")).unwrap().nlink(), 2);
            assert!(leftovers(parent.path(), &["target"]).is_empty(), "{what}");
        }
    }
}

#[tokio::test]
async fn a_successful_in_place_restore_merges_and_swaps_entries_in() {
    let src = source();
    let cache = MemoryCache::new(0);
    let key = Key::new("good");
    saved(&cache, &key, src.path()).await;
    let parent = tempfile::tempdir().unwrap();
    let target = existing(parent.path());
    let ino = |p: &str| fs::symlink_metadata(target.join(p)).unwrap().ino();
    let (root, sub, ro) = (ino("."), ino("sub"), ino("sub/ro"));
    let hit = restore(&cache, &[key], &target, &RestoreOptions::default())
        .await
        .unwrap();
    // Verified before publishing, as a new target is.
    assert!(
        matches!(
            hit,
            RestoreOutcome::Hit {
                verified: Some(_),
                ..
            }
        ),
        "{hit:?}"
    );
    // The target and `sub` hold entries the archive lacks: merged, same
    // directories; `sub/ro` holds nothing else: exchanged whole.
    assert_eq!((ino("."), ino("sub")), (root, sub));
    assert_ne!(ino("sub/ro"), ro, "swapped in");
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"new a");
    // The old file's other name keeps the old data: nothing was written through.
    assert_eq!(fs::read(target.join("a-link")).unwrap(), b"old a");
    assert_eq!(fs::read(target.join("extra")).unwrap(), b"mine");
    assert_eq!(fs::read(target.join("sub/ro/c.txt")).unwrap(), b"new c");
    assert!(fs::symlink_metadata(target.join("sub/dangling")).is_ok());
    let ro = fs::metadata(target.join("sub/ro")).unwrap().mode() & 0o777;
    assert_eq!(ro, 0o555);
    assert!(leftovers(parent.path(), &["target"]).is_empty());

    // Restored again over the same tree plus extras: the same result.
    let once = snapshot(&target);
    restore(&cache, &[key], &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(snapshot(&target), once);
    // A target the archive covers entirely is exchanged in one step.
    let plain = parent.path().join("plain");
    restore(&cache, &[key], &plain, &RestoreOptions::default())
        .await
        .unwrap();
    let (before, ino) = (snapshot(&plain), fs::metadata(&plain).unwrap().ino());
    restore(&cache, &[key], &plain, &RestoreOptions::default())
        .await
        .unwrap();
    assert_ne!(fs::metadata(&plain).unwrap().ino(), ino);
    assert_eq!(snapshot(&plain), before);
    assert!(leftovers(parent.path(), &["target", "plain"]).is_empty());
}

#[tokio::test]
async fn a_failed_restore_removes_the_parents_it_created() {
    let cache = MemoryCache::new(0);
    let key = Key::new("garbage");
    put(&cache, &key, b"not an archive".to_vec()).await;
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("a/b/c");
    restore(&cache, &[key], &target, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(leftovers(parent.path(), &[]).is_empty());
}

#[tokio::test]
async fn a_corrupt_object_falls_through_to_the_next_key() {
    let src = source();
    let cache = MemoryCache::new(0);
    let good = saved(&cache, &Key::new("fallback"), src.path()).await;
    put(&cache, &Key::new("exact"), good[..good.len() / 2].to_vec()).await;
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("out");
    let hit = restore(
        &cache,
        &[Key::new("exact"), Key::new("missing"), Key::new("fallback")],
        &target,
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        matches!(hit, RestoreOutcome::Hit { index: 2, .. }),
        "{hit:?}"
    );
    // With no usable later key, the corrupt object is the error.
    let err = restore(
        &cache,
        &[Key::new("exact"), Key::new("missing")],
        &parent.path().join("out2"),
        &RestoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.is_corrupt_object(), "{err}");
}

/// A pid that is certainly not running.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[tokio::test]
async fn stale_staging_of_a_dead_process_is_removed_or_rolled_back() {
    let src = source();
    let cache = MemoryCache::new(0);
    let key = Key::new("good");
    saved(&cache, &key, src.path()).await;
    let parent = tempfile::tempdir().unwrap();
    let pid = dead_pid();
    let stale = parent
        .path()
        .join(format!(".out.cachew-{pid}-1-0000abcd.staging"));
    fs::create_dir_all(stale.join("ro")).unwrap();
    fs::set_permissions(stale.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
    // Someone else's staging (alive: ourselves) and a look-alike stay.
    let alive = parent.path().join(format!(
        ".out.cachew-{}-{}-0000abcd.staging",
        std::process::id(),
        own_start()
    ));
    fs::create_dir(&alive).unwrap();
    fs::create_dir(parent.path().join(".out.cachew-notes")).unwrap();
    restore(
        &cache,
        &[key],
        &parent.path().join("out"),
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    let mut left = leftovers(parent.path(), &["out"]);
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!stale.exists());

    // An interrupted two-rename swap: the target is missing, its old tree
    // is in the `.old` directory of a dead owner; gc puts it back.
    let nested = parent.path().join("ws/deeper");
    fs::create_dir_all(&nested).unwrap();
    let old = nested.join(format!(".cache.cachew-{pid}-1-00000001.old"));
    fs::create_dir(&old).unwrap();
    fs::write(old.join("kept"), b"1").unwrap();
    let also_stale = nested.join(format!(".x.cachew-{pid}-1-00000002.staging"));
    fs::create_dir(&also_stale).unwrap();
    let done = gc(&parent.path().join("ws"), 8);
    assert_eq!(done.rolled_back, [nested.join("cache")]);
    assert_eq!(done.removed, [also_stale]);
    assert_eq!(fs::read(nested.join("cache/kept")).unwrap(), b"1");
}

fn own_start() -> u64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_new_directory_is_verified_before_it_becomes_visible() {
    use cachew_client::{Cache, OpenOptions};
    let src = source();
    let cache = MemoryCache::new(0);
    let key = Key::new("good");
    saved(&cache, &key, src.path()).await;
    let object = cache.open(&key, &OpenOptions::default()).await.unwrap();
    let headers = object.meta.headers.clone();
    let mut body = object.bytes().await.unwrap().to_vec();
    // The archive is intact; its trailer's digest is not.
    let last = body.len() - 1;
    body[last] ^= 0xff;
    let tampered = Key::new("tampered");
    cache
        .put_bytes(&tampered, body.into(), headers, &CreateOptions::default())
        .await
        .unwrap();
    let parent = tempfile::tempdir().unwrap();
    let err = restore(
        &cache,
        &[tampered],
        &parent.path().join("out"),
        &RestoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("verification failed"), "{err}");
    assert!(leftovers(parent.path(), &[]).is_empty());
    // The good object is verified on the way, without asking.
    let hit = restore(
        &cache,
        &[key],
        &parent.path().join("out"),
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            hit,
            RestoreOutcome::Hit {
                verified: Some(_),
                ..
            }
        ),
        "{hit:?}"
    );
}

#[tokio::test]
async fn names_from_the_archive_are_escaped_in_client_errors() {
    // A file entry below a directory that exists as a non-empty directory
    // in the way of a file: the error names the entry's path.
    let mut tar = Vec::new();
    let mut b = tar::Builder::new(&mut tar);
    for (name, kind) in [
        ("evil\x1b[2J\r\n", tar::EntryType::Directory),
        ("evil\x1b[2J\r\n/x", tar::EntryType::Regular),
        ("evil\x1b[2J\r\n", tar::EntryType::Regular),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }
    b.finish().unwrap();
    drop(b);
    let cache = MemoryCache::new(0);
    let key = Key::new("evil");
    put(&cache, &key, zstd::encode_all(tar.as_slice(), 3).unwrap()).await;
    let parent = tempfile::tempdir().unwrap();
    let err = restore(
        &cache,
        &[key],
        &parent.path().join("out"),
        &RestoreOptions::default(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("evil\\x1b[2J\\r\\n"), "{text}");
    assert!(!text.bytes().any(|b| b < 0x20), "{text:?}");
}

//! Deferred cleanup of an in-place restore (`RestoreOptions::deferred_cleanup`):
//! the restore returns with the new tree in place and the displaced old
//! entries in its committed staging directory; `remove_staging` removes
//! exactly that and refuses anything else; it and the recovery of a
//! concurrent restore (or `gc`) removing the same directory do not fail
//! each other.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use cachew_client::{
    gc, remove_staging, restore, save, Error, Key, MemoryCache, RestoreOptions, RestoreOutcome,
    SaveOptions,
};

/// Names in `dir` other than `keep`.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

fn displaced(outcome: &RestoreOutcome) -> Option<PathBuf> {
    match outcome {
        RestoreOutcome::Hit { displaced, .. } => displaced.clone(),
        other => panic!("not a hit: {other:?}"),
    }
}

/// A pid that is certainly not running.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn own_start() -> u64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A journal as a publish writes it (`journal.rs`): magic, the target,
/// and, if `committed`, only the commit record.
fn journal(target: &Path, committed: bool) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let t = target.as_os_str().as_bytes();
    let mut out = b"cachewj1".to_vec();
    out.extend_from_slice(&(t.len() as u32).to_le_bytes());
    out.extend_from_slice(t);
    if committed {
        out.push(b'C');
    }
    out
}

/// A staging directory of a dead owner beside `parent/target`, its
/// journal committed (or not), holding `files` old files in its tree.
fn hand_made_staging(parent: &Path, committed: bool, files: usize) -> PathBuf {
    let parent = fs::canonicalize(parent).unwrap();
    let staging = parent.join(format!(".target.cachew-{}-1-0000abcd.staging", dead_pid()));
    for i in 0..files {
        let dir = staging.join(format!("tree/d{}", i % 50));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{i}")), b"old").unwrap();
    }
    fs::create_dir_all(&staging).unwrap();
    fs::write(
        staging.join("journal"),
        journal(&parent.join("target"), committed),
    )
    .unwrap();
    staging
}

#[tokio::test]
async fn a_deferred_in_place_restore_leaves_the_old_entries_for_the_caller() {
    let src = tempfile::tempdir().unwrap();
    fs::create_dir(src.path().join("sub")).unwrap();
    fs::write(src.path().join("a.txt"), b"new a").unwrap();
    fs::write(src.path().join("sub/b.txt"), b"new b").unwrap();
    let cache = MemoryCache::new(0);
    let key = Key::new("k");
    save(
        &cache,
        &key,
        src.path(),
        &[PathBuf::from(".")],
        &SaveOptions::default(),
    )
    .await
    .unwrap();
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("target");
    let deferred = RestoreOptions::default().with_deferred_cleanup(true);
    // A new target displaces nothing.
    let hit = restore(&cache, &[key], &target, &deferred).await.unwrap();
    assert_eq!(displaced(&hit), None);
    assert!(leftovers(parent.path(), &["target"]).is_empty());

    fs::write(target.join("a.txt"), b"old a").unwrap();
    fs::write(target.join("mine"), b"kept").unwrap();
    let hit = restore(&cache, &[key], &target, &deferred).await.unwrap();
    let staging = displaced(&hit).expect("the old entries are left");
    // The new tree is in place, the old entry is in the staging directory
    // beside the target, and its journal says the publish finished.
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"new a");
    assert_eq!(fs::read(target.join("mine")).unwrap(), b"kept");
    assert_eq!(fs::read(staging.join("tree/a.txt")).unwrap(), b"old a");
    assert_eq!(
        staging.parent(),
        Some(fs::canonicalize(parent.path()).unwrap().as_path())
    );
    let name = staging.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(".target.cachew-") && name.ends_with(".staging"),
        "{name}"
    );
    assert_eq!(
        fs::read(staging.join("journal")).unwrap().last(),
        Some(&b'C')
    );
    // Its owner (this process) runs: another restore of the target leaves it.
    let hit = restore(&cache, &[key], &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(displaced(&hit), None, "removed at once by default");
    assert!(staging.is_dir());
    assert_eq!(leftovers(parent.path(), &["target"]), [name]);
    // The caller removes it; a second time is no error.
    remove_staging(&staging).unwrap();
    assert!(leftovers(parent.path(), &["target"]).is_empty());
    remove_staging(&staging).unwrap();
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"new a");
}

#[test]
fn remove_staging_refuses_anything_but_a_committed_staging_beside_its_target() {
    let parent = tempfile::tempdir().unwrap();
    let p = fs::canonicalize(parent.path()).unwrap();
    fs::create_dir(p.join("target")).unwrap();
    // A decoy with what a committed staging holds, under other names.
    let decoy = p.join("precious");
    fs::create_dir_all(decoy.join("tree")).unwrap();
    fs::write(decoy.join("tree/data"), b"keep me").unwrap();
    fs::write(decoy.join("journal"), journal(&p.join("target"), true)).unwrap();
    let pid = dead_pid();
    let named = |n: &str| p.join(n.replace("PID", &pid.to_string()));
    // No journal, and its owner (this process) runs: an extraction.
    let no_journal = p.join(format!(
        ".target.cachew-{}-{}-00000001.staging",
        std::process::id(),
        own_start()
    ));
    fs::create_dir_all(no_journal.join("tree")).unwrap();
    fs::write(no_journal.join("tree/data"), b"keep me").unwrap();
    let uncommitted = named(".target.cachew-PID-1-00000002.staging");
    fs::create_dir_all(uncommitted.join("tree")).unwrap();
    fs::write(uncommitted.join("tree/data"), b"keep me").unwrap();
    fs::write(
        uncommitted.join("journal"),
        journal(&p.join("target"), false),
    )
    .unwrap();
    // Committed, but for a target somewhere else.
    let elsewhere = named(".target.cachew-PID-1-00000003.staging");
    fs::create_dir_all(elsewhere.join("tree")).unwrap();
    fs::write(elsewhere.join("tree/data"), b"keep me").unwrap();
    fs::write(
        elsewhere.join("journal"),
        journal(Path::new("/elsewhere/target"), true),
    )
    .unwrap();
    // A symlink with a staging name, to the decoy.
    let link = named(".target.cachew-PID-1-00000004.staging");
    symlink(&decoy, &link).unwrap();
    let old = named(".target.cachew-PID-1-00000005.old");
    fs::create_dir_all(old.join("tree")).unwrap();
    fs::write(old.join("journal"), journal(&p.join("target"), true)).unwrap();
    let cases = [
        (decoy.clone(), "not that of a cachew staging directory"),
        (p.join("target"), "not that of a cachew staging directory"),
        (old.clone(), "not that of a cachew staging directory"),
        (PathBuf::from("/"), "no final name"),
        (no_journal.clone(), "owner (pid"),
        (uncommitted.clone(), "not committed"),
        (elsewhere.clone(), "not beside /elsewhere/target"),
        (link.clone(), "not a directory"),
    ];
    for (path, why) in &cases {
        let err = remove_staging(path).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("refusing to remove") && text.contains(why),
            "{text}"
        );
    }
    for dir in [&decoy, &no_journal, &uncommitted, &elsewhere] {
        assert_eq!(fs::read(dir.join("tree/data")).unwrap(), b"keep me");
    }
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    assert!(old.join("journal").exists());
    // The real thing goes, and nothing else; so does what a dead owner
    // left without a journal (as `gc` would remove it).
    let staging = hand_made_staging(&p, true, 20);
    remove_staging(&staging).unwrap();
    assert!(!staging.exists());
    let staging = hand_made_staging(&p, true, 20);
    fs::remove_file(staging.join("journal")).unwrap();
    remove_staging(&staging).unwrap();
    assert!(!staging.exists());
    let mut left = leftovers(&p, &[]);
    left.sort();
    assert_eq!(left.len(), 7, "{left:?}");
}

#[test]
fn a_recovery_and_a_deferred_removal_racing_both_succeed() {
    for round in 0..4 {
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("mine"), b"kept").unwrap();
        let staging = hand_made_staging(parent.path(), true, 3000);
        let barrier = std::sync::Barrier::new(2);
        let (removed, collected) = std::thread::scope(|s| {
            let collector = s.spawn(|| {
                barrier.wait();
                gc(parent.path(), 0)
            });
            barrier.wait();
            let removed = remove_staging(&staging);
            (removed, collector.join().unwrap())
        });
        removed.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(collected.rolled_back.is_empty(), "round {round}");
        assert!(!staging.exists(), "round {round}");
        assert_eq!(leftovers(parent.path(), &["target"]), Vec::<String>::new());
        assert_eq!(fs::read(target.join("mine")).unwrap(), b"kept");
    }
}

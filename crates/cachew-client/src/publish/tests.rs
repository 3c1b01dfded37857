//! The publish and its journal: the merged result is what `tar -x` over
//! the target leaves, a conflict fails before anything changes, and a
//! death after any journal record is rolled back to the exact old tree.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use cachew_testkit::snapshot;

use super::{crash, plan, publish};
use crate::journal::{self, Settled, TREE};

fn set_mtime(p: &Path, secs: u64) {
    let f = fs::File::open(p).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(UNIX_EPOCH + Duration::from_secs(secs)))
        .unwrap();
}

/// The target: overlapping entries, extras at several depths, a file
/// where the archive has a directory, an empty directory where it has a
/// file, a read-only directory, a symlink and a hard link.
fn old_tree(t: &Path) {
    fs::create_dir_all(t.join("same/deep")).unwrap();
    fs::write(t.join("same/deep/f"), b"old f").unwrap();
    fs::create_dir_all(t.join("mixed/sub")).unwrap();
    fs::write(t.join("mixed/sub/keep"), b"mine").unwrap();
    fs::write(t.join("mixed/sub/both"), b"old both").unwrap();
    fs::hard_link(t.join("mixed/sub/both"), t.join("mixed/both-link")).unwrap();
    fs::write(t.join("was-file"), b"a file").unwrap();
    fs::create_dir(t.join("was-empty-dir")).unwrap();
    symlink("/nowhere", t.join("link")).unwrap();
    fs::create_dir(t.join("ro")).unwrap();
    fs::write(t.join("ro/x"), b"old x").unwrap();
    fs::write(t.join("ro/extra"), b"kept").unwrap();
    fs::set_permissions(t.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    for d in ["same/deep", "same", "mixed/sub", "mixed", "ro", ""] {
        set_mtime(&t.join(d), 1_000_000);
    }
}

/// The staged archive.
fn new_tree(s: &Path) {
    fs::create_dir_all(s.join("same/deep")).unwrap();
    fs::write(s.join("same/deep/f"), b"new f").unwrap();
    fs::write(s.join("same/new"), b"new").unwrap();
    fs::create_dir_all(s.join("mixed/sub")).unwrap();
    fs::write(s.join("mixed/sub/both"), b"new both").unwrap();
    fs::write(s.join("mixed/sub/added"), b"added").unwrap();
    fs::create_dir_all(s.join("was-file/inside")).unwrap();
    fs::write(s.join("was-empty-dir"), b"now a file").unwrap();
    fs::write(s.join("link"), b"not a link").unwrap();
    fs::create_dir_all(s.join("only-new/a/b")).unwrap();
    fs::create_dir(s.join("ro")).unwrap();
    fs::write(s.join("ro/x"), b"new x").unwrap();
    fs::set_permissions(s.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    for d in ["same/deep", "same", "mixed/sub", "mixed", "ro", ""] {
        set_mtime(&s.join(d), 2_000_000);
    }
}

struct Case {
    _tmp: tempfile::TempDir,
    target: std::path::PathBuf,
    staging: std::path::PathBuf,
}

fn case() -> Case {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let staging = tmp.path().join("staging");
    fs::create_dir_all(&target).unwrap();
    fs::create_dir_all(staging.join(TREE)).unwrap();
    old_tree(&target);
    new_tree(&staging.join(TREE));
    Case {
        _tmp: tmp,
        target,
        staging,
    }
}

#[test]
fn the_result_is_the_archive_over_the_target() {
    let c = case();
    let expected_new = snapshot(&c.staging.join(TREE));
    let p = plan(
        &c.target,
        &c.staging.join(TREE),
        None,
        true,
        Some(&Default::default()),
    )
    .unwrap();
    let done = publish(&c.target, &c.staging, &p).unwrap();
    let now = snapshot(&c.target);
    // Every archive entry as staged (directories too: mode and time)...
    for (k, v) in &expected_new {
        assert_eq!(now.get(k), Some(v), "{}", String::from_utf8_lossy(k));
    }
    // ...and the target's other entries where they were.
    let kept: Vec<_> = now
        .keys()
        .filter(|k| !expected_new.contains_key(*k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(
        kept,
        ["./mixed/both-link", "./mixed/sub/keep", "./ro/extra"]
    );
    assert_eq!(
        fs::read(c.target.join("mixed/both-link")).unwrap(),
        b"old both"
    );
    // Merged: the target, mixed, mixed/sub, ro; `same` went in one exchange.
    assert_eq!(done.merged, 4);
    let old_same = fs::symlink_metadata(c.staging.join(TREE).join("same/deep/f")).unwrap();
    assert_eq!(
        fs::read(c.staging.join(TREE).join("same/deep/f")).unwrap(),
        b"old f"
    );
    assert!(old_same.is_file());
}

#[test]
fn a_target_the_archive_covers_is_exchanged_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (t, staging) = (tmp.path().join("t"), tmp.path().join("s"));
    fs::create_dir_all(t.join("a")).unwrap();
    fs::write(t.join("a/f"), b"old").unwrap();
    fs::create_dir_all(staging.join(TREE).join("a")).unwrap();
    fs::write(staging.join(TREE).join("a/f"), b"new").unwrap();
    fs::write(staging.join(TREE).join("g"), b"new").unwrap();
    let ino = fs::metadata(&t).unwrap().ino();
    let p = plan(
        &t,
        &staging.join(TREE),
        None,
        true,
        Some(&Default::default()),
    )
    .unwrap();
    let done = publish(&t, &staging, &p).unwrap();
    assert_eq!((done.merged, done.swaps), (0, 1));
    assert_ne!(fs::metadata(&t).unwrap().ino(), ino);
    assert_eq!(fs::read(t.join("a/f")).unwrap(), b"new");
    // A target that cannot be exchanged (a mount point) is merged.
    let p = plan(
        &t,
        &staging.join(TREE),
        None,
        false,
        Some(&Default::default()),
    )
    .unwrap();
    assert!(p.merge.contains(&b""[..]));
}

#[test]
fn a_conflict_fails_before_anything_changes() {
    let c = case();
    fs::write(c.target.join("same/deep/g"), b"x").unwrap();
    fs::remove_dir_all(c.staging.join(TREE).join("same/deep")).unwrap();
    fs::write(c.staging.join(TREE).join("same/deep"), b"a file").unwrap();
    let before = snapshot(&c.target);
    let err = plan(
        &c.target,
        &c.staging.join(TREE),
        None,
        true,
        Some(&Default::default()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("non-empty directory"), "{err}");
    assert_eq!(snapshot(&c.target), before);
}

#[test]
fn a_death_after_any_record_is_rolled_back_exactly() {
    let c = case();
    let p = plan(
        &c.target,
        &c.staging.join(TREE),
        None,
        true,
        Some(&Default::default()),
    )
    .unwrap();
    publish(&c.target, &c.staging, &p).unwrap();
    let (_, ops) = journal::read(&c.staging).unwrap().unwrap();
    let steps = ops.len() as u64 - 1; // all but Commit
    assert!(steps >= 10, "{ops:?}");
    // A failing step (the error path): undone at once.
    for n in 0..steps {
        let c = case();
        let before = snapshot(&c.target);
        let p = plan(
            &c.target,
            &c.staging.join(TREE),
            None,
            true,
            Some(&Default::default()),
        )
        .unwrap();
        crash::at(Some(n), false);
        let failed = publish(&c.target, &c.staging, &p).unwrap_err();
        crash::at(None, false);
        assert!(failed.undone, "step {n}");
        assert!(failed.error.to_string().contains("simulated failure"));
        assert_eq!(snapshot(&c.target), before, "step {n}: not undone");
    }
    // A death: the next run's settle rolls back.
    for n in 0..steps {
        let c = case();
        let before = snapshot(&c.target);
        let p = plan(
            &c.target,
            &c.staging.join(TREE),
            None,
            true,
            Some(&Default::default()),
        )
        .unwrap();
        crash::at(Some(n), true);
        let failed = publish(&c.target, &c.staging, &p).unwrap_err();
        crash::at(None, false);
        assert!(!failed.undone, "step {n}");
        match journal::settle(&c.staging).unwrap() {
            Settled::RolledBack(t) => assert_eq!(t, c.target),
            other => panic!("step {n}: {other:?}"),
        }
        assert_eq!(snapshot(&c.target), before, "step {n}: not rolled back");
        // A rollback that is itself repeated (killed, run again) is harmless.
        journal::settle(&c.staging).unwrap();
        assert_eq!(snapshot(&c.target), before, "step {n}: settled twice");
    }
    // A death after the commit record: the result stays.
    let c = case();
    let p = plan(
        &c.target,
        &c.staging.join(TREE),
        None,
        true,
        Some(&Default::default()),
    )
    .unwrap();
    crash::at(Some(steps), true);
    let after = publish(&c.target, &c.staging, &p);
    crash::at(None, false);
    assert!(after.is_err());
    assert_eq!(journal::settle(&c.staging).unwrap(), Settled::Committed);
    assert_eq!(fs::read(c.target.join("same/deep/f")).unwrap(), b"new f");
}

/// A symlink of the target that an implied directory of the archive goes
/// through: followed (the staged entries moved to where it leads), and a
/// death after any record of that publish rolled back exactly.
#[test]
fn a_followed_symlink_is_published_and_rolled_back_like_any_merge() {
    let setup = || {
        let tmp = tempfile::tempdir().unwrap();
        let (t, staging) = (tmp.path().join("t"), tmp.path().join("s"));
        fs::create_dir_all(t.join("sub")).unwrap();
        fs::write(t.join("sub/old"), b"kept").unwrap();
        fs::write(t.join("sub/f"), b"old f").unwrap();
        symlink("sub", t.join("a")).unwrap();
        set_mtime(&t.join("sub"), 1_000_000);
        let s = staging.join(TREE);
        fs::create_dir_all(s.join("a/x")).unwrap();
        fs::write(s.join("a/f"), b"new f").unwrap();
        fs::write(s.join("a/x/g"), b"g").unwrap();
        let implied: std::collections::HashMap<_, _> = [("a", false), ("a/x", false)]
            .map(|(p, l)| (p.into(), l))
            .into();
        (tmp, t, staging, implied)
    };
    let (_tmp, t, staging, implied) = setup();
    let p = plan(&t, &staging.join(TREE), None, true, Some(&implied)).unwrap();
    publish(&t, &staging, &p).unwrap();
    assert_eq!(fs::read(t.join("sub/f")).unwrap(), b"new f");
    assert_eq!(fs::read(t.join("sub/x/g")).unwrap(), b"g");
    assert_eq!(fs::read(t.join("sub/old")).unwrap(), b"kept");
    assert_eq!(fs::read_link(t.join("a")).unwrap(), Path::new("sub"));
    let steps = journal::read(&staging).unwrap().unwrap().1.len() as u64 - 1;
    assert!(steps >= 3, "{steps}");
    for n in 0..steps {
        let (_tmp, t, staging, implied) = setup();
        let before = snapshot(&t);
        let p = plan(&t, &staging.join(TREE), None, true, Some(&implied)).unwrap();
        crash::at(Some(n), true);
        let failed = publish(&t, &staging, &p).unwrap_err();
        crash::at(None, false);
        assert!(!failed.undone, "step {n}");
        assert!(matches!(
            journal::settle(&staging).unwrap(),
            Settled::RolledBack(_)
        ));
        assert_eq!(snapshot(&t), before, "step {n}: not rolled back");
    }
}

//! DIR of `git restore`: resolving it (absolute, cleaned), what it is now,
//! where its staging directory goes, and moving a finished clone into
//! place — by one rename for a new or empty DIR, or by a journaled merge
//! into an existing DIR that is rolled back on failure.
//!
//! The staging directory is a [`crate::staging`] one, named
//! `.NAME.cachew-PID-START-RAND.staging` beside DIR, so that what a killed
//! restore leaves is recognised by its owner's pid and removed by the next
//! restore of DIR and by `cachew gc`. It holds everything the restore
//! writes before the move: `clone/` (the snapshot, bundle applied, LFS
//! objects in its `.git`), `bundle` (the delta bundle while it is applied)
//! and `backup/` (DIR's replaced entries during a merge).

use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};

/// What DIR is before the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirState {
    /// Nothing there.
    Absent,
    /// An empty directory.
    Empty,
    /// A directory with a `.git`.
    Clone,
    /// A non-empty directory without `.git`.
    Other,
}

/// DIR made absolute (from the current directory) and cleaned lexically
/// (`a/./b/` is `a/b`, `a/../b` is `b`), so that a trailing slash or `.`
/// never changes where the staging directory goes (LESSONS 3) and every
/// path handed to `git` is absolute (LESSONS 15).
pub(super) fn resolve(dir: &Path) -> Result<PathBuf> {
    let bad = || {
        Error::InvalidInput(format!(
            "cannot restore into {}: name a directory",
            dir.display()
        ))
    };
    if dir.as_os_str().is_empty() {
        return Err(bad());
    }
    let joined = std::path::absolute(dir).map_err(|e| Error::io("resolve", dir, e))?;
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.file_name().is_none() {
        return Err(bad());
    }
    Ok(out)
}

/// What `dir` is now. A symlink to a directory counts as that directory;
/// anything else that is not a directory is an error.
pub(super) async fn inspect(dir: &Path) -> Result<DirState> {
    match tokio::fs::metadata(dir).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling symlink is not "absent": renaming over it would
            // replace the user's link.
            if tokio::fs::symlink_metadata(dir).await.is_ok() {
                return Err(Error::InvalidInput(format!(
                    "{} is a dangling symbolic link",
                    dir.display()
                )));
            }
            return Ok(DirState::Absent);
        }
        Err(e) => return Err(Error::io("inspect", dir, e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::InvalidInput(format!(
                "{} exists and is not a directory",
                dir.display()
            )))
        }
        Ok(_) => {}
    }
    if tokio::fs::symlink_metadata(dir.join(".git")).await.is_ok() {
        return Ok(DirState::Clone);
    }
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| Error::io("read directory", dir, e))?;
    let first = entries
        .next_entry()
        .await
        .map_err(|e| Error::io("read directory", dir, e))?;
    Ok(if first.is_none() {
        DirState::Empty
    } else {
        DirState::Other
    })
}

/// The directory the staging directory goes beside: DIR's real path
/// (symlinks resolved for an existing DIR), so that every rename stays on
/// one file system (LESSONS 2).
pub(super) fn real_target(dir: &Path, state: DirState) -> Result<PathBuf> {
    match state {
        DirState::Absent => Ok(dir.to_path_buf()),
        _ => std::fs::canonicalize(dir).map_err(|e| Error::io("resolve", dir, e)),
    }
}

/// Where the finished clone is built inside a staging directory.
pub(super) fn clone_in(staging: &Path) -> PathBuf {
    staging.join("clone")
}

/// Where the delta bundle is written inside a staging directory.
pub(super) fn bundle_in(staging: &Path) -> PathBuf {
    staging.join("bundle")
}

/// The file a merge into DIR keeps in DIR while it runs: if it is still
/// there, a restore was killed half-way through a merge, and DIR mixes old
/// and new entries whatever its refs say.
const MERGING: &str = ".cachew-git-restore-incomplete";

/// Whether a merge into `dir` was interrupted (see [`MERGING`]): the next
/// restore must merge a snapshot again rather than trust DIR's refs.
pub(super) fn merge_interrupted(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(MERGING)).is_ok()
}

/// Removes a path (file or directory tree) this restore created when it is
/// dropped, e.g. when the restore is cancelled half-way.
#[derive(Debug)]
pub(super) struct TempPath(Option<PathBuf>);

impl TempPath {
    pub(super) fn new(path: PathBuf) -> TempPath {
        TempPath(Some(path))
    }

    pub(super) fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            remove_path(&path);
        }
    }
}

/// Removes `path`, retrying briefly: the extractor's threads may still be
/// finishing a file for a moment after a restore was dropped.
pub(super) fn remove_path(path: &Path) {
    for _ in 0..5 {
        let result = match std::fs::symlink_metadata(path) {
            Err(_) => return,
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
            Ok(_) => std::fs::remove_file(path),
        };
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => return,
        }
    }
}

/// One reversible step of a merge.
#[derive(Debug)]
enum Step {
    /// DIR's entry `at` was moved aside to `to` (in the backup tree).
    MovedAside { at: PathBuf, to: PathBuf },
    /// The snapshot's entry `from` (in staging) was renamed to `at`.
    Placed { from: PathBuf, at: PathBuf },
}

/// Moves the finished clone in `staging` ([`clone_in`]) into `dir`: one
/// rename when DIR is absent or empty (rename(2) replaces nothing but an
/// empty directory), else a merge, whose backup tree is `staging/backup`.
/// Runs on the calling (blocking) thread; the caller removes `staging`.
///
/// The merge puts every entry of the snapshot where it belongs in DIR —
/// what DIR has that the snapshot lacks stays (untracked build outputs of a
/// persistent workspace), what both have is the snapshot's, as extracting
/// in place would leave it. Every replaced entry is first moved aside into a
/// backup tree in the staging directory, and every step is journaled; when a rename fails,
/// or when the result is not a usable clone (`git rev-parse HEAD`, `git
/// status`), the journal is undone in reverse and DIR is as it was. While
/// it runs, DIR holds the [`MERGING`] file ([`merge_interrupted`]).
pub(super) fn place(staging: &Path, dir: &Path, state: DirState) -> Result<()> {
    let clone = clone_in(staging);
    if matches!(state, DirState::Absent | DirState::Empty) {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io("create directory", parent, e))?;
        }
        return std::fs::rename(&clone, dir)
            .map_err(|e| Error::io("move the clone into place at", dir, e));
    }
    let marker = dir.join(MERGING);
    std::fs::write(
        &marker,
        b"a cachew git restore is merging a snapshot here\n",
    )
    .map_err(|e| Error::io("write", &marker, e))?;
    let backup = staging.join("backup");
    let mut journal = Vec::new();
    let merged = merge(&clone, dir, &backup, &mut journal)
        .map_err(|e| {
            Error::Backend(format!(
                "cannot merge the snapshot into {}: {e}",
                dir.display()
            ))
        })
        .and_then(|()| verify(dir));
    if merged.is_err() {
        if let Err(e) = rollback(&journal) {
            // Keep the backup (and the marker): the backup holds what could
            // not be put back.
            let kept = dir.with_file_name(format!(
                "{}.cachew-git-backup",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ));
            let kept = match std::fs::rename(&backup, &kept) {
                Ok(()) => kept,
                Err(_) => backup,
            };
            return Err(Error::Backend(format!(
                "{}; rolling back failed too ({e}); DIR's replaced entries are kept in {}",
                merged.err().map(|e| e.to_string()).unwrap_or_default(),
                kept.display()
            )));
        }
    }
    let _ = std::fs::remove_file(&marker);
    merged
}

fn merge(src: &Path, dst: &Path, backup: &Path, journal: &mut Vec<Step>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let from = src.join(&name);
        let at = dst.join(&name);
        let aside = backup.join(&name);
        let from_dir = entry.file_type()?.is_dir();
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if from_dir && meta.is_dir() => {
                merge(&from, &at, &aside, journal)?;
                continue;
            }
            Ok(_) => {
                std::fs::create_dir_all(backup)?;
                std::fs::rename(&at, &aside)?;
                journal.push(Step::MovedAside {
                    at: at.clone(),
                    to: aside,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(&from, &at)?;
        journal.push(Step::Placed { from, at });
    }
    Ok(())
}

fn rollback(journal: &[Step]) -> std::io::Result<()> {
    let mut first_error = None;
    for step in journal.iter().rev() {
        let result = match step {
            Step::Placed { from, at } => std::fs::rename(at, from),
            Step::MovedAside { at, to } => std::fs::rename(to, at),
        };
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Whether `dir` is a clone git can work with after a merge.
fn verify(dir: &Path) -> Result<()> {
    for args in [
        &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"][..],
        &["status", "--porcelain"][..],
    ] {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Error::Backend(format!("cannot run git: {e}")))?;
        if !out.status.success() {
            return Err(Error::Backend(format!(
                "after merging the snapshot, git {} fails in {}: {}",
                args[0],
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_become_absolute_and_clean() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(resolve(Path::new("repo/")).unwrap(), cwd.join("repo"));
        assert_eq!(
            resolve(Path::new("./a/./repo/")).unwrap(),
            cwd.join("a/repo")
        );
        assert_eq!(
            resolve(Path::new("/x/../y/./repo/.")).unwrap(),
            PathBuf::from("/y/repo")
        );
        assert!(resolve(Path::new("/")).is_err());
        assert!(resolve(Path::new("")).is_err());
    }

    #[test]
    fn a_failed_merge_is_undone() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::create_dir_all(dst.join("d")).unwrap();
        std::fs::write(src.join("d/a"), "new").unwrap();
        std::fs::write(dst.join("d/a"), "old").unwrap();
        std::fs::write(dst.join("keep"), "mine").unwrap();
        std::fs::write(src.join("b"), "new").unwrap();
        let backup = tmp.path().join("backup");
        let mut journal = Vec::new();
        merge(&src, &dst, &backup, &mut journal).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("d/a")).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(dst.join("keep")).unwrap(), "mine");
        rollback(&journal).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("d/a")).unwrap(), "old");
        assert!(!dst.join("b").exists());
        assert_eq!(std::fs::read_to_string(src.join("b")).unwrap(), "new");
        // Not a clone: verification fails and place() leaves dst as it was.
        let staging = tmp.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        std::fs::rename(&src, clone_in(&staging)).unwrap();
        assert!(place(&staging, &dst, DirState::Other).is_err());
        assert_eq!(std::fs::read_to_string(dst.join("d/a")).unwrap(), "old");
        assert!(!dst.join("b").exists());
        assert!(!merge_interrupted(&dst));
        let mut left: Vec<_> = std::fs::read_dir(&dst)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["d", "keep"]);
    }
}

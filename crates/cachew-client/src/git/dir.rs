//! DIR of `git restore`: resolving it (absolute, cleaned), what it is now,
//! the staging directory and temporary files beside it, and moving a
//! finished clone into place — by one rename for a new or empty DIR, or by
//! a journaled merge into an existing DIR that is rolled back on failure.

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

/// Where the staging directory of a restore into `dir` goes: beside the
/// real directory (symlinks resolved for an existing DIR), so that every
/// rename stays on one file system (LESSONS 2).
pub(super) fn staging_for(dir: &Path, state: DirState) -> Result<PathBuf> {
    let real = match state {
        DirState::Absent => dir.to_path_buf(),
        _ => std::fs::canonicalize(dir).map_err(|e| Error::io("resolve", dir, e))?,
    };
    let parent = real
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(parent.join(format!(
        ".{name}.cachew-git-{}-{:x}",
        std::process::id(),
        nanos()
    )))
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// `staging` with `suffix` appended to its name (a sibling path).
pub(super) fn sibling(staging: &Path, suffix: &str) -> PathBuf {
    let mut name = staging.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a path (file or directory tree) this restore created when it is
/// dropped, e.g. when the restore is cancelled half-way; [`TempPath::keep`]
/// disarms it.
#[derive(Debug)]
pub(super) struct TempPath(Option<PathBuf>);

impl TempPath {
    pub(super) fn new(path: PathBuf) -> TempPath {
        TempPath(Some(path))
    }

    pub(super) fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// Disarms the guard (the path was moved away or handed on).
    pub(super) fn keep(&mut self) {
        self.0 = None;
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

/// Moves the finished clone at `staging` into `dir`: one rename when DIR is
/// absent or empty (rename(2) replaces nothing but an empty directory),
/// else a merge. Runs on the calling (blocking) thread, and owns `staging`
/// from here on: it is gone when this returns, whatever the outcome.
///
/// The merge puts every entry of the snapshot where it belongs in DIR —
/// what DIR has that the snapshot lacks stays (untracked build outputs of a
/// persistent workspace), what both have is the snapshot's, as extracting
/// in place would leave it. Every replaced entry is first moved aside into a
/// backup tree beside DIR, and every step is journaled; when a rename fails,
/// or when the result is not a usable clone (`git rev-parse HEAD`, `git
/// status`), the journal is undone in reverse and DIR is as it was.
pub(super) fn place(staging: &Path, dir: &Path, state: DirState) -> Result<()> {
    let result = place_inner(staging, dir, state);
    remove_path(staging);
    result
}

fn place_inner(staging: &Path, dir: &Path, state: DirState) -> Result<()> {
    if matches!(state, DirState::Absent | DirState::Empty) {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io("create directory", parent, e))?;
        }
        return std::fs::rename(staging, dir)
            .map_err(|e| Error::io("move the clone into place at", dir, e));
    }
    let backup = sibling(staging, ".backup");
    let mut journal = Vec::new();
    let merged = merge(staging, dir, &backup, &mut journal)
        .map_err(|e| {
            Error::Backend(format!(
                "cannot merge the snapshot into {}: {e}",
                dir.display()
            ))
        })
        .and_then(|()| verify(dir));
    if merged.is_err() {
        if let Err(e) = rollback(&journal) {
            // Keep the backup: it holds what could not be put back.
            return Err(Error::Backend(format!(
                "{}; rolling back failed too ({e}); DIR's replaced entries are kept in {}",
                merged.err().map(|e| e.to_string()).unwrap_or_default(),
                backup.display()
            )));
        }
    }
    remove_path(&backup);
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
        std::fs::rename(&src, &staging).unwrap();
        assert!(place(&staging, &dst, DirState::Other).is_err());
        assert_eq!(std::fs::read_to_string(dst.join("d/a")).unwrap(), "old");
        assert!(!dst.join("b").exists());
        assert!(!staging.exists());
    }
}

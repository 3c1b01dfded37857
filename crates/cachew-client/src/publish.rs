//! Publishing a staged tree into an existing target by swapping entries
//! (`docs/ARCHITECTURE.md`, "Restores: staging, swap, recovery").
//!
//! The staged tree holds exactly the archive; the result must be what
//! `tar -x` over the target leaves: the archive's entries, and the
//! target's other entries where they were. [`plan`] walks the directories
//! that exist on both sides (reading, never changing) and finds those
//! where the target has an entry the archive lacks — they, and their
//! parents, must be merged; every other directory pair is exchanged in
//! one call. It also finds conflicts (a non-empty directory where the
//! archive has a file, as GNU tar refuses) before anything changes.
//! [`publish`] then, from the top: exchanges an unmarked directory whole
//! with `renameat2(RENAME_EXCHANGE)`; in a marked one, renames each staged
//! entry the target lacks into it (`RENAME_NOREPLACE`), exchanges each one
//! it has, descends into marked subdirectories, and gives the directory
//! the archive's mode and time. The old entries land in the staging tree,
//! which is removed at the end. Every step is journaled first
//! (`journal.rs`); a failure undoes them.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::journal::{self, join, Journal, Op};
use crate::{Error, Result};

/// Directories (relative to the target; `""` is the target) that must be
/// merged rather than exchanged whole.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    merge: HashSet<Vec<u8>>,
}

fn rel_join(rel: &[u8], name: &OsStr) -> Vec<u8> {
    let mut out = rel.to_vec();
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name.as_bytes());
    out
}

impl Plan {
    /// Marks `rel` and all its parents for merging.
    fn mark(&mut self, rel: &[u8]) {
        let mut rel = rel;
        loop {
            if !self.merge.insert(rel.to_vec()) {
                return;
            }
            match rel.iter().rposition(|&c| c == b'/') {
                Some(i) => rel = &rel[..i],
                None if rel.is_empty() => return,
                None => rel = b"",
            }
        }
    }
}

/// Each entry of a directory with whether it is a directory (symlinks are
/// not followed).
fn list(dir: &Path) -> Result<Vec<(OsString, bool)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read directory", dir, e))?;
        let is_dir = ent
            .file_type()
            .map_err(|e| Error::io("stat", ent.path(), e))?
            .is_dir();
        out.push((ent.file_name(), is_dir));
    }
    Ok(out)
}

/// Mount points strictly below `target` (from `/proc/self/mountinfo`;
/// none where that is unreadable, the device check in [`plan`] remains).
fn mounts_below(target: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in info.split(|&c| c == b'\n') {
        let Some(field) = line.split(|&c| c == b' ').nth(4) else {
            continue;
        };
        // Octal escapes (`\040` for a space) as the kernel writes them.
        let mut path = Vec::with_capacity(field.len());
        let mut i = 0;
        while i < field.len() {
            if field[i] == b'\\' && i + 3 < field.len() {
                if let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&field[i + 1..i + 4]), 8)
                {
                    path.push(v);
                    i += 4;
                    continue;
                }
            }
            path.push(field[i]);
            i += 1;
        }
        let p = PathBuf::from(OsStr::from_bytes(&path));
        if p != target && p.starts_with(target) {
            out.push(p);
        }
    }
    out
}

/// Reads both trees and decides what to exchange whole and what to merge
/// (see the module docs). `skip` is a name at the top of the target that
/// is left alone (the staging directory, when it is inside the target);
/// `whole` is false when the target itself cannot be exchanged (a mount
/// point). Fails, before anything changes, on a conflict.
pub(crate) fn plan(
    target: &Path,
    staged: &Path,
    skip: Option<&OsStr>,
    whole: bool,
) -> Result<Plan> {
    let mut plan = Plan::default();
    if !whole {
        plan.mark(b"");
    }
    let root_dev = std::fs::symlink_metadata(target)
        .map_err(|e| Error::io("stat", target, e))?
        .dev();
    for m in mounts_below(target) {
        if let Ok(rel) = m.strip_prefix(target) {
            plan.mark(rel.as_os_str().as_bytes());
        }
    }
    let mut todo: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = todo.pop() {
        let (t, s) = (join(target, &rel), join(staged, &rel));
        let t_meta = std::fs::symlink_metadata(&t).map_err(|e| Error::io("stat", &t, e))?;
        if t_meta.dev() != root_dev {
            // Another file system: it cannot be exchanged, nor can entries
            // be renamed into it (the publish fails and rolls back).
            plan.mark(&rel);
        }
        let staged_entries: HashMap<OsString, bool> = list(&s)?.into_iter().collect();
        for (name, t_dir) in list(&t)? {
            if rel.is_empty() && Some(name.as_os_str()) == skip {
                continue;
            }
            let child = rel_join(&rel, &name);
            match staged_entries.get(&name) {
                None => plan.mark(&rel),
                Some(true) if t_dir => todo.push(child),
                Some(true) => {
                    let path = join(target, &child);
                    if let Ok(dest) = std::fs::read_link(&path) {
                        // GNU tar writes `a/f` through an existing symlink
                        // `a`, but replaces it for an `a/` entry; the staged
                        // tree no longer tells which the archive had, so
                        // neither is guessed: refused before anything changes.
                        return Err(Error::Io {
                            op: "restore in place over",
                            path,
                            error: io::Error::other(format!(
                                "it is a symlink (to `{}`) where the archive has a directory; an \
                                 in-place restore neither writes through nor replaces a \
                                 symlink of the target: remove it, or restore into a new \
                                 directory",
                                cachew_archive::escape_path(&dest)
                            )),
                        });
                    }
                }
                Some(false) if t_dir => {
                    let path = join(target, &child);
                    let empty = std::fs::read_dir(&path)
                        .map_err(|e| Error::io("read directory", &path, e))?
                        .next()
                        .is_none();
                    if !empty {
                        return Err(Error::Io {
                            op: "replace",
                            path,
                            error: io::Error::other(
                                "a non-empty directory is in the way of a non-directory entry \
                                 of the archive",
                            ),
                        });
                    }
                }
                Some(_) => {}
            }
        }
    }
    Ok(plan)
}

/// `renameat2(from, to, RENAME_EXCHANGE)`.
pub(crate) fn exchange(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        renameat_with(CWD, from, CWD, to, RenameFlags::EXCHANGE).map_err(io::Error::from)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    {
        let _ = (from, to);
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    }
}

/// `rename(from, to)` that fails if `to` exists.
fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            r => return r.map_err(io::Error::from),
        }
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    std::fs::rename(from, to)
}

fn no_exchange(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// What [`publish`] did, for the caller's messages and the benchmark.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Published {
    /// Directories merged entry by entry.
    pub(crate) merged: u64,
    /// Renames and exchanges made.
    pub(crate) swaps: u64,
}

struct Publisher<'a> {
    target: &'a Path,
    staged: &'a Path,
    staging: &'a Path,
    journal: Journal,
    root: bool,
    aside: u64,
    done: Published,
}

impl Publisher<'_> {
    fn log(&mut self, op: &Op) -> Result<()> {
        self.journal
            .log(op)
            .map_err(|e| Error::io("write the journal in", self.staging, e))?;
        #[cfg(test)]
        if let Some(die) = crash::now() {
            let what = if die {
                crash::MESSAGE
            } else {
                "simulated failure"
            };
            return Err(Error::Backend(what.into()));
        }
        Ok(())
    }

    /// Puts the staged entry `rel` in place of the target's, keeping the
    /// old one in the staging tree. `Ok(false)`: it is a directory that
    /// cannot be renamed here (e.g. overlayfs lower layers), merge it.
    fn replace(&mut self, rel: &[u8], is_dir: bool) -> Result<bool> {
        let (s, t) = (join(self.staged, rel), join(self.target, rel));
        let m = std::fs::symlink_metadata(&s).map_err(|e| Error::io("stat", &s, e))?;
        let (dev, ino) = (m.dev(), m.ino());
        self.log(&Op::Exchange {
            rel: rel.to_vec(),
            dev,
            ino,
        })?;
        self.done.swaps += 1;
        let e = match exchange(&s, &t) {
            Ok(()) => return Ok(true),
            // A directory that cannot move (overlayfs lower layers give
            // EXDEV; an unprivileged user cannot move a read-only one):
            // merged instead.
            Err(e) if is_dir && matches!(e.raw_os_error(), Some(libc::EXDEV | libc::EACCES)) => {
                return Ok(false)
            }
            Err(e) if no_exchange(&e) => e,
            Err(e) => return Err(Error::io("swap into place", &t, e)),
        };
        // No RENAME_EXCHANGE: the old entry aside, then the new one in.
        let _ = e;
        let n = self.aside;
        self.aside += 1;
        let dir = self.staging.join(journal::ASIDE);
        if n == 0 {
            std::fs::create_dir(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        }
        self.log(&Op::Aside {
            rel: rel.to_vec(),
            n,
            dev,
            ino,
        })?;
        let aside = dir.join(n.to_string());
        match std::fs::rename(&t, &aside) {
            Ok(()) => {}
            Err(e) if is_dir && matches!(e.raw_os_error(), Some(libc::EXDEV | libc::EACCES)) => {
                return Ok(false)
            }
            Err(e) => return Err(Error::io("move aside", &t, e)),
        }
        std::fs::rename(&s, &t).map_err(|e| Error::io("rename into place", &t, e))?;
        Ok(true)
    }

    /// Merges the staged directory `rel` into the target's.
    fn merge(&mut self, rel: Vec<u8>, plan: &Plan) -> Result<()> {
        // Directories whose merge is finished when the stack pops them.
        enum Step {
            Enter(Vec<u8>),
            Finish(Vec<u8>, std::fs::Metadata, (u32, u32)),
        }
        let mut todo = vec![Step::Enter(rel)];
        while let Some(step) = todo.pop() {
            let rel = match step {
                Step::Enter(rel) => rel,
                Step::Finish(rel, archive, (uid, gid)) => {
                    let t = join(self.target, &rel);
                    let (mode, mtime, nsec) =
                        (archive.mode(), archive.mtime(), archive.mtime_nsec());
                    journal::restore_meta(&t, mode, uid, gid, mtime, nsec)
                        .map_err(|e| Error::io("set the mode and time of", &t, e))?;
                    continue;
                }
            };
            self.done.merged += 1;
            let (s, t) = (join(self.staged, &rel), join(self.target, &rel));
            let archive = std::fs::symlink_metadata(&s).map_err(|e| Error::io("stat", &s, e))?;
            let old = std::fs::symlink_metadata(&t).map_err(|e| Error::io("stat", &t, e))?;
            self.log(&Op::Meta {
                rel: rel.clone(),
                mode: old.mode(),
                uid: old.uid(),
                gid: old.gid(),
                mtime: old.mtime(),
                mtime_nsec: old.mtime_nsec(),
            })?;
            // Renaming entries needs write access to both directories.
            for (dir, mode) in [(&s, archive.mode()), (&t, old.mode())] {
                if mode & 0o300 != 0o300 {
                    std::fs::set_permissions(
                        dir,
                        std::fs::Permissions::from_mode((mode | 0o300) & 0o7777),
                    )
                    .map_err(|e| Error::io("change mode of", dir, e))?;
                }
            }
            let owner = if self.root {
                (archive.uid(), archive.gid())
            } else {
                (old.uid(), old.gid())
            };
            todo.push(Step::Finish(rel.clone(), archive, owner));
            for (name, s_dir) in list(&s)? {
                let child = rel_join(&rel, &name);
                let at = join(self.target, &child);
                match std::fs::symlink_metadata(&at) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        let from = join(self.staged, &child);
                        let m = std::fs::symlink_metadata(&from)
                            .map_err(|e| Error::io("stat", &from, e))?;
                        self.log(&Op::Move {
                            rel: child.clone(),
                            dev: m.dev(),
                            ino: m.ino(),
                        })?;
                        self.done.swaps += 1;
                        rename_new(&from, &at)
                            .map_err(|e| Error::io("rename into place", &at, e))?;
                    }
                    Err(e) => return Err(Error::io("stat", &at, e)),
                    Ok(m) => {
                        let both_dirs = s_dir && m.is_dir();
                        // Marked, or a directory that could not be
                        // exchanged: merged.
                        if (both_dirs && plan.merge.contains(&child))
                            || !self.replace(&child, both_dirs)?
                        {
                            todo.push(Step::Enter(child));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A failed publish: the error, and whether what it did was undone (if
/// not, the staging directory must be kept for the next run to retry).
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: Error,
    pub(crate) undone: bool,
}

/// Publishes the staged tree `staging/tree` into the existing directory
/// `target` as planned, journaled in `staging`; on failure undoes what it
/// did (the target is then as before) and returns the error.
pub(crate) fn publish(
    target: &Path,
    staging: &Path,
    plan: &Plan,
) -> std::result::Result<Published, Failed> {
    let staged = staging.join(journal::TREE);
    let journal = Journal::create(staging, target).map_err(|e| Failed {
        error: Error::io("create the journal in", staging, e),
        undone: true,
    })?;
    let mut p = Publisher {
        target,
        staged: &staged,
        staging,
        journal,
        // SAFETY: no preconditions.
        root: unsafe { libc::geteuid() } == 0,
        aside: 0,
        done: Published::default(),
    };
    let result = (|| {
        if plan.merge.contains(&b""[..]) || !p.replace(b"", true)? {
            p.merge(Vec::new(), plan)?;
        }
        p.log(&Op::Commit)
    })();
    match result {
        Ok(()) => Ok(p.done),
        Err(error) => {
            drop(p);
            #[cfg(test)]
            if error.to_string().contains(crash::MESSAGE) {
                return Err(Failed {
                    error,
                    undone: false,
                });
            }
            let undone = match journal::settle(staging) {
                Ok(_) => true,
                Err(undo) => {
                    tracing::error!(
                        "could not undo a failed publish into {}: {undo}; the next restore or \
                         `cachew gc` retries",
                        target.display()
                    );
                    false
                }
            };
            Err(Failed { error, undone })
        }
    }
}

/// Tests: a simulated death of the process (no undo) or failure (undone)
/// right after the `n`th journal record is written, before its step is
/// taken.
#[cfg(test)]
pub(crate) mod crash {
    use std::cell::Cell;

    pub(crate) const MESSAGE: &str = "simulated crash";

    thread_local! {
        static AT: Cell<Option<(u64, bool)>> = const { Cell::new(None) };
    }

    /// Stops after record `n` (0 = the first) of the next publish on this
    /// thread, dying if `die`, else failing; `None`: never.
    pub(crate) fn at(n: Option<u64>, die: bool) {
        AT.with(|c| c.set(n.map(|n| (n, die))));
    }

    /// `Some(die)` when the publish is to stop now.
    pub(super) fn now() -> Option<bool> {
        AT.with(|c| match c.get() {
            Some((0, die)) => {
                c.set(None);
                Some(die)
            }
            Some((n, die)) => {
                c.set(Some((n - 1, die)));
                None
            }
            None => None,
        })
    }
}

#[cfg(test)]
mod tests;

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
//! archive has a file, as GNU tar refuses) before anything changes. A
//! symlink of the target met by a directory the archive only implies
//! (`a/f` without `a/`) is followed as GNU tar follows it: the staged
//! entries are moved, inside the staging tree, to where it leads.
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

/// A refusal of the in-place restore at `path` of the target, before
/// anything in it changed.
fn refuse(path: PathBuf, why: String) -> Error {
    Error::Io {
        op: "restore in place over",
        path,
        error: io::Error::other(why),
    }
}

fn under<'p>(p: &'p [u8], prefix: &[u8]) -> Option<&'p [u8]> {
    if prefix.is_empty() {
        return Some(p);
    }
    let rest = p.strip_prefix(prefix)?;
    match rest.first() {
        None => Some(rest),
        Some(b'/') => Some(&rest[1..]),
        Some(_) => None,
    }
}

/// Most symlinks followed to resolve one (as the kernel's `ELOOP`).
const SYMLINK_HOPS: usize = 40;

/// Where the symlink `link` (relative to the target) leads, resolved as
/// `cachew-archive`'s extraction policy resolves a symlink in a parent
/// position: component by component below the target, `lstat` at each
/// step. `Err`: why it cannot be followed (absolute, dangling, to a
/// non-directory, above the target, into the staging directory).
fn resolve_link(
    target: &Path,
    link: &[u8],
    skip: Option<&OsStr>,
) -> std::result::Result<Vec<u8>, String> {
    // The real directories reached so far, below the target.
    let mut stack: Vec<Vec<u8>> = link.split(|&c| c == b'/').map(<[u8]>::to_vec).collect();
    stack.pop();
    let mut left: Vec<Vec<u8>> = Vec::new();
    let mut at = Some(link.to_vec());
    let mut hops = 0;
    loop {
        if let Some(link) = at.take() {
            hops += 1;
            if hops > SYMLINK_HOPS {
                return Err("it is one of a loop of symlinks".into());
            }
            let t = std::fs::read_link(join(target, &link))
                .map_err(|e| format!("it cannot be read: {e}"))?;
            let t = t.as_os_str().as_bytes();
            if t.first() == Some(&b'/') {
                return Err("it leads to an absolute path, outside the target directory".into());
            }
            left.extend(t.split(|&c| c == b'/').rev().map(<[u8]>::to_vec));
        }
        let Some(c) = left.pop() else { break };
        match &c[..] {
            b"" | b"." => continue,
            b".." => {
                if stack.pop().is_none() {
                    return Err("it leads to a path above the target directory".into());
                }
                continue;
            }
            _ => stack.push(c),
        }
        let rel = stack.join(&b'/');
        match std::fs::symlink_metadata(join(target, &rel)) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                stack.pop();
                at = Some(rel);
            }
            Ok(_) => {
                return Err(format!(
                    "it leads to `{}`, which is not a directory",
                    cachew_archive::escape_name(&rel)
                ))
            }
            Err(e) => {
                return Err(format!(
                    "it leads to `{}`: {e}",
                    cachew_archive::escape_name(&rel)
                ))
            }
        }
    }
    if let (Some(skip), Some(first)) = (skip, stack.first()) {
        if first[..] == *skip.as_bytes() {
            return Err("it leads into the staging directory".into());
        }
    }
    Ok(stack.join(&b'/'))
}

/// Moves the staged directory `from`'s entries to `to` in the staged tree
/// (where the target's symlink at `from` leads), so that the staged tree
/// has the target's layout. Creates the missing directories of `to` with
/// the target's metadata; fails, naming both, where an entry of the
/// archive is already at a name that one moved would take. Records each
/// move in `moved` (new staged path, its name in the archive: `origin`
/// is `from`'s).
fn follow(
    target: &Path,
    staged: &Path,
    from: &[u8],
    to: &[u8],
    origin: &[u8],
    moved: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<()> {
    let clash = |rel: &[u8], landing: &[u8]| {
        refuse(
            join(target, landing),
            format!(
                "two entries of the archive, `{}` (through the symlink `{}`) and `{}`, land \
                 on it; the in-place restore does not choose between them: nothing was changed",
                cachew_archive::escape_name(rel),
                cachew_archive::escape_name(from),
                cachew_archive::escape_name(landing)
            ),
        )
    };
    // The staged directories on the way, created with the target's metadata.
    let mut rel = Vec::new();
    let comps: Vec<&[u8]> = if to.is_empty() {
        Vec::new()
    } else {
        to.split(|&c| c == b'/').collect()
    };
    for (i, c) in comps.iter().enumerate() {
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(c);
        let s = join(staged, &rel);
        match std::fs::symlink_metadata(&s) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => return Err(clash(origin, &rel)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("stat", &s, e)),
        }
        let t = join(target, &rel);
        let m = std::fs::symlink_metadata(&t).map_err(|e| Error::io("stat", &t, e))?;
        let src = join(staged, from);
        if i + 1 == comps.len() {
            std::fs::rename(&src, &s).map_err(|e| Error::io("rename", &src, e))?;
            moved.push((to.to_vec(), origin.to_vec()));
        } else {
            std::fs::create_dir(&s).map_err(|e| Error::io("create directory", &s, e))?;
        }
        journal::restore_meta(&s, m.mode(), m.uid(), m.gid(), m.mtime(), m.mtime_nsec())
            .map_err(|e| Error::io("set the mode and time of", &s, e))?;
        if i + 1 == comps.len() {
            return Ok(());
        }
    }
    // The staged directory at `to` exists: the entries go in one by one.
    let src = join(staged, from);
    for (name, _) in list(&src)? {
        let (old, new) = (rel_join(from, &name), rel_join(to, &name));
        let dst = join(staged, &new);
        if std::fs::symlink_metadata(&dst).is_ok() {
            return Err(clash(&rel_join(origin, &name), &new));
        }
        let from_path = join(staged, &old);
        rename_new(&from_path, &dst).map_err(|e| Error::io("rename", &from_path, e))?;
        moved.push((new, rel_join(origin, &name)));
    }
    std::fs::remove_dir(&src).map_err(|e| Error::io("remove directory", &src, e))
}

/// Reads both trees and decides what to exchange whole and what to merge
/// (see the module docs). `skip` is a name at the top of the target that
/// is left alone (the staging directory, when it is inside the target);
/// `whole` is false when the target itself cannot be exchanged (a mount
/// point); `implied` is the extraction's
/// [`cachew_archive::ExtractSummary::implied_dirs`]. Fails, before
/// anything in the target changes, on a conflict.
///
/// A symlink of the target where the archive has a directory is treated
/// as GNU tar treats it: replaced when the archive has an entry of its own
/// for the directory (`a/`); otherwise (only `a/f`) resolved as
/// `cachew-archive` resolves it, and the staged directory's entries are
/// moved, in the staged tree, to where it leads, so that the staged tree
/// has the target's layout and is published like any other. This costs
/// nothing where the target has no symlink where the archive has a
/// directory (the `read_link` is only tried on non-directories).
pub(crate) fn plan(
    target: &Path,
    staged: &Path,
    skip: Option<&OsStr>,
    whole: bool,
    implied: Option<&HashMap<PathBuf, bool>>,
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
    // Staged entries moved to follow a symlink: (new path, old path).
    let mut moved: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
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
                    let Ok(dest) = std::fs::read_link(&path) else {
                        continue;
                    };
                    // Its name in the archive (it may have been moved here
                    // by an earlier symlink): the last move that put it or
                    // a parent here says, as `moved` holds archive names
                    // and no move lands below a later one's source (those
                    // are symlinks of the target, destinations real
                    // directories).
                    let mut origin = child.clone();
                    for (new, old) in moved.iter().rev() {
                        if let Some(rest) = under(&origin, new) {
                            let mut o = old.clone();
                            if !rest.is_empty() {
                                o.push(b'/');
                                o.extend_from_slice(rest);
                            }
                            origin = o;
                            break;
                        }
                    }
                    let dest = cachew_archive::escape_path(&dest);
                    let entry = cachew_archive::escape_name(&origin);
                    let later = match implied {
                        None => {
                            return Err(refuse(
                                path,
                                format!(
                                    "it is a symlink (to `{dest}`) where the archive has the \
                                     directory `{entry}`, and the archive created more than {} \
                                     directories without entries of their own, so whether \
                                     `{entry}/` has one is not known: nothing was changed \
                                     (remove the symlink, or restore into a new directory)",
                                    cachew_archive::IMPLIED_DIRS_MAX
                                ),
                            ))
                        }
                        Some(map) => map.get(Path::new(OsStr::from_bytes(&origin))),
                    };
                    match later {
                        // `a/` in the archive: replaced, as GNU tar does.
                        None => {}
                        Some(true) => {
                            return Err(refuse(
                                path,
                                format!(
                                    "it is a symlink (to `{dest}`), and the archive has entries \
                                     below `{entry}` before its directory entry `{entry}/`; GNU \
                                     tar writes the first through the symlink and then replaces \
                                     it, which an in-place restore cannot reproduce: nothing \
                                     was changed (remove the symlink, or restore into a new \
                                     directory)"
                                ),
                            ))
                        }
                        Some(false) => {
                            let to = resolve_link(target, &child, skip).map_err(|why| {
                                refuse(
                                    path.clone(),
                                    format!(
                                        "the archive's entries below `{entry}` would be written \
                                         through this symlink (to `{dest}`), and {why}: nothing \
                                         was changed"
                                    ),
                                )
                            })?;
                            follow(target, staged, &child, &to, &origin, &mut moved)?;
                            // The symlink stays (its parent is merged), and
                            // where it leads is merged and walked again.
                            plan.mark(&rel);
                            plan.mark(&to);
                            todo.push(to);
                        }
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

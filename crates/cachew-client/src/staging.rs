//! Staging directories for all-or-nothing restores: where a restore is
//! built, how it is published, and how what a killed run left is found and
//! removed or rolled back (`docs/ARCHITECTURE.md`, "Restores: staging,
//! swap, recovery").
//!
//! A staging directory sits beside the target (inside it, for a target
//! that is a mount point), on the same file system, and its name marks it
//! as ours and names its owner: `.NAME.cachew-PID-START-RAND.staging`,
//! where `START` is the owner's start time (clock ticks since boot,
//! `/proc/PID/stat`), so a reused pid is not mistaken for the owner. The
//! archive is extracted into its `tree`; a new target is that tree renamed
//! into place, an existing one gets it swapped in (`publish.rs`, journaled
//! in `journal.rs`). Recovery settles a dead owner's journal (rolls the
//! publish back, or finds it finished) and removes the directory. A `.old`
//! directory (`.NAME.cachew-….old`) is what an earlier version left
//! mid-swap: a run that finds the target missing renames it back.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::journal::TREE;
use crate::{Error, Result};

/// What marks a staging directory's name as ours.
const MARK: &str = ".cachew-";
const STAGING: &str = ".staging";
const OLD: &str = ".old";

/// A staging directory beside the target; removed on drop unless committed,
/// together with the target's parent directories that it created.
///
/// If the restore is cancelled (its future dropped) while a blocking
/// thread still writes into the directory (cloning or extracting), removing
/// it at once would race that thread; the removal is then left to the
/// thread when it stops.
#[derive(Debug)]
pub(crate) struct Staging {
    pub(crate) path: PathBuf,
    committed: bool,
    pub(crate) worker: Arc<Worker>,
}

/// Who removes an abandoned staging directory, shared with the thread
/// that writes into it.
#[derive(Debug, Default)]
pub(crate) struct Worker {
    state: Mutex<WorkerState>,
    /// The staging directory.
    path: PathBuf,
    /// Parents of the target created for this restore, top first.
    created_parents: Vec<PathBuf>,
    /// For a staging directory inside the target: the target and its
    /// modification time before, put back when the staging is removed.
    inside: Option<(PathBuf, std::time::SystemTime)>,
    /// Set when the restore is dropped: a clone in progress stops early.
    stop: AtomicBool,
}

#[derive(Debug, Default)]
struct WorkerState {
    running: bool,
    abandoned: bool,
}

impl Worker {
    /// A blocking thread starts writing into the staging directory.
    pub(crate) fn start(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).running = true;
    }

    /// The thread stopped writing into the staging directory; removes it
    /// if the restore was abandoned meanwhile.
    pub(crate) fn done(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.running = false;
        if state.abandoned {
            drop(state);
            self.remove();
        }
    }

    /// Removes an unpublished staging directory and what was created for it.
    fn remove(&self) {
        remove_tree(&self.path);
        remove_parents(&self.created_parents);
        if let Some((target, mtime)) = &self.inside {
            set_mtime(target, *mtime);
        }
    }
}

/// Sets a directory's modification time, if it can.
fn set_mtime(dir: &Path, mtime: std::time::SystemTime) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.set_times(std::fs::FileTimes::new().set_modified(mtime));
    }
}

/// Removes a staging directory inside `target` without changing the
/// target's modification time (`None`: the staging is beside it).
fn remove_inside(staging: &Path, target: Option<&Path>) {
    let mtime = target.and_then(|t| std::fs::metadata(t).and_then(|m| m.modified()).ok());
    unlink_files_in_parallel(staging);
    remove_tree(staging);
    if let (Some(t), Some(m)) = (target, mtime) {
        set_mtime(t, m);
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// This process's start time in clock ticks since boot (0 if unknown).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields count
    // from the last `)`. starttime is field 22, the 20th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `start` still runs.
fn owner_alive(pid: u32, start: u64) -> bool {
    if pid == std::process::id() {
        // Ourselves only if it is our start time (a reused pid in a new
        // container otherwise).
        return start_time(pid).is_none_or(|s| s == start);
    }
    match start_time(pid) {
        Some(s) => s == start,
        None => {
            // No /proc: ask the kernel whether the pid exists.
            // SAFETY: signal 0 only checks for existence and permission.
            let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
            r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}

/// A staging directory name parsed: the target name it belongs to, its
/// owner, and whether it is an `.old` (a target moved aside mid-swap).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stale {
    pub(crate) target_name: OsString,
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) old: bool,
}

pub(crate) fn parse_name(name: &OsStr) -> Option<Stale> {
    let b = name.as_bytes();
    let b = b.strip_prefix(b".")?;
    let (b, old) = if let Some(s) = b.strip_suffix(STAGING.as_bytes()) {
        (s, false)
    } else {
        (b.strip_suffix(OLD.as_bytes())?, true)
    };
    let at = b.windows(MARK.len()).rposition(|w| w == MARK.as_bytes())?;
    let (target, tail) = (&b[..at], &b[at + MARK.len()..]);
    let mut parts = std::str::from_utf8(tail).ok()?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let rand = parts.next()?;
    if parts.next().is_some() || rand.len() != 8 || target.is_empty() {
        return None;
    }
    Some(Stale {
        target_name: OsString::from_vec(target.to_vec()),
        pid,
        start,
        old,
    })
}

/// The name of a staging (or `.old`) directory for `target_name`, owned
/// by this process. Long target names are shortened to fit `NAME_MAX`.
fn our_name(target_name: &OsStr, suffix: &str, n: u64) -> OsString {
    let pid = std::process::id();
    let tail = format!(
        "{MARK}{pid}-{}-{:08x}{suffix}",
        start_time(pid).unwrap_or(0),
        n as u32
    );
    let mut name = target_name.as_bytes().to_vec();
    name.truncate(255 - 1 - tail.len());
    let mut out = b".".to_vec();
    out.extend_from_slice(&name);
    out.extend_from_slice(tail.as_bytes());
    OsString::from_vec(out)
}

fn parent_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a new staging directory for `name` in `dir` (mode 0700, under a
/// name no other run picks): `Ok(None)` when 100 tries all met an existing
/// name.
fn make_dir(dir: &Path, name: &OsStr) -> Result<Option<PathBuf>> {
    let seed = u64::from(std::process::id()) ^ nanos();
    for attempt in 0..100u64 {
        let n = seed
            .wrapping_add(SEQ.fetch_add(1, Ordering::Relaxed))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(attempt);
        let path = dir.join(our_name(name, STAGING, n >> 17));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(Some(path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create staging directory", &path, e)),
        }
    }
    Ok(None)
}

impl Staging {
    /// Creates an empty staging directory beside `target`, creating the
    /// target's missing parents (removed again if the restore fails).
    pub(crate) fn create(target: &Path) -> Result<Staging> {
        let name = target.file_name().ok_or_else(|| {
            Error::InvalidInput(format!(
                "cannot restore into {}: it has no final name",
                target.display()
            ))
        })?;
        let parent = parent_of(target);
        let mut created_parents = Vec::new();
        let mut missing = Vec::new();
        for p in parent.ancestors() {
            if p.as_os_str().is_empty() || p.exists() {
                break;
            }
            missing.push(p.to_path_buf());
        }
        for p in missing.into_iter().rev() {
            match std::fs::create_dir(&p) {
                Ok(()) => created_parents.push(p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    remove_parents(&created_parents);
                    return Err(Error::io("create directory", &p, e));
                }
            }
        }
        let made = make_dir(&parent, name).and_then(|made| {
            made.ok_or_else(|| {
                Error::InvalidInput(format!(
                    "cannot create a staging directory beside {}",
                    target.display()
                ))
            })
        });
        match made {
            Ok(path) => Ok(Staging::new(
                path.clone(),
                Worker {
                    path,
                    created_parents,
                    ..Worker::default()
                },
            )),
            Err(e) => {
                remove_parents(&created_parents);
                Err(e)
            }
        }
    }

    /// Creates an empty staging directory inside `target`, for a target
    /// that cannot itself be renamed (a mount point).
    pub(crate) fn create_inside(target: &Path) -> Result<Staging> {
        let name = target.file_name().unwrap_or(OsStr::new("root"));
        let mtime = std::fs::metadata(target)
            .and_then(|m| m.modified())
            .map_err(|e| Error::io("stat", target, e))?;
        let path = make_dir(target, name)?.ok_or_else(|| {
            Error::InvalidInput(format!(
                "cannot create a staging directory in {}",
                target.display()
            ))
        })?;
        Ok(Staging::new(
            path.clone(),
            Worker {
                path,
                inside: Some((target.to_path_buf(), mtime)),
                ..Worker::default()
            },
        ))
    }

    fn new(path: PathBuf, worker: Worker) -> Staging {
        Staging {
            path,
            committed: false,
            worker: Arc::new(worker),
        }
    }

    /// Where the archive is extracted: `tree` in the staging directory
    /// (beside the publish journal).
    pub(crate) fn tree(&self) -> PathBuf {
        self.path.join(TREE)
    }

    /// Publishes the staged tree as `target`. A new target: one rename.
    /// An existing one: planned, then swapped in entry by entry where
    /// needed (`publish.rs`); the old entries, left in the staging
    /// directory, are removed with it — or, with `defer` and a staging
    /// directory beside the target (not inside a mount point), left there
    /// with the committed journal and its path returned, for the caller to
    /// remove ([`remove_staging`]). The publish runs on a blocking
    /// thread that finishes (or rolls back) and cleans up even if the
    /// restore is dropped meanwhile.
    /// `implied`: the extraction's `implied_dirs`, for symlinks of the
    /// target in a parent position (`publish::plan`).
    pub(crate) async fn commit(
        mut self,
        target: &Path,
        existing: bool,
        implied: Option<std::collections::HashMap<PathBuf, bool>>,
        defer: bool,
    ) -> Result<Option<PathBuf>> {
        if !existing {
            let tree = self.tree();
            std::fs::rename(&tree, target)
                .map_err(|e| Error::io("rename into place", target, e))?;
            self.committed = true;
            let _ = std::fs::remove_dir_all(&self.path);
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let plan = {
            let (t, tree) = (target.to_path_buf(), self.tree());
            let skip = self
                .path
                .strip_prefix(target)
                .ok()
                .map(|p| p.as_os_str().to_owned());
            tokio::task::spawn_blocking(move || {
                let whole = skip.is_none();
                crate::publish::plan(&t, &tree, skip.as_deref(), whole, implied.as_ref())
            })
            .await
            .map_err(|e| Error::Backend(format!("staging task failed: {e}")))??
        };
        // From here on the blocking thread owns the staging directory.
        self.committed = true;
        let (t, staging, worker) = (target.to_path_buf(), self.path.clone(), self.worker.clone());
        let planned = started.elapsed();
        tokio::task::spawn_blocking(move || {
            let result = crate::publish::publish(&t, &staging, &plan);
            match result {
                Ok(done) => {
                    let published = started.elapsed();
                    // Inside a mount point the staging is in the target
                    // itself: it never outlives the restore.
                    let left = (defer && worker.inside.is_none()).then(|| staging.clone());
                    if left.is_none() {
                        // The old entries go; the target keeps the time the
                        // publish gave it.
                        remove_inside(&staging, worker.inside.as_ref().map(|(t, _)| t.as_path()));
                    }
                    tracing::debug!(
                        "published into {}: planned in {planned:?}; {} directories merged, {} \
                         renames, done at {published:?}; old entries {} at {:?}",
                        t.display(),
                        done.merged,
                        done.swaps,
                        if left.is_some() {
                            "left for the caller to remove"
                        } else {
                            "removed"
                        },
                        started.elapsed()
                    );
                    Ok(left)
                }
                Err(failed) => {
                    if failed.undone {
                        worker.remove();
                    }
                    Err(failed.error)
                }
            }
        })
        .await
        .map_err(|e| Error::Backend(format!("staging task failed: {e}")))?
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        self.worker.stop.store(true, Ordering::SeqCst);
        let mut state = self.worker.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.running {
            state.abandoned = true;
            return;
        }
        drop(state);
        self.worker.remove();
    }
}

/// Removes created parent directories, deepest first, if they are empty.
fn remove_parents(created: &[PathBuf]) {
    for p in created.iter().rev() {
        let _ = std::fs::remove_dir(p);
    }
}

/// What [`gc`] (or the recovery before a restore) did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cleanup {
    /// Stale staging directories (and finished `.old` trees) removed.
    pub removed: Vec<PathBuf>,
    /// Targets put back from a swap that was interrupted halfway.
    pub rolled_back: Vec<PathBuf>,
}

/// Before restoring into `target`: removes the staging directories beside
/// it whose owner process is gone, and if `target` is missing while a dead
/// owner's `.old` directory holds it (a swap interrupted between its two
/// renames), renames that back.
pub(crate) fn recover(target: &Path) -> Cleanup {
    let mut out = Cleanup::default();
    let Some(name) = target.file_name() else {
        return out;
    };
    scan_dir(&parent_of(target), Some(name), &mut out);
    // A target that is a mount point has its staging inside.
    if target.is_dir() {
        scan_dir(target, Some(name), &mut out);
    }
    out
}

fn scan_dir(dir: &Path, only: Option<&OsStr>, out: &mut Cleanup) -> Vec<PathBuf> {
    let mut subdirs = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return subdirs;
    };
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(stale) = parse_name(&name) else {
            if ent.file_type().is_ok_and(|t| t.is_dir()) {
                subdirs.push(ent.path());
            }
            continue;
        };
        if only.is_some_and(|o| o != stale.target_name) || owner_alive(stale.pid, stale.start) {
            continue;
        }
        let path = ent.path();
        let target = dir.join(&stale.target_name);
        if stale.old && std::fs::symlink_metadata(&target).is_err() {
            // Left by an earlier version's two-rename swap.
            if std::fs::rename(&path, &target).is_ok() {
                tracing::warn!("rolled back an interrupted restore of {}", target.display());
                out.rolled_back.push(target);
            }
            continue;
        }
        // A publish that was killed halfway: undone first (or, if it had
        // finished, what is left is the old tree).
        match crate::journal::settle(&path) {
            Ok(crate::journal::Settled::RolledBack(t)) => {
                tracing::warn!("rolled back an interrupted restore of {}", t.display());
                out.rolled_back.push(t);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(
                    "could not roll back the interrupted restore in {}: {e}; left as it is",
                    path.display()
                );
                continue;
            }
        }
        // Inside a target (a mount point): its time is kept.
        let inside = (Some(dir.file_name().unwrap_or_default())
            == Some(stale.target_name.as_os_str()))
        .then_some(dir);
        remove_inside(&path, inside);
        tracing::info!("removed stale staging directory {}", path.display());
        out.removed.push(path);
    }
    subdirs
}

/// Removes the staging directory that a committed in-place restore left
/// with [`RestoreOptions::deferred_cleanup`](crate::RestoreOptions::deferred_cleanup):
/// the old entries it displaced. Refuses (an [`Error::InvalidInput`], and
/// nothing is touched) anything else: a path whose name is not a staging
/// directory's (`.NAME.cachew-PID-START-RAND.staging`), that is not a
/// directory (a symlink is not followed), whose journal does not end the
/// publish with its commit record (it may have to be rolled back), whose
/// committed journal names a target it is not beside, or that has no
/// journal while its owner runs (an extraction under way). Without a
/// journal and with its owner gone it is removed as [`gc`] would (a
/// recovery removing it unlinks the journal first). A directory already
/// gone (removed meanwhile by the recovery of another restore, or by
/// [`gc`]) is success; so is one that vanishes while it is being removed.
pub fn remove_staging(path: &Path) -> Result<()> {
    let refuse = |why: String| {
        Error::InvalidInput(format!(
            "refusing to remove {}: {why}",
            cachew_archive::escape_path(path)
        ))
    };
    let name = path
        .file_name()
        .ok_or_else(|| refuse("it has no final name".into()))?;
    let stale = match parse_name(name) {
        Some(s) if !s.old => s,
        _ => {
            return Err(refuse(
                "its name is not that of a cachew staging directory \
                 (.NAME.cachew-PID-START-RAND.staging)"
                    .into(),
            ))
        }
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(refuse("it is not a directory".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("stat", path, e)),
    }
    match crate::journal::read(path) {
        Ok(Some((target, ops))) if ops.contains(&crate::journal::Op::Commit) => {
            let parent = std::fs::canonicalize(parent_of(path))
                .map_err(|e| Error::io("resolve", parent_of(path), e))?;
            let beside = target.parent() == Some(parent.as_path())
                && target
                    .file_name()
                    .is_some_and(|n| n.as_bytes().starts_with(stale.target_name.as_bytes()));
            if !beside {
                return Err(refuse(format!(
                    "it is not beside {}, the target its journal names",
                    cachew_archive::escape_path(&target)
                )));
            }
        }
        Ok(Some(_)) => {
            return Err(refuse(
                "its publish journal is not committed (the publish may have to be rolled \
                 back: `cachew gc` does that)"
                    .into(),
            ))
        }
        // No journal: gone meanwhile, or being removed by the recovery of
        // another restore (which unlinks the journal first), or what a
        // killed extraction left — what `gc` removes too, once its owner
        // is gone.
        Ok(None) if std::fs::symlink_metadata(path).is_err() => return Ok(()),
        Ok(None) if !owner_alive(stale.pid, stale.start) => {}
        Ok(None) => {
            return Err(refuse(format!(
                "it has no committed publish journal and its owner (pid {}) still runs",
                stale.pid
            )))
        }
        Err(e) => return Err(Error::io("read the journal in", path, e)),
    }
    remove_inside(path, None);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        _ => Err(Error::io(
            "remove",
            path,
            io::Error::other("some of its entries could not be removed"),
        )),
    }
}

/// Removes stale staging directories (of restores whose process is gone,
/// e.g. killed with SIGKILL) in `dir` and its subdirectories down to
/// `max_depth` levels, rolling back interrupted swaps; never follows
/// symlinks and never enters a staging directory.
pub fn gc(dir: &Path, max_depth: usize) -> Cleanup {
    let mut out = Cleanup::default();
    let mut todo = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = todo.pop() {
        let subdirs = scan_dir(&d, None, &mut out);
        if depth < max_depth {
            todo.extend(subdirs.into_iter().map(|s| (s, depth + 1)));
        }
    }
    out
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Unlinks every non-directory below `root` on two threads sharing a
/// queue of directories (the removal of a displaced old tree is most of
/// what an in-place restore costs beyond a fresh one; the kernel work of
/// unlinking spreads over cores). Never follows symlinks and never enters
/// another file system; what it leaves (directories, anything it could
/// not unlink) is for [`remove_tree`].
fn unlink_files_in_parallel(root: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(dev) = std::fs::symlink_metadata(root).map(|m| m.dev()) else {
        return;
    };
    let queue = Mutex::new((vec![root.to_path_buf()], 0usize));
    let ready = std::sync::Condvar::new();
    let work = || loop {
        let dir = {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(d) = q.0.pop() {
                    q.1 += 1;
                    break d;
                }
                if q.1 == 0 {
                    ready.notify_all();
                    return;
                }
                q = ready.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut subdirs = Vec::new();
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.dev() == dev) {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for ent in rd.flatten() {
                    match ent.file_type() {
                        Ok(t) if t.is_dir() => subdirs.push(ent.path()),
                        Ok(_) => {
                            let _ = std::fs::remove_file(ent.path());
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        q.0.extend(subdirs);
        q.1 -= 1;
        ready.notify_all();
    };
    std::thread::scope(|s| {
        s.spawn(work);
        work();
    });
}

/// Removes a staged tree, first making read-only directories writable so
/// their entries can be removed (a saved tree may hold 0555 directories).
pub(crate) fn remove_tree(path: &Path) {
    fn make_writable(root: &Path) {
        let mut todo = vec![root.to_path_buf()];
        while let Some(dir) = todo.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&dir) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            let mode = meta.permissions().mode();
            if mode & 0o700 != 0o700 {
                let _ =
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o700));
            }
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for ent in rd.flatten() {
                    if ent.file_type().is_ok_and(|t| t.is_dir()) {
                        todo.push(ent.path());
                    }
                }
            }
        }
    }
    if std::fs::remove_dir_all(path).is_ok() {
        return;
    }
    // When a restore is cancelled, the extractor may still be finishing a
    // file for a moment: retry briefly before giving up.
    for attempt in 0..5 {
        make_writable(path);
        match std::fs::remove_dir_all(path) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if attempt == 4 => {
                tracing::warn!("could not remove staging directory {}: {e}", path.display());
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_mark_ours_and_name_the_owner() {
        let n = our_name(OsStr::new("node_modules"), STAGING, 0x1234_5678);
        let s = parse_name(&n).unwrap();
        assert_eq!(s.target_name, "node_modules");
        assert_eq!(s.pid, std::process::id());
        assert!(!s.old);
        assert!(owner_alive(s.pid, s.start));
        let long = OsString::from("x".repeat(300));
        let n = our_name(&long, OLD, 1);
        assert!(n.len() <= 255);
        assert!(parse_name(&n).unwrap().old);
        for other in [
            ".git",
            ".x.cachew-1-2-3.staging",
            "x.cachew-1-2-12345678.staging",
        ] {
            assert_eq!(parse_name(OsStr::new(other)), None, "{other}");
        }
        // A reused pid with another start time is not the owner.
        assert!(!owner_alive(std::process::id(), s.start + 1));
    }
}

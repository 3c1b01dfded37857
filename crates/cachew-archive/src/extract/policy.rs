//! The extraction policy: what may be written where. Entry names are
//! checked lexically ([`sanitize`]: no absolute names, no `..`); every
//! parent directory is made a real directory inside the target (a file in
//! the way is replaced; a symlink is followed, as GNU tar follows it, only
//! when resolving it below the target leads to a directory inside, and
//! otherwise refuses the entry); files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` after removing what was there
//! ([`create_file`]); symlinks and hard links are created at flush points,
//! hard link sources resolved component by component without following
//! symlinks; directory modes and times are applied last, through
//! descriptors opened the same way, and pre-existing read-only directories
//! get their modes back. Entries take effect in archive order whatever
//! their kinds ([`Order`]), and what is remembered along the way is
//! bounded (see the constants below and the crate docs).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::entries::Meta;
use crate::sys;
use crate::{Error, ExtractSummary, Result, IMPLIED_DIRS_MAX};

/// Most components an entry name may have. Nothing recurses per
/// component, but each level of a directory costs a descriptor when modes
/// are applied at the end, and real trees are far shallower.
pub(crate) const MAX_DEPTH: usize = 512;
/// The cache of directories known to be real is emptied when it holds
/// this many entries or [`DIRS_CACHE_BYTES`] of names (a cache miss costs
/// one `lstat`).
const DIRS_CACHE_MAX: usize = 64 * 1024;
const DIRS_CACHE_BYTES: usize = 16 << 20;
/// Budget for what is kept until the end of the archive: each distinct
/// directory entry's metadata and each pre-existing read-only directory,
/// counted as name length plus [`KEPT_OVERHEAD`].
pub(crate) const KEPT_MAX: usize = 128 << 20;
const KEPT_OVERHEAD: usize = 80;
/// Regular files handed to workers since the last barrier that are
/// remembered (to order a later entry below one of them) before a barrier.
const IN_FLIGHT_MAX: usize = 64 * 1024;
const IN_FLIGHT_BYTES: usize = 16 << 20;
/// Pending links are flushed at this many bytes of names and targets.
pub(super) const LINK_BYTES: usize = 16 << 20;
/// Directories created only as parents ([`ExtractSummary::implied_dirs`])
/// are remembered up to [`IMPLIED_DIRS_MAX`], and this many bytes of
/// names; past either, the summary says they are unknown.
const IMPLIED_DIRS_BYTES: usize = 1 << 20;

/// What must happen before an entry is applied so that it takes effect
/// after every earlier entry (GNU tar's order: the last one wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    /// Nothing: no earlier entry is still pending at this name.
    Now,
    /// Wait for the workers: a file they may still be writing is at this
    /// name or one of its parents.
    Barrier,
    /// Wait for the workers and create the pending links: one of them is
    /// at this name or a parent, or is a hard link to this name.
    Flush,
}

/// What must be done after a file is written, worked out by the parser so
/// that workers make no more system calls than needed.
#[derive(Clone, Copy)]
pub(super) struct Fixups {
    pub(super) chown: bool,
    pub(super) chmod: bool,
}

/// A directory known to be a real directory inside the target, with what
/// new files in it inherit.
#[derive(Clone, Copy)]
pub(super) struct DirInfo {
    setgid: bool,
    gid: u32,
}

impl DirInfo {
    fn of(m: &fs::Metadata) -> Self {
        DirInfo {
            setgid: m.mode() & 0o2000 != 0,
            gid: m.gid(),
        }
    }
}

/// The process umask, read without changing it (calling `umask` would race
/// with other threads), or `None` if unknown: then every file gets an
/// `fchmod`, which is always right, only one call slower. Linux says it in
/// `/proc/self/status` (since 4.7); macOS and the BSDs have no way to read
/// it without setting it, so they take the `None` path.
fn current_umask() -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("Umask:"))?;
        u32::from_str_radix(line.split_whitespace().nth(1)?, 8).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Turns an entry name into a relative path inside the target, or refuses it.
pub(crate) fn sanitize(name: &[u8]) -> Result<PathBuf> {
    if name.first() == Some(&b'/') {
        return Err(Error::unsafe_entry(name, "is an absolute path"));
    }
    let mut out: Vec<u8> = Vec::with_capacity(name.len());
    let mut depth = 0usize;
    for comp in name.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(Error::unsafe_entry(name, "escapes the target directory")),
            c => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let shown = crate::escape_name(&name[..name.len().min(64)]);
                    return Err(Error::limit(format!(
                        "entry `{shown}…` has more than {MAX_DEPTH} name components"
                    )));
                }
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out),
    ))
}

/// Refuses an entry that would replace the target directory itself.
pub(super) fn not_root(rel: &Path, name: &[u8]) -> Result<()> {
    if rel.as_os_str().is_empty() {
        return Err(Error::unsafe_entry(
            name,
            "would replace the target directory",
        ));
    }
    Ok(())
}

/// Creates the regular file `path` (never through an existing symlink or
/// hard link: whatever is there is removed first) with the permission
/// bits of `mode`.
pub(super) fn create_file(path: &Path, mode: u32) -> Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            remove_non_dir(path)?;
            open().map_err(|e| Error::io("create file", path, e))
        }
        Err(e) => Err(Error::io("create file", path, e)),
    }
}

/// Removes a file, symlink or empty directory in the way of a
/// non-directory entry (as GNU tar does); a non-empty directory is a
/// conflict.
pub(super) fn remove_non_dir(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // `unlink` of a directory is `EISDIR` on Linux, `EPERM` on macOS
        // and the BSDs: ask what is there rather than trust the errno.
        Err(e) if is_dir_error(path, &e) => match fs::remove_dir(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(_) => Err(Error::Conflict {
                path: path.to_path_buf(),
                reason: "a non-empty directory is in the way of a non-directory entry",
            }),
        },
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

fn is_dir_error(path: &Path, e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EISDIR)
        || (e.raw_os_error() == Some(libc::EPERM)
            && fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()))
}

/// Most symlinks followed while resolving one parent path (Linux's limit).
const SYMLINK_HOPS: usize = 40;

/// Whether the last component of a path made a directory is followed
/// when it is a symlink (a parent of an entry) or replaced (a directory
/// entry's own name, as GNU tar does without `--keep-directory-symlink`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Last {
    Follow,
    Replace,
}

/// A directory made sure of: what new entries in it inherit, and where it
/// is (relative to the target) when a symlink in a parent position was
/// followed to reach it.
pub(super) struct Resolved {
    info: DirInfo,
    physical: Option<PathBuf>,
}

/// What one component turned out to be.
enum Step {
    Dir(DirInfo),
    /// A symlink to follow, with its target.
    Symlink(Vec<u8>),
}

struct DeferredLink {
    rel: PathBuf,
    name: Vec<u8>,
    target: Vec<u8>,
    /// For hard links, the sanitized source inside the target.
    hard_source: Option<PathBuf>,
    meta: Meta,
}

/// What has been made of the target so far, and what is left to do.
pub(super) struct Extractor<'a> {
    target: &'a Path,
    root: bool,
    /// Directories (relative) known to be real directories inside the
    /// target: a cache, emptied when full.
    dirs: HashMap<PathBuf, DirInfo>,
    dirs_bytes: usize,
    euid: u32,
    egid: u32,
    umask: Option<u32>,
    /// Pre-existing directories made owner-writable, with their original modes.
    loosened: Vec<(PathBuf, u32)>,
    /// Each directory entry's metadata, the last one for a repeated name.
    dir_meta: HashMap<PathBuf, Meta>,
    /// Bytes counted against [`KEPT_MAX`].
    kept_bytes: usize,
    links: Vec<DeferredLink>,
    /// Names the pending links create, and hard link sources they read.
    link_names: HashSet<PathBuf>,
    link_bytes: usize,
    /// Regular files handed to workers since the last barrier.
    in_flight: HashSet<PathBuf>,
    in_flight_bytes: usize,
    /// A symlink in a parent position has been followed: two names may
    /// now reach the same file, so from here on every entry waits for
    /// the ones before it ([`Extractor::order`]).
    aliased: bool,
    /// Bytes of names in `summary.implied_dirs`.
    implied_bytes: usize,
    pub(super) summary: ExtractSummary,
}

impl<'a> Extractor<'a> {
    pub(super) fn new(target: &'a Path) -> Self {
        let (euid, egid) = sys::effective_ids();
        Extractor {
            target,
            root: sys::is_root(),
            dirs: HashMap::new(),
            dirs_bytes: 0,
            euid,
            egid,
            umask: current_umask(),
            loosened: Vec::new(),
            dir_meta: HashMap::new(),
            kept_bytes: 0,
            links: Vec::new(),
            link_names: HashSet::new(),
            link_bytes: 0,
            in_flight: HashSet::new(),
            in_flight_bytes: 0,
            aliased: false,
            implied_bytes: 0,
            summary: ExtractSummary {
                implied_dirs: Some(HashMap::new()),
                ..ExtractSummary::default()
            },
        }
    }
}

impl Extractor<'_> {
    /// Where the regular file `rel` is to be created, with what it needs
    /// after writing: its parent is made a real directory first.
    pub(super) fn file(&mut self, rel: &Path, meta: &Meta) -> Result<(PathBuf, Fixups)> {
        let (parent, at) = self.place(rel)?;
        let fixups = self.fixups(meta, parent);
        Ok((self.target.join(at), fixups))
    }

    /// Where a non-directory entry `rel` goes (relative to the target:
    /// `rel` itself, or its physical place below a followed symlink), its
    /// parent made a real directory, and the directory cache told that
    /// whatever is there is about to be replaced.
    pub(super) fn place(&mut self, rel: &Path) -> Result<(DirInfo, PathBuf)> {
        let parent = self.ensure_parent(rel)?;
        self.dirs.remove(rel);
        let at = match parent.physical {
            Some(p) => {
                let at = p.join(rel.file_name().unwrap_or_default());
                self.dirs.remove(&at);
                at
            }
            None => rel.to_path_buf(),
        };
        Ok((parent.info, at))
    }

    /// Makes the parents of the entry `rel` (`dir`: a directory entry,
    /// and `rel` itself) real directories, unless that means following a
    /// symlink while earlier entries are still pending: then `false`, and
    /// the caller waits for them and asks again, so that an entry reached
    /// through a symlink never overtakes one at the same place under
    /// another name.
    pub(super) fn parents_ready(&mut self, rel: &Path, dir: bool) -> Result<bool> {
        let may_follow = self.aliased || (self.links.is_empty() && self.in_flight.is_empty());
        let r = if dir {
            self.ensure_dir(rel, rel, Last::Replace, may_follow)?
        } else {
            let parent = rel.parent().unwrap_or(Path::new(""));
            self.ensure_dir(parent, rel, Last::Follow, may_follow)?
        };
        Ok(r.is_some())
    }

    /// A directory entry: made a real directory now, its mode and times
    /// applied at the end ([`Extractor::finish_dirs`]).
    pub(super) fn dir(&mut self, rel: PathBuf, meta: Meta) -> Result<()> {
        let r = self.ensure_dir(&rel, &rel, Last::Replace, true)?;
        let rel = r.and_then(|r| r.physical).unwrap_or(rel);
        if let Some(later) = self
            .summary
            .implied_dirs
            .as_mut()
            .and_then(|m| m.get_mut(&rel))
        {
            *later = true;
        }
        let cost = rel.as_os_str().len() + KEPT_OVERHEAD;
        match self.dir_meta.get_mut(&rel) {
            Some(m) => *m = meta,
            None => {
                self.keep(cost)?;
                self.dir_meta.insert(rel, meta);
            }
        }
        Ok(())
    }

    /// Counts `cost` bytes against the budget for what is kept to the end.
    fn keep(&mut self, cost: usize) -> Result<()> {
        self.kept_bytes += cost;
        if self.kept_bytes > KEPT_MAX {
            return Err(Error::limit(format!(
                "over {} distinct directories: their metadata would take more than the \
                 {KEPT_MAX}-byte bookkeeping budget",
                self.dir_meta.len() + self.loosened.len()
            )));
        }
        Ok(())
    }

    /// What must happen before the entry `rel` is applied (`dir`: a
    /// directory entry; links are ordered among themselves at the flush).
    pub(super) fn order(&self, rel: &Path, dir: bool) -> Order {
        if self.link_names.is_empty() && self.in_flight.is_empty() {
            return Order::Now;
        }
        if self.aliased {
            return Order::Flush;
        }
        let mut order = Order::Now;
        for (i, p) in rel.ancestors().enumerate() {
            if p.as_os_str().is_empty() {
                break;
            }
            if self.link_names.contains(p) {
                return Order::Flush;
            }
            // A file at the entry's own name is in the same worker's queue,
            // in order; only a directory entry must wait for it.
            if (i > 0 || dir) && self.in_flight.contains(p) {
                order = Order::Barrier;
            }
        }
        order
    }

    /// Notes a regular file handed to a worker; true when enough are
    /// remembered that the caller should wait for the workers now.
    pub(super) fn file_in_flight(&mut self, rel: &Path) -> bool {
        if self.in_flight.insert(rel.to_path_buf()) {
            self.in_flight_bytes += rel.as_os_str().len();
        }
        self.in_flight.len() >= IN_FLIGHT_MAX || self.in_flight_bytes >= IN_FLIGHT_BYTES
    }

    /// The workers are idle: every file handed to them is written.
    pub(super) fn files_done(&mut self) {
        self.in_flight.clear();
        self.in_flight_bytes = 0;
    }

    /// A symlink or hard link (`hard`) entry to `target` (not empty),
    /// created at the next [`Extractor::flush_links`]. A hard link's source
    /// must stay inside the target.
    pub(super) fn defer_link(
        &mut self,
        rel: PathBuf,
        name: Vec<u8>,
        hard: bool,
        target: Vec<u8>,
        meta: Meta,
    ) -> Result<()> {
        let hard_source = if hard {
            let src = sanitize(&target).map_err(|_| {
                Error::unsafe_entry(
                    &name,
                    format!(
                        "is a hard link to `{}`, which escapes the target directory",
                        crate::escape_name(&target)
                    ),
                )
            })?;
            Some(src)
        } else {
            None
        };
        self.link_bytes += rel.as_os_str().len() + name.len() + target.len();
        if let Some(src) = &hard_source {
            self.link_names.insert(src.clone());
        }
        self.link_names.insert(rel.clone());
        self.links.push(DeferredLink {
            rel,
            name,
            target,
            hard_source,
            meta,
        });
        Ok(())
    }

    /// Whether the extraction runs as root (effective uid 0).
    pub(super) fn root(&self) -> bool {
        self.root
    }

    /// Links waiting for [`Extractor::flush_links`], and the bytes of
    /// their names.
    pub(super) fn pending_links(&self) -> (usize, usize) {
        (self.links.len(), self.link_bytes)
    }
}

impl Extractor<'_> {
    /// Makes sure `rel` is a real directory for the entry `entry`,
    /// creating it or replacing whatever non-directory is in the way, except
    /// symlinks in a parent position (and, with [`Last::Follow`], at `rel`
    /// itself), which are followed as GNU tar follows them, as long as they
    /// lead to a directory inside the target ([`Extractor::resolve`]).
    /// `None` if a symlink is to be followed but `may_follow` is false.
    fn ensure_dir(
        &mut self,
        rel: &Path,
        entry: &Path,
        last: Last,
        may_follow: bool,
    ) -> Result<Option<Resolved>> {
        if let Some(info) = self.dirs.get(rel) {
            return Ok(Some(Resolved {
                info: *info,
                physical: None,
            }));
        }
        // Ancestors up to the nearest known one, checked top down: a loop,
        // not recursion, since a name may have thousands of components.
        let mut todo: Vec<&Path> = Vec::new();
        for p in rel.ancestors() {
            if self.dirs.contains_key(p) {
                break;
            }
            todo.push(p);
        }
        if self.dirs.len() + todo.len() > DIRS_CACHE_MAX || self.dirs_bytes > DIRS_CACHE_BYTES {
            self.dirs.clear();
            self.dirs_bytes = 0;
        }
        let mut info = None;
        for p in todo.into_iter().rev() {
            let follow = p != rel || last == Last::Follow;
            match self.ensure_one_dir(p, follow, true)? {
                Step::Dir(i) => info = Some(i),
                Step::Symlink(_) if !may_follow => return Ok(None),
                Step::Symlink(target) => {
                    return self.resolve(rel, p, target, entry, last).map(Some)
                }
            }
        }
        Ok(Some(Resolved {
            info: info.expect("rel is not in the cache, so it was checked"),
            physical: None,
        }))
    }

    /// Follows the symlink at `link` (whose parent is a real directory;
    /// its target is `target`) on the way to `rel`, component by component
    /// like the kernel, but confined to the target: each directory reached
    /// is checked with `lstat`, so a `..` pops a real directory, and a
    /// symlink to an absolute path or one that climbs above the target
    /// refuses the entry. Components of symlink targets must exist (as
    /// for GNU tar, which gets `ENOENT` or `ENOTDIR` from the kernel);
    /// those of the entry's own name are created. Nothing reached this way
    /// is cached: a later entry may replace the symlink.
    fn resolve(
        &mut self,
        rel: &Path,
        link: &Path,
        target: Vec<u8>,
        entry: &Path,
        last: Last,
    ) -> Result<Resolved> {
        self.aliased = true;
        let stack = link.parent().unwrap_or(Path::new("")).to_path_buf();
        // What is left to walk, the next component last: (name, from a
        // symlink's target, the name's own last component to replace).
        let mut left: Vec<(Vec<u8>, bool, bool)> = Vec::new();
        let below: Vec<&[u8]> = rel
            .strip_prefix(link)
            .unwrap_or(Path::new(""))
            .iter()
            .map(|c| c.as_bytes())
            .collect();
        for (i, c) in below.iter().enumerate().rev() {
            let replace = i + 1 == below.len() && last == Last::Replace;
            left.push((c.to_vec(), false, replace));
        }
        let via = (link.to_path_buf(), target);
        self.walk(stack, left, Some(via), entry)
    }

    /// The directory `rel` (a hard link source's parent), which must
    /// exist, reached through the symlinks on its way as
    /// [`Extractor::resolve`] reaches it: where it physically is.
    pub(super) fn resolve_existing(&mut self, rel: &Path, entry: &Path) -> Result<PathBuf> {
        let left = rel
            .iter()
            .rev()
            .map(|c| (c.as_bytes().to_vec(), true, false))
            .collect();
        let r = self.walk(PathBuf::new(), left, None, entry)?;
        Ok(r.physical.unwrap_or_default())
    }

    /// The walk of [`Extractor::resolve`]: from the real directory
    /// `stack`, the components `left` (the next last: name, must exist,
    /// replace a symlink there), after following `first` (a symlink's
    /// path and target) if given.
    fn walk(
        &mut self,
        mut stack: PathBuf,
        mut left: Vec<(Vec<u8>, bool, bool)>,
        first: Option<(PathBuf, Vec<u8>)>,
        entry: &Path,
    ) -> Result<Resolved> {
        // Messages name the first symlink met, the one in the entry's path.
        let mut next_target = first.as_ref().map(|f| f.1.clone());
        let mut via = first.unwrap_or_default();
        let mut hops = 0;
        let mut info = None;
        loop {
            if let Some(t) = next_target.take() {
                hops += 1;
                if hops > SYMLINK_HOPS {
                    return Err(Error::io(
                        "follow the symlinks above",
                        self.target.join(entry),
                        io::Error::from_raw_os_error(libc::ELOOP),
                    ));
                }
                if t.first() == Some(&b'/') {
                    return Err(self.outside(entry, &via, "an absolute path"));
                }
                for c in t.split(|&c| c == b'/').rev() {
                    left.push((c.to_vec(), true, false));
                }
            }
            let Some((c, from_link, replace)) = left.pop() else {
                break;
            };
            match &c[..] {
                b"" | b"." => continue,
                b".." => {
                    if !stack.pop() {
                        return Err(self.outside(entry, &via, "a path above the target directory"));
                    }
                    // A popped directory was checked, so its parent is one too.
                    let path = self.target.join(&stack);
                    let m = fs::metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
                    info = Some(DirInfo::of(&m));
                    continue;
                }
                _ => stack.push(std::ffi::OsStr::from_bytes(&c)),
            }
            let step = if from_link {
                self.existing_dir(&stack)?
            } else {
                self.ensure_one_dir(&stack, !replace, false)?
            };
            match step {
                Step::Dir(i) => info = Some(i),
                Step::Symlink(t) => {
                    self.aliased = true;
                    if via.0.as_os_str().is_empty() {
                        via = (stack.clone(), t.clone());
                    }
                    stack.pop();
                    next_target = Some(t);
                }
            }
        }
        let info = match info {
            Some(i) => i,
            // The symlink led back to the directory it is in.
            None => {
                let path = self.target.join(&stack);
                DirInfo::of(&fs::metadata(&path).map_err(|e| Error::io("stat", &path, e))?)
            }
        };
        Ok(Resolved {
            info,
            physical: Some(stack),
        })
    }

    /// The refusal of an entry below a symlink (`via`: where, and its
    /// target) that leads outside the target directory.
    fn outside(&self, entry: &Path, via: &(PathBuf, Vec<u8>), what: &str) -> Error {
        Error::unsafe_entry(
            entry.as_os_str().as_bytes(),
            format!(
                "would be written through `{}`, a symlink to `{}`: {what}, outside the \
                 target directory",
                crate::escape_path(&via.0),
                crate::escape_name(&via.1)
            ),
        )
    }

    /// A component of a symlink's target: a directory (loosened if
    /// read-only) or a symlink to follow; anything else, or nothing, is
    /// the error the kernel would give.
    fn existing_dir(&mut self, rel: &Path) -> Result<Step> {
        let path = self.target.join(rel);
        let m =
            fs::symlink_metadata(&path).map_err(|e| Error::io("follow a symlink to", &path, e))?;
        if m.is_dir() {
            self.loosen(rel, &m)?;
            Ok(Step::Dir(DirInfo::of(&m)))
        } else if m.file_type().is_symlink() {
            let t = fs::read_link(&path).map_err(|e| Error::io("read symlink", &path, e))?;
            Ok(Step::Symlink(t.into_os_string().into_vec()))
        } else {
            let e = io::Error::from_raw_os_error(libc::ENOTDIR);
            Err(Error::io("follow a symlink to", &path, e))
        }
    }

    /// [`Extractor::ensure_dir`] for one directory whose parent is known
    /// real: a symlink there is returned to follow (`follow`) or replaced;
    /// `cache`: remember it as real (only for paths without a symlink).
    fn ensure_one_dir(&mut self, rel: &Path, follow: bool, cache: bool) -> Result<Step> {
        if rel.as_os_str().is_empty() {
            // The target itself: never replaced, but loosened like the others.
            let m = fs::metadata(self.target).map_err(|e| Error::io("stat", self.target, e))?;
            self.loosen(rel, &m)?;
            let info = DirInfo::of(&m);
            self.dirs.insert(PathBuf::new(), info);
            return Ok(Step::Dir(info));
        }
        let path = self.target.join(rel);
        for _attempt in 0..4 {
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    self.loosen(rel, &m)?;
                    let info = DirInfo::of(&m);
                    if cache {
                        self.dirs_bytes += rel.as_os_str().len();
                        self.dirs.insert(rel.to_path_buf(), info);
                    }
                    return Ok(Step::Dir(info));
                }
                Ok(m) if follow && m.file_type().is_symlink() => {
                    let t =
                        fs::read_link(&path).map_err(|e| Error::io("read symlink", &path, e))?;
                    return Ok(Step::Symlink(t.into_os_string().into_vec()));
                }
                Ok(_) => {
                    // A file, or a symlink at a directory entry's own
                    // name: replaced by a real directory as GNU tar does.
                    remove_non_dir(&path)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match fs::DirBuilder::new().mode(0o777).create(&path) {
                        // Loop once more to learn what the new directory inherited.
                        Ok(()) => {
                            self.created(rel, follow);
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(Error::io("create directory", &path, e)),
                    }
                }
                Err(e) => return Err(Error::io("stat", &path, e)),
            }
        }
        Err(Error::Conflict {
            path,
            reason: "it keeps changing while being replaced by a directory",
        })
    }

    /// Notes the directory `rel` just created: in a parent position
    /// (`implied`), or for a directory entry of its own.
    fn created(&mut self, rel: &Path, implied: bool) {
        let Some(map) = self.summary.implied_dirs.as_mut() else {
            return;
        };
        if !implied {
            if map.remove(rel).is_some() {
                self.implied_bytes -= rel.as_os_str().len();
            }
            return;
        }
        if map.len() >= IMPLIED_DIRS_MAX || self.implied_bytes > IMPLIED_DIRS_BYTES {
            self.summary.implied_dirs = None;
            return;
        }
        if map.insert(rel.to_path_buf(), false).is_none() {
            self.implied_bytes += rel.as_os_str().len();
        }
    }

    /// A read-only directory would stop us replacing its files: make it
    /// owner-writable now and remember its mode to restore it later.
    fn loosen(&mut self, rel: &Path, m: &fs::Metadata) -> Result<()> {
        let mode = m.mode() & 0o7777;
        if mode & 0o700 != 0o700 {
            let path = self.target.join(rel);
            fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))
                .map_err(|e| Error::io("make writable", &path, e))?;
            self.loosened.push((rel.to_path_buf(), mode));
            self.keep(rel.as_os_str().len() + KEPT_OVERHEAD)?;
        }
        Ok(())
    }

    /// Makes the parent of the entry `rel` a real directory, following a
    /// symlink on the way if it leads inside the target.
    fn ensure_parent(&mut self, rel: &Path) -> Result<Resolved> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let r = self.ensure_dir(parent, rel, Last::Follow, true)?;
        Ok(r.expect("may follow"))
    }

    /// Which of chown and chmod a new file in `parent` needs to end up with `meta`.
    fn fixups(&self, meta: &Meta, parent: DirInfo) -> Fixups {
        let gid = if parent.setgid { parent.gid } else { self.egid };
        Fixups {
            chown: self.root && (meta.uid != self.euid || meta.gid != gid),
            chmod: match self.umask {
                Some(umask) => meta.mode & 0o7000 != 0 || meta.mode & 0o777 & umask != 0,
                None => true,
            },
        }
    }

    /// Creates the deferred symlinks and hard links, in archive order.
    /// Must only run while no worker is writing.
    pub(super) fn flush_links(&mut self) -> Result<()> {
        let links = std::mem::take(&mut self.links);
        self.link_names.clear();
        self.link_bytes = 0;
        for l in links {
            // Whatever is replaced might be a cached directory.
            let (_, at) = self.place(&l.rel)?;
            let path = self.target.join(at);
            match &l.hard_source {
                None => {
                    let target = std::ffi::OsStr::from_bytes(&l.target);
                    let create = || std::os::unix::fs::symlink(target, &path);
                    match create() {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            replace_any(&path)?;
                            create().map_err(|e| Error::io("create symlink", &path, e))?;
                        }
                        Err(e) => return Err(Error::io("create symlink", &path, e)),
                    }
                    if self.root {
                        sys::lchown(&path, l.meta.uid, l.meta.gid)
                            .map_err(|e| Error::io("change owner of", &path, e))?;
                    }
                    sys::lutimens(&path, l.meta.mtime)
                        .map_err(|e| Error::io("set times of", &path, e))?;
                    self.summary.symlinks += 1;
                }
                Some(src) => {
                    let src_parent = src.parent().unwrap_or(Path::new(""));
                    let src_name = src.file_name().map(Path::new).ok_or_else(|| {
                        Error::unsafe_entry(
                            &l.name,
                            "is a hard link to the target directory itself",
                        )
                    })?;
                    let open = |parent: &Path| {
                        sys::open_dir_beneath(self.target, parent).map_err(|e| {
                            Error::io(
                                "open the directory of hard link source",
                                self.target.join(parent),
                                e,
                            )
                        })
                    };
                    let dir = match open(src_parent) {
                        Ok(dir) => dir,
                        // A symlink on the way: followed as for other
                        // entries, if it stays inside.
                        Err(Error::Io { error, .. })
                            if error.raw_os_error() == Some(libc::ELOOP)
                                || error.raw_os_error() == Some(libc::ENOTDIR) =>
                        {
                            let physical = self.resolve_existing(src_parent, &l.rel)?;
                            open(&physical)?
                        }
                        Err(e) => return Err(e),
                    };
                    if let (Ok(a), Ok(b)) = (
                        fs::symlink_metadata(self.target.join(src)),
                        fs::symlink_metadata(&path),
                    ) {
                        if a.dev() == b.dev() && a.ino() == b.ino() {
                            self.summary.hard_links += 1;
                            continue;
                        }
                    }
                    match sys::linkat(&dir, src_name, &path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            remove_non_dir(&path)?;
                            sys::linkat(&dir, src_name, &path)
                                .map_err(|e| Error::io("create hard link", &path, e))?;
                        }
                        Err(e) => return Err(Error::io("create hard link", &path, e)),
                    }
                    self.summary.hard_links += 1;
                }
            }
        }
        Ok(())
    }

    /// Applies directory modes, owners and times, deepest first, through
    /// descriptors that cannot follow symlinks.
    pub(super) fn finish_dirs(&mut self) -> Result<()> {
        // Pre-existing directories first get their own modes back; those in
        // the archive then get the archive's.
        self.restore_loosened()?;
        let mut dirs: Vec<(PathBuf, Meta)> =
            std::mem::take(&mut self.dir_meta).into_iter().collect();
        // Reverse component order visits every directory after all its
        // descendants (so a read-only mode or a time set on a parent is not
        // disturbed by work below it) and keeps ancestors' descriptors reusable.
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        let mut opener = sys::BeneathOpener::new(self.target);
        for (rel, meta) in dirs {
            let path = self.target.join(&rel);
            let fd = match opener.open(&rel) {
                Ok(fd) => fd,
                // Replaced by a later entry (a symlink or file): nothing to do.
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOTDIR)
                        || e.raw_os_error() == Some(libc::ELOOP) =>
                {
                    continue
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("open directory", &path, e)),
            };
            if self.root {
                sys::fchown(fd, meta.uid, meta.gid)
                    .map_err(|e| Error::io("change owner of", &path, e))?;
            }
            sys::fchmod(fd, meta.mode & 0o7777)
                .map_err(|e| Error::io("change mode of", &path, e))?;
            sys::futimens(fd, meta.mtime).map_err(|e| Error::io("set times of", &path, e))?;
        }
        Ok(())
    }

    pub(super) fn restore_loosened(&mut self) -> Result<()> {
        let mut first = Ok(());
        let mut loosened = std::mem::take(&mut self.loosened);
        loosened.sort_by(|a, b| b.0.cmp(&a.0));
        let mut opener = sys::BeneathOpener::new(self.target);
        for (rel, mode) in loosened {
            let path = self.target.join(&rel);
            let r = opener.open(&rel).and_then(|fd| sys::fchmod(fd, mode));
            if let Err(e) = r {
                if first.is_ok() {
                    first = Err(Error::io("restore the mode of", path, e));
                }
            }
        }
        first
    }
}

/// Removes a file, symlink or empty directory in the way of a symlink.
fn replace_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir(path).map_err(|_| Error::Conflict {
            path: path.to_path_buf(),
            reason: "a non-empty directory is in the way of a symlink",
        }),
        Ok(_) => remove_non_dir(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

#[cfg(test)]
mod tests;

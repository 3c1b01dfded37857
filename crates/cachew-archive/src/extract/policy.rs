//! The extraction policy: what may be written where. Entry names are
//! checked lexically ([`sanitize`]: no absolute names, no `..`); every
//! parent directory is made a real directory inside the target (a symlink
//! or file in the way is replaced, never followed); files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` after removing what was there
//! ([`create_file`]); symlinks and hard links are created at flush points,
//! hard link sources resolved component by component without following
//! symlinks; directory modes and times are applied last, through
//! descriptors opened the same way, and pre-existing read-only directories
//! get their modes back.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::entries::Meta;
use crate::sys;
use crate::{Error, ExtractSummary, Result};

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
/// with other threads). `None` if unknown.
fn current_umask() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line.split_whitespace().nth(1)?, 8).ok()
}

/// Turns an entry name into a relative path inside the target, or refuses it.
pub(crate) fn sanitize(name: &[u8]) -> Result<PathBuf> {
    if name.first() == Some(&b'/') {
        return Err(Error::unsafe_entry(name, "is an absolute path"));
    }
    let mut out: Vec<u8> = Vec::with_capacity(name.len());
    for comp in name.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(Error::unsafe_entry(name, "escapes the target directory")),
            c => {
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

/// Removes a file or symlink in the way; a directory is a conflict.
pub(super) fn remove_non_dir(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => Err(Error::Conflict {
            path: path.to_path_buf(),
            reason: "a directory is in the way of a non-directory entry",
        }),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

struct DeferredLink {
    rel: PathBuf,
    name: Vec<u8>,
    target: Vec<u8>,
    /// For hard links, the sanitized source inside the target.
    hard_source: Option<PathBuf>,
    meta: Meta,
}

struct DirMeta {
    rel: PathBuf,
    meta: Meta,
}

/// What has been made of the target so far, and what is left to do.
pub(super) struct Extractor<'a> {
    target: &'a Path,
    root: bool,
    /// Directories (relative) known to be real directories inside the target.
    dirs: HashMap<PathBuf, DirInfo>,
    euid: u32,
    egid: u32,
    umask: Option<u32>,
    /// Pre-existing directories made owner-writable, with their original modes.
    loosened: Vec<(PathBuf, u32)>,
    dir_meta: Vec<DirMeta>,
    links: Vec<DeferredLink>,
    pub(super) summary: ExtractSummary,
}

impl<'a> Extractor<'a> {
    pub(super) fn new(target: &'a Path) -> Self {
        Extractor {
            target,
            root: sys::is_root(),
            dirs: HashMap::new(),
            // SAFETY: no preconditions.
            euid: unsafe { libc::geteuid() },
            // SAFETY: no preconditions.
            egid: unsafe { libc::getegid() },
            umask: current_umask(),
            loosened: Vec::new(),
            dir_meta: Vec::new(),
            links: Vec::new(),
            summary: ExtractSummary::default(),
        }
    }
}

impl Extractor<'_> {
    /// Where the regular file `rel` is to be created, with what it needs
    /// after writing: its parent is made a real directory first.
    pub(super) fn file(&mut self, rel: &Path, meta: &Meta) -> Result<(PathBuf, Fixups)> {
        let parent = self.ensure_parent(rel)?;
        self.dirs.remove(rel);
        let fixups = self.fixups(meta, parent);
        Ok((self.target.join(rel), fixups))
    }

    /// A directory entry: made a real directory now, its mode and times
    /// applied at the end ([`Extractor::finish_dirs`]).
    pub(super) fn dir(&mut self, rel: PathBuf, meta: Meta) -> Result<()> {
        self.ensure_dir(&rel)?;
        self.dir_meta.push(DirMeta { rel, meta });
        Ok(())
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
                        String::from_utf8_lossy(&target)
                    ),
                )
            })?;
            Some(src)
        } else {
            None
        };
        self.links.push(DeferredLink {
            rel,
            name,
            target,
            hard_source,
            meta,
        });
        Ok(())
    }

    /// Links waiting for [`Extractor::flush_links`].
    pub(super) fn pending_links(&self) -> usize {
        self.links.len()
    }
}

impl Extractor<'_> {
    /// Makes sure `rel` is a real directory, creating it or replacing
    /// whatever non-directory is in the way.
    pub(super) fn ensure_dir(&mut self, rel: &Path) -> Result<DirInfo> {
        if let Some(info) = self.dirs.get(rel) {
            return Ok(*info);
        }
        if rel.as_os_str().is_empty() {
            // The target itself: never replaced, but loosened like the others.
            let m = fs::metadata(self.target).map_err(|e| Error::io("stat", self.target, e))?;
            self.loosen(rel, &m)?;
            let info = DirInfo::of(&m);
            self.dirs.insert(PathBuf::new(), info);
            return Ok(info);
        }
        if let Some(parent) = rel.parent() {
            self.ensure_dir(parent)?;
        }
        let path = self.target.join(rel);
        for _attempt in 0..4 {
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    self.loosen(rel, &m)?;
                    let info = DirInfo::of(&m);
                    self.dirs.insert(rel.to_path_buf(), info);
                    return Ok(info);
                }
                Ok(_) => {
                    // A symlink (possibly pointing outside) or a file: never
                    // followed, replaced by a real directory as GNU tar does.
                    remove_non_dir(&path)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match fs::DirBuilder::new().mode(0o777).create(&path) {
                        // Loop once more to learn what the new directory inherited.
                        Ok(()) => continue,
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

    /// A read-only directory would stop us replacing its files: make it
    /// owner-writable now and remember its mode to restore it later.
    fn loosen(&mut self, rel: &Path, m: &fs::Metadata) -> Result<()> {
        let mode = m.mode() & 0o7777;
        if mode & 0o700 != 0o700 {
            let path = self.target.join(rel);
            fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))
                .map_err(|e| Error::io("make writable", &path, e))?;
            self.loosened.push((rel.to_path_buf(), mode));
        }
        Ok(())
    }

    fn ensure_parent(&mut self, rel: &Path) -> Result<DirInfo> {
        self.ensure_dir(rel.parent().unwrap_or(Path::new("")))
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
        for l in links {
            self.ensure_parent(&l.rel)?;
            let path = self.target.join(&l.rel);
            // Whatever is replaced might be a cached directory.
            self.dirs.remove(&l.rel);
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
                    let dir = sys::open_dir_beneath(self.target, src_parent).map_err(|e| {
                        Error::io(
                            "open the directory of hard link source",
                            self.target.join(src_parent),
                            e,
                        )
                    })?;
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
        let mut dirs = std::mem::take(&mut self.dir_meta);
        // Reverse component order visits every directory after all its
        // descendants (so a read-only mode or a time set on a parent is not
        // disturbed by work below it) and keeps ancestors' descriptors reusable.
        dirs.sort_by(|a, b| b.rel.cmp(&a.rel));
        let mut opener = sys::BeneathOpener::new(self.target);
        for d in dirs {
            let path = self.target.join(&d.rel);
            let fd = match opener.open(&d.rel) {
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
                sys::fchown(fd, d.meta.uid, d.meta.gid)
                    .map_err(|e| Error::io("change owner of", &path, e))?;
            }
            sys::fchmod(fd, d.meta.mode & 0o7777)
                .map_err(|e| Error::io("change mode of", &path, e))?;
            sys::futimens(fd, d.meta.mtime).map_err(|e| Error::io("set times of", &path, e))?;
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

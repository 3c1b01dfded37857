//! The directory walk shared by archive creation and the tree digest: the
//! include paths and, below each directory, its entries in bytewise name
//! order, one listing pass per directory ([`sys::read_dir_at`]:
//! `getdents64` on Linux, `readdir` elsewhere), excluded entries left out
//! with their contents, no symlink followed, sockets left out. Entries are
//! named as GNU tar names them and located relative to their directory's
//! descriptor (while at most [`DIR_FDS_MAX`] are held), so whoever opens
//! them looks up one component, not the whole path. What becomes of an
//! entry is the [`Sink`]'s business.

use std::ffi::{CStr, OsStr};
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustix::fs::OFlags;

use crate::exclude::ExcludeSet;
use crate::sys::{self, FileType};
use crate::{Error, Result};

/// Directory descriptors held at once. Files are opened relative to their
/// directory (one path component to look up instead of the whole path), so
/// each directory with entries in flight keeps its descriptor until they
/// are written: one per level of the walk plus at most one per item queued
/// between the threads. Beyond this many, directories and their files are
/// opened by path instead.
pub(crate) const DIR_FDS_MAX: usize = 128;

/// What `lstat` says about an entry (the fields the archive needs).
#[derive(Clone, Copy)]
pub(crate) struct Meta {
    /// `st_mode`: file type and permission bits.
    pub(crate) mode: u32,
    pub(crate) nlink: u64,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) size: u64,
    pub(crate) mtime: i64,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) rdev: u64,
}

impl Meta {
    /// For a regular file whose metadata the reader gets from the open file.
    pub(crate) const UNKNOWN: Meta = Meta {
        mode: 0o100000,
        nlink: 1,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        dev: 0,
        ino: 0,
        rdev: 0,
    };

    // The `stat` fields' widths differ between targets (`st_mode` is 16
    // bits and `st_dev` signed 32 bits on macOS, `st_nlink` 32 bits on
    // x86-64 Linux), so every one is cast; the casts only widen.
    #[allow(clippy::unnecessary_cast)]
    pub(crate) fn from_stat(st: &sys::Stat) -> Meta {
        Meta {
            mode: st.st_mode as u32,
            nlink: st.st_nlink as u64,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: st.st_size as u64,
            mtime: st.st_mtime as i64,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            rdev: st.st_rdev as u64,
        }
    }

    pub(crate) fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode as _)
    }
}

/// What the walker found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    Char,
    Block,
    Fifo,
}

/// A directory being walked, shared by the items in it.
pub(crate) struct Dir {
    path: PathBuf,
    /// `None` when [`DIR_FDS_MAX`] descriptors were already held.
    fd: Option<OwnedFd>,
    /// Directory descriptors held, across all `Dir`s of the walk.
    open: Arc<AtomicUsize>,
}

impl Drop for Dir {
    fn drop(&mut self) {
        if self.fd.is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Dir {
    /// A directory whose descriptor is not held (entries are opened by path).
    #[cfg(test)]
    pub(crate) fn unheld(path: PathBuf) -> Arc<Dir> {
        Arc::new(Dir {
            path,
            fd: None,
            open: Arc::new(AtomicUsize::new(0)),
        })
    }
}

/// Where an entry is.
#[derive(Clone)]
pub(crate) enum Parent {
    /// In a walked directory, under the last component of its name.
    Dir(Arc<Dir>),
    /// An include path, at this path.
    Root(PathBuf),
}

/// An entry the walker found.
pub(crate) struct Item {
    /// Member name without a trailing slash.
    pub(crate) name: Vec<u8>,
    /// Where the last component of `name` starts (for `Parent::Dir`).
    pub(crate) leaf: usize,
    pub(crate) parent: Parent,
    /// [`Meta::UNKNOWN`] for a regular file the walker did not stat.
    pub(crate) meta: Meta,
    pub(crate) kind: Kind,
}

impl Item {
    /// The entry's path, for messages.
    pub(crate) fn path(&self) -> PathBuf {
        path_of(&self.parent, &self.name[self.leaf..])
    }

    /// Calls `f` as [`at`] does for this entry.
    pub(crate) fn at<R>(
        &self,
        f: impl FnOnce(BorrowedFd<'_>, &CStr) -> io::Result<R>,
    ) -> io::Result<R> {
        at(&self.parent, &self.name[self.leaf..], f)
    }
}

/// The error for an include path that cannot be stat-ed: a missing one is
/// named as given, with the base directory.
pub(crate) fn include_stat_error(inc: &Path, base: &Path, path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::IncludeNotFound {
            path: inc.to_path_buf(),
            base: base.to_path_buf(),
        }
    } else {
        Error::io("stat", path, e)
    }
}

/// Checks an include path and returns its member name (GNU tar keeps the
/// name as given, minus trailing slashes).
pub(crate) fn include_name(p: &Path) -> Result<Vec<u8>> {
    let bytes = p.as_os_str().as_bytes();
    let invalid = || Error::InvalidIncludePath {
        path: p.to_path_buf(),
    };
    if bytes.is_empty() || p.is_absolute() {
        return Err(invalid());
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(invalid());
    }
    let mut name = bytes.to_vec();
    while name.len() > 1 && name.ends_with(b"/") {
        name.pop();
    }
    // Collapse repeated slashes, which tar would not store either.
    name.dedup_by(|a, b| *a == b'/' && *b == b'/');
    Ok(name)
}

/// Takes the walker's entries in walk order.
pub(crate) trait Sink {
    /// Takes an entry, or the error that ends the walk (after which the
    /// walker sends nothing more). `Err(Stop)` stops the walk.
    fn send(&mut self, item: Result<Item>) -> Result<(), Stop>;
}

/// An include path: its member name, its path and what `lstat` says.
pub(crate) type Root = (Vec<u8>, PathBuf, Meta);

/// Checks the include paths and `lstat`s them, in order.
pub(crate) fn roots(base: &Path, includes: &[impl AsRef<Path>]) -> Result<Vec<Root>> {
    let mut roots = Vec::with_capacity(includes.len());
    for inc in includes {
        let inc = inc.as_ref();
        let name = include_name(inc)?;
        let path = base.join(inc);
        let st = sys::with_cstr(path.as_os_str().as_bytes(), |c| {
            sys::lstat_at(sys::cwd(), c)
        });
        let meta = st.map_err(|e| include_stat_error(inc, base, &path, e))?;
        roots.push((name, path, Meta::from_stat(&meta)));
    }
    Ok(roots)
}

/// Walks `roots`, sending every entry not excluded to `sink`; regular files
/// are `lstat`ed only with `stat_files`. Stops early when the sink says so.
pub(crate) fn walk(
    roots: Vec<Root>,
    excludes: &ExcludeSet,
    stat_files: bool,
    sink: &mut impl Sink,
) -> Result<(), Stop> {
    let mut w = Walker {
        excludes,
        sink,
        stat_files,
        open_dirs: Arc::new(AtomicUsize::new(0)),
        dents: Vec::with_capacity(sys::DIR_BUF),
    };
    for (name, path, meta) in roots {
        if excludes.is_excluded(&name) {
            continue;
        }
        w.visit(name, 0, Parent::Root(path), meta)?;
    }
    Ok(())
}

struct Walker<'a, S> {
    excludes: &'a ExcludeSet,
    sink: &'a mut S,
    /// Whether regular files are `lstat`ed too (else they are sent with
    /// [`Meta::UNKNOWN`], for whoever opens them to `fstat`).
    stat_files: bool,
    open_dirs: Arc<AtomicUsize>,
    dents: Vec<u8>,
}

/// Returned when the consumer has gone away; the walk just stops.
pub(crate) struct Stop;

/// A directory's entries in name order: where each name (followed by a
/// NUL) is in `names`, and its type as the listing says it.
struct Listing {
    names: Vec<u8>,
    entries: Vec<(Range<usize>, FileType)>,
}

/// Flags for opening a directory to read it (never through a symlink).
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOCTTY)
    .union(OFlags::NOFOLLOW);

impl<S: Sink> Walker<'_, S> {
    /// Visits an include path, or an entry whose `lstat` the walker needed
    /// (the listing did not say it is a regular file or a directory).
    fn visit(
        &mut self,
        name: Vec<u8>,
        leaf: usize,
        parent: Parent,
        meta: Meta,
    ) -> Result<(), Stop> {
        let kind = match meta.file_type() {
            FileType::Directory => {
                return match at(&parent, &name[leaf..], |d, c| sys::open_at(d, c, DIR_FLAGS)) {
                    Ok(fd) => self.dir(name, leaf, parent, meta, fd),
                    Err(e) => {
                        let path = path_of(&parent, &name[leaf..]);
                        self.sink.send(Ok(Item {
                            name,
                            leaf,
                            parent,
                            meta,
                            kind: Kind::Dir,
                        }))?;
                        self.sink.send(Err(Error::io("read directory", &path, e)))
                    }
                };
            }
            // GNU tar ignores sockets too ("socket ignored").
            FileType::Socket => return Ok(()),
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            FileType::CharacterDevice => Kind::Char,
            FileType::BlockDevice => Kind::Block,
            _ => Kind::Fifo,
        };
        self.sink.send(Ok(Item {
            name,
            leaf,
            parent,
            meta,
            kind,
        }))
    }

    /// Sends the directory open as `fd`, then walks its entries.
    fn dir(
        &mut self,
        name: Vec<u8>,
        leaf: usize,
        parent: Parent,
        meta: Meta,
        fd: OwnedFd,
    ) -> Result<(), Stop> {
        let path = path_of(&parent, &name[leaf..]);
        self.sink.send(Ok(Item {
            name: name.clone(),
            leaf,
            parent,
            meta,
            kind: Kind::Dir,
        }))?;
        let listing = match self.list(&fd) {
            Ok(l) => l,
            Err(e) => return self.sink.send(Err(Error::io("read directory", &path, e))),
        };
        // Keep the descriptor for the entries' readers, within the limit.
        let fd = if self.open_dirs.load(Ordering::Relaxed) < DIR_FDS_MAX {
            self.open_dirs.fetch_add(1, Ordering::Relaxed);
            Some(fd)
        } else {
            None
        };
        let dir = Arc::new(Dir {
            path,
            fd,
            open: self.open_dirs.clone(),
        });
        for (range, d_type) in listing.entries {
            // Without the NUL.
            let file_name = &listing.names[range.start..range.end - 1];
            let mut child = Vec::with_capacity(name.len() + 1 + file_name.len());
            child.extend_from_slice(&name);
            if !name.ends_with(b"/") {
                child.push(b'/');
            }
            let leaf = child.len();
            child.extend_from_slice(file_name);
            if self.excludes.is_excluded(&child) {
                continue;
            }
            let parent = Parent::Dir(dir.clone());
            match d_type {
                // The reader opens it and takes its metadata from the open
                // file (one name lookup instead of two).
                FileType::RegularFile if !self.stat_files => {
                    self.sink.send(Ok(Item {
                        name: child,
                        leaf,
                        parent,
                        meta: Meta::UNKNOWN,
                        kind: Kind::File,
                    }))?;
                    continue;
                }
                // Likewise, opened first, then `fstat`ed.
                FileType::Directory => {
                    match at(&parent, file_name, |d, c| sys::open_at(d, c, DIR_FLAGS)) {
                        Ok(fd) => {
                            match sys::fstat(&fd) {
                                Ok(st) => {
                                    self.dir(child, leaf, parent, Meta::from_stat(&st), fd)?
                                }
                                Err(e) => {
                                    let child_path = path_of(&parent, file_name);
                                    return self.sink.send(Err(Error::io("stat", &child_path, e)));
                                }
                            }
                            continue;
                        }
                        // A directory deleted during the walk is skipped, as GNU tar does.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        // Replaced, or unreadable: `lstat` says what it is now.
                        Err(_) => {}
                    }
                }
                _ => {}
            }
            let meta = match at(&parent, file_name, sys::lstat_at) {
                Ok(st) => Meta::from_stat(&st),
                // A file deleted during the walk is skipped, as GNU tar does
                // (with a warning); anything else is an error.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let child_path = path_of(&parent, file_name);
                    return self.sink.send(Err(Error::io("stat", &child_path, e)));
                }
            };
            self.visit(child, leaf, parent, meta)?;
        }
        Ok(())
    }

    /// Reads the entries of the directory open as `fd`, sorted by name.
    fn list(&mut self, fd: &OwnedFd) -> io::Result<Listing> {
        let mut names = Vec::new();
        let mut entries = Vec::new();
        sys::read_dir_at(fd, &mut self.dents, |n, d_type| {
            let n = n.to_bytes_with_nul();
            entries.push((names.len()..names.len() + n.len(), d_type));
            names.extend_from_slice(n);
        })?;
        // Sorted for reproducible archives (GNU tar uses readdir order).
        entries.sort_unstable_by(|(a, _), (b, _)| names[a.clone()].cmp(&names[b.clone()]));
        Ok(Listing { names, entries })
    }
}

/// The path of the entry `leaf` in `parent` (an include path's own path).
pub(crate) fn path_of(parent: &Parent, leaf: &[u8]) -> PathBuf {
    match parent {
        Parent::Dir(d) => d.path.join(OsStr::from_bytes(leaf)),
        Parent::Root(p) => p.clone(),
    }
}

/// Calls `f` with a directory descriptor and the name of the entry `leaf`
/// in `parent` relative to it: the parent's descriptor and `leaf` when the
/// parent is held open, else the current directory and the entry's path.
pub(crate) fn at<R>(
    parent: &Parent,
    leaf: &[u8],
    f: impl FnOnce(BorrowedFd<'_>, &CStr) -> io::Result<R>,
) -> io::Result<R> {
    match parent {
        Parent::Dir(d) => match &d.fd {
            Some(fd) => sys::with_cstr(leaf, |c| f(fd.as_fd(), c)),
            None => {
                let path = d.path.join(OsStr::from_bytes(leaf));
                sys::with_cstr(path.as_os_str().as_bytes(), |c| f(sys::cwd(), c))
            }
        },
        Parent::Root(p) => sys::with_cstr(p.as_os_str().as_bytes(), |c| f(sys::cwd(), c)),
    }
}

#[cfg(test)]
mod tests;

//! Thin wrappers over the POSIX calls std does not offer, on rustix where
//! it has them (no `unsafe` here), on libc for the user and group
//! database. The one directory reader has a Linux fast path and a
//! portable one; see [`read_dir_at`].

use std::ffi::{CStr, CString, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, CWD, UTIME_OMIT};
use rustix::process::{Gid, Uid};

pub(crate) use rustix::fs::{FileType, Stat};

/// The error for a name with a NUL byte in it.
fn invalid_input<E>(_: E) -> io::Error {
    io::Error::from(io::ErrorKind::InvalidInput)
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(invalid_input)
}

/// Retries `f` while it fails with `EINTR`.
fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// The descriptor that names the current directory in `*at` calls.
pub(crate) fn cwd() -> BorrowedFd<'static> {
    CWD
}

/// Whether ownership can and should be restored.
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The user name of `uid`, if it has one.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid `passwd`.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: the pointers are valid for the sizes given.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r != 0 || out.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points to a NUL-terminated string in `buf`.
    let name = unsafe { CStr::from_ptr(pw.pw_name) };
    name.to_str().ok().map(str::to_owned)
}

/// The group name of `gid`, if it has one.
pub(crate) fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid `group`.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: the pointers are valid for the sizes given.
    let r = unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r != 0 || out.is_null() || gr.gr_name.is_null() {
        return None;
    }
    // SAFETY: getgrgid_r succeeded, so gr_name points into `buf`.
    let name = unsafe { CStr::from_ptr(gr.gr_name) };
    name.to_str().ok().map(str::to_owned)
}

pub(crate) fn fchown(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    Ok(rustix::fs::fchown(fd, Some(u), Some(g))?)
}

pub(crate) fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode as _))?)
}

fn times(mtime: i64) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    }
}

/// Sets the modification time (the access time is left alone).
pub(crate) fn futimens(fd: impl AsFd, mtime: i64) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &times(mtime))?)
}

/// Sets the modification time of a path without following a final symlink.
pub(crate) fn lutimens(path: &Path, mtime: i64) -> io::Result<()> {
    let flags = AtFlags::SYMLINK_NOFOLLOW;
    Ok(rustix::fs::utimensat(CWD, path, &times(mtime), flags)?)
}

/// `lchown(2)`.
pub(crate) fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let (u, g) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    Ok(rustix::fs::chownat(
        CWD,
        path,
        u,
        g,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

fn openat_dir(dirfd: BorrowedFd<'_>, name: &CStr, follow: bool) -> io::Result<OwnedFd> {
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    open_at(dirfd, name, flags)
}

/// Opens the directory `root/rel` without following any symlink below
/// `root` (`rel` must be a sanitized relative path). A symlink anywhere in
/// `rel` makes this fail, so the result is always inside `root`.
pub(crate) fn open_dir_beneath(root: &Path, rel: &Path) -> io::Result<OwnedFd> {
    let mut fd = openat_dir(CWD, &cstr(root)?, true)?;
    for comp in rel.components() {
        match comp {
            Component::Normal(c) => {
                let c = CString::new(c.as_bytes()).map_err(invalid_input)?;
                fd = openat_dir(fd.as_fd(), &c, false)?;
            }
            Component::CurDir => {}
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }
    Ok(fd)
}

/// `linkat(src_dir, src_name, AT_FDCWD, dst, 0)`: a final symlink in the
/// source is linked itself, not followed.
pub(crate) fn linkat(src_dir: &OwnedFd, src_name: &Path, dst: &Path) -> io::Result<()> {
    Ok(rustix::fs::linkat(
        src_dir,
        src_name,
        CWD,
        dst,
        AtFlags::empty(),
    )?)
}

/// Opens directories beneath a root one after another like
/// [`open_dir_beneath`], reusing the descriptors of common ancestors: at
/// most one descriptor per level is held, and a visit in sorted order costs
/// one `openat` per directory instead of one per path component.
pub(crate) struct BeneathOpener {
    root: PathBuf,
    root_fd: Option<OwnedFd>,
    stack: Vec<(OsString, OwnedFd)>,
}

impl BeneathOpener {
    pub(crate) fn new(root: &Path) -> Self {
        BeneathOpener {
            root: root.to_path_buf(),
            root_fd: None,
            stack: Vec::new(),
        }
    }

    /// A descriptor for the directory `root/rel` (`rel` sanitized and relative).
    pub(crate) fn open(&mut self, rel: &Path) -> io::Result<&OwnedFd> {
        let mut comps = Vec::new();
        for comp in rel.components() {
            match comp {
                Component::Normal(c) => comps.push(c),
                Component::CurDir => {}
                _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
            }
        }
        let keep = self
            .stack
            .iter()
            .zip(&comps)
            .take_while(|((have, _), want)| have.as_os_str() == **want)
            .count();
        self.stack.truncate(keep);
        if self.root_fd.is_none() {
            self.root_fd = Some(openat_dir(CWD, &cstr(&self.root)?, true)?);
        }
        for c in &comps[keep..] {
            let parent = match self.stack.last() {
                Some((_, fd)) => fd.as_fd(),
                None => self.root_fd.as_ref().expect("opened above").as_fd(),
            };
            let name = CString::new(c.as_bytes()).map_err(invalid_input)?;
            let fd = openat_dir(parent, &name, false)?;
            self.stack.push((c.to_os_string(), fd));
        }
        Ok(match self.stack.last() {
            Some((_, fd)) => fd,
            None => self.root_fd.as_ref().expect("opened above"),
        })
    }
}

/// Calls `f` with `bytes` as a NUL-terminated string, copied on the stack
/// when it fits (every file name does: `NAME_MAX` is 255). A NUL byte in
/// `bytes` is an `InvalidInput` error.
pub(crate) fn with_cstr<R>(bytes: &[u8], f: impl FnOnce(&CStr) -> io::Result<R>) -> io::Result<R> {
    let mut buf = [0u8; 256];
    if bytes.len() < buf.len() {
        buf[..bytes.len()].copy_from_slice(bytes);
        f(CStr::from_bytes_with_nul(&buf[..=bytes.len()]).map_err(invalid_input)?)
    } else {
        f(&CString::new(bytes).map_err(invalid_input)?)
    }
}

/// `openat(dir, name, flags | O_CLOEXEC)`; `dir` may be [`cwd`].
pub(crate) fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC;
    retry(|| rustix::fs::openat(dir, name, flags, Mode::empty()))
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: like `lstat`, relative to `dir`.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// `mkfifo(path, mode)`: a FIFO, never through a final symlink (an
/// existing entry is `EEXIST`). Through libc: rustix has no `mknodat` on
/// macOS, which only gained `mkfifoat` in version 13.
pub(crate) fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: a valid NUL-terminated path; mkfifo keeps no pointer to it.
    if unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `mknod(path)` for a character (`block` false) or block device with
/// the given major and minor numbers, mode 0600 (the caller sets the
/// final mode). Like [`mkfifo`], never through a final symlink (an
/// existing entry is `EEXIST`). rustix's `mknodat` where it has one;
/// libc's `mknod` on macOS, where it does not.
pub(crate) fn mknod_device(path: &Path, block: bool, major: u32, minor: u32) -> io::Result<()> {
    let dev = rustix::fs::makedev(major, minor);
    #[cfg(not(target_vendor = "apple"))]
    {
        let kind = if block {
            FileType::BlockDevice
        } else {
            FileType::CharacterDevice
        };
        retry(|| rustix::fs::mknodat(CWD, path, kind, Mode::from_raw_mode(0o600), dev))
    }
    #[cfg(target_vendor = "apple")]
    {
        let c = cstr(path)?;
        let kind = if block { libc::S_IFBLK } else { libc::S_IFCHR };
        // SAFETY: a valid NUL-terminated path; mknod keeps no pointer to it.
        if unsafe { libc::mknod(c.as_ptr(), kind | 0o600, dev) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// `fchmodat(AT_FDCWD, path, mode, 0)`: for a node that must not be
/// opened (a device), just created by us; the final component is
/// followed, so the caller makes sure it is not a symlink.
pub(crate) fn chmod_path(path: &Path, mode: u32) -> io::Result<()> {
    let mode = Mode::from_raw_mode(mode as _);
    Ok(rustix::fs::chmodat(CWD, path, mode, AtFlags::empty())?)
}

/// The effective user and group ids.
pub(crate) fn effective_ids() -> (u32, u32) {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    (uid, gid)
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    Ok(rustix::fs::fstat(fd)?)
}

/// `readlinkat(dir, name)`: a symlink's target, of any length.
pub(crate) fn readlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let target = rustix::fs::readlinkat(dir, name, Vec::with_capacity(256))?;
    Ok(target.into_bytes())
}

/// Which directory reader this build uses: `"getdents64"` (Linux, unless
/// the `portable-dirs` feature is on) or `"readdir"`.
#[cfg(test)]
pub(crate) const DIR_READER: &str =
    if cfg!(all(target_os = "linux", not(feature = "portable-dirs"))) {
        "getdents64"
    } else {
        "readdir"
    };

/// Scratch space [`read_dir_at`] needs (the Linux reader's buffer; the
/// portable one allocates its own in libc).
pub(crate) const DIR_BUF: usize = 32 << 10;

/// Reads all entries of the directory open as `dir` and calls `f` with
/// each name and its type as the listing says it (`FileType::Unknown` on
/// file systems that do not say), except `.` and `..`, in the order the
/// file system returns them. `dir` must be freshly opened (at offset 0)
/// and is not usable for reading again afterwards.
///
/// On Linux this is `getdents64` into `buf` (which has at least
/// [`DIR_BUF`] bytes of spare capacity; no allocation, no copy); elsewhere,
/// or with the `portable-dirs` feature that tests this path on Linux, it is
/// `openat(dir, ".")` + `fdopendir` + `readdir` (rustix's `Dir`; with the
/// feature, rustix is built on libc so that the Linux test runs the same
/// libc `readdir` as macOS and the BSDs).
pub(crate) fn read_dir_at(
    dir: &OwnedFd,
    buf: &mut Vec<u8>,
    mut f: impl FnMut(&CStr, FileType),
) -> io::Result<()> {
    #[cfg(all(target_os = "linux", not(feature = "portable-dirs")))]
    {
        buf.clear();
        let mut raw = rustix::fs::RawDir::new(dir, buf.spare_capacity_mut());
        loop {
            match raw.next() {
                None => return Ok(()),
                // The buffer is empty after an error, so the next call retries.
                Some(Err(rustix::io::Errno::INTR)) => continue,
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(e)) => {
                    let name = e.file_name();
                    if !is_dot(name) {
                        f(name, e.file_type());
                    }
                }
            }
        }
    }
    #[cfg(not(all(target_os = "linux", not(feature = "portable-dirs"))))]
    {
        let _ = buf;
        let dir = retry(|| rustix::fs::Dir::read_from(dir))?;
        for e in dir {
            let e = e?;
            let name = e.file_name();
            if !is_dot(name) {
                f(name, e.file_type());
            }
        }
        Ok(())
    }
}

fn is_dot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

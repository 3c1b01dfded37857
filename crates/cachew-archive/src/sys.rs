//! Thin wrappers over the few POSIX calls std does not offer.

use std::ffi::{CStr, CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The error for a name with a NUL byte in it.
fn invalid_input<E>(_: E) -> io::Error {
    io::Error::from(io::ErrorKind::InvalidInput)
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(invalid_input)
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether ownership can and should be restored.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
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

pub(crate) fn fchown(fd: &impl AsRawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })
}

pub(crate) fn fchmod(fd: &impl AsRawFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })
}

fn times(mtime: i64) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: mtime as libc::time_t,
            tv_nsec: 0,
        },
    ]
}

/// Sets the modification time (the access time is left alone).
pub(crate) fn futimens(fd: &impl AsRawFd, mtime: i64) -> io::Result<()> {
    let ts = times(mtime);
    // SAFETY: `ts` is a valid two-element array.
    check(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) })
}

/// Sets the modification time of a path without following a final symlink.
pub(crate) fn lutimens(path: &Path, mtime: i64) -> io::Result<()> {
    let ts = times(mtime);
    let c = cstr(path)?;
    // SAFETY: valid C string and timespec array.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `lchown(2)`.
pub(crate) fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: valid C string.
    check(unsafe { libc::lchown(c.as_ptr(), uid, gid) })
}

fn openat_dir(dirfd: libc::c_int, name: &CStr, follow: bool) -> io::Result<OwnedFd> {
    let mut flags = libc::O_RDONLY | libc::O_DIRECTORY;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    open_at(dirfd, name, flags)
}

/// Opens the directory `root/rel` without following any symlink below
/// `root` (`rel` must be a sanitized relative path). A symlink anywhere in
/// `rel` makes this fail, so the result is always inside `root`.
pub(crate) fn open_dir_beneath(root: &Path, rel: &Path) -> io::Result<OwnedFd> {
    let mut fd = openat_dir(libc::AT_FDCWD, &cstr(root)?, true)?;
    for comp in rel.components() {
        match comp {
            Component::Normal(c) => {
                let c = CString::new(c.as_bytes()).map_err(invalid_input)?;
                fd = openat_dir(fd.as_raw_fd(), &c, false)?;
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
    let s = cstr(src_name)?;
    let d = cstr(dst)?;
    // SAFETY: valid descriptor and C strings.
    check(unsafe {
        libc::linkat(
            src_dir.as_raw_fd(),
            s.as_ptr(),
            libc::AT_FDCWD,
            d.as_ptr(),
            0,
        )
    })
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
            self.root_fd = Some(openat_dir(libc::AT_FDCWD, &cstr(&self.root)?, true)?);
        }
        for c in &comps[keep..] {
            let parent = match self.stack.last() {
                Some((_, fd)) => fd.as_raw_fd(),
                None => self.root_fd.as_ref().expect("opened above").as_raw_fd(),
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

/// `openat(dir, name, flags | O_CLOEXEC)`; `dir` may be `AT_FDCWD`.
pub(crate) fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: valid C string; the returned descriptor is owned by us.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd >= 0 {
            // SAFETY: `fd` is a fresh descriptor we own.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: like `lstat`, relative to `dir`.
pub(crate) fn lstat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid C string and a buffer of the right type.
    check(unsafe {
        libc::fstatat(
            dir,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded, so it filled `st`.
    Ok(unsafe { st.assume_init() })
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a buffer of the right type; a bad descriptor is an error.
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it filled `st`.
    Ok(unsafe { st.assume_init() })
}

/// `readlinkat(dir, name)`: a symlink's target, of any length.
pub(crate) fn readlink_at(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C string; `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // A full buffer may mean a truncated target: try again with more room.
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// Reads all entries of the directory open as `dir` with `getdents64`,
/// using `buf` (at least a few KiB) as scratch, and calls `f` with each
/// name (NUL included) and its `d_type` (`DT_UNKNOWN` on file systems that
/// do not say), except `.` and `..`, in the order the file system returns
/// them.
pub(crate) fn read_dir_at(
    dir: &OwnedFd,
    buf: &mut [u8],
    mut f: impl FnMut(&[u8], u8),
) -> io::Result<()> {
    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    const NAME: usize = 19;
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the kernel
        // writes at most that many.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        let mut records = &buf[..n as usize];
        while records.len() > NAME {
            let reclen = usize::from(u16::from_ne_bytes([records[16], records[17]]));
            if reclen <= NAME || reclen > records.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed directory entry from getdents64",
                ));
            }
            let field = &records[NAME..reclen];
            let Some(end) = field.iter().position(|&b| b == 0) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unterminated name from getdents64",
                ));
            };
            let name = &field[..=end];
            if name != b".\0" && name != b"..\0" {
                f(name, records[18]);
            }
            records = &records[reclen..];
        }
    }
}

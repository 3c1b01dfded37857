//! Uploads' temporary files: each is created under an exclusive `flock`
//! held until it is published or discarded, so a reopen removes only the
//! files of dead writers; and the file identity that keeps removals from
//! touching a file that replaced the one we looked at.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::Shared;
use crate::error::{Error, Result};

/// Prefix of temporary upload files in `{root}/tmp/`.
const TEMP_PREFIX: &str = "cachew-tmp-";

/// Which file a path named when we looked: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId(u64, u64);

impl FileId {
    pub(super) fn of(meta: &fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId(meta.dev(), meta.ino())
    }
}

/// Takes an exclusive, non-blocking `flock`; `Ok(false)` if someone holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: `flock` only reads the descriptor, which `file` keeps open for
    // the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Whether `path` still names the open `file`.
fn names(path: &Path, file: &File) -> io::Result<bool> {
    let on_disk = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(FileId::of(&on_disk) == FileId::of(&file.metadata()?))
}

/// Removes `path` if it still is the file `expected`.
pub(super) fn remove_if_same(path: &Path, expected: FileId) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if FileId::of(&meta) == expected => match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl Shared {
    /// Creates and locks a fresh temporary file.
    pub(super) fn create_temp(&self) -> Result<(File, PathBuf)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        for _ in 0..16 {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let path = self.tmp.join(format!(
                "{TEMP_PREFIX}{}-{nanos}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let file = match fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create temporary file", path, e)),
            };
            let locked = try_lock(&file).map_err(|e| Error::io("lock temporary file", &path, e))?;
            // Between creating and locking, a cleaner in another process may
            // have taken the file for abandoned and removed it: start over.
            if locked && names(&path, &file).unwrap_or(false) {
                return Ok((file, path));
            }
        }
        Err(Error::Backend(format!(
            "could not create a temporary file in {}",
            self.tmp.display()
        )))
    }
}

/// Removes temporary files whose writer is gone; returns how many.
pub(super) fn clean_temp(tmp: &Path) -> Result<usize> {
    let entries = fs::read_dir(tmp).map_err(|e| Error::io("read temporary directory", tmp, e))?;
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read temporary directory", tmp, e))?;
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        let file = match File::open(&path) {
            Ok(file) => file,
            // Published or discarded meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open temporary file", path, e)),
        };
        let abandoned = try_lock(&file).map_err(|e| Error::io("lock temporary file", &path, e))?;
        // Holding the lock, nobody can be writing or publishing this file.
        if abandoned && names(&path, &file).unwrap_or(false) {
            fs::remove_file(&path).map_err(|e| Error::io("remove temporary file", &path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

//! Writing `cachew get -o PATH`: a failed or interrupted download leaves
//! PATH as it was.
//!
//! A regular file, or a name that does not exist yet, is written to a
//! temporary file beside it, synced, and renamed over it only once the whole
//! body has arrived: the old file is never lost and a partial one never looks
//! whole. A symlink is followed first, as `os.Create` does in the Go CLI, so
//! the file it points to is the one replaced. Anything else PATH names (a
//! device such as `/dev/null`, a FIFO, a terminal) is written in place, not
//! synced (they refuse `fsync`) and never removed: removing PATH after a
//! failure, as this command once did, deleted `/dev/null` when run as root.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use cachew_client::Error;
use tokio::io::{AsyncRead, AsyncWriteExt};

/// Copies `body` to `path` under the rules above.
pub(crate) async fn write_to<R>(path: &Path, body: &mut R) -> Result<(), Error>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let target = match tokio::fs::canonicalize(path).await {
        Ok(resolved) => resolved,
        Err(e) if e.kind() == ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(Error::io("resolve", path, e)),
    };
    let existing = match tokio::fs::metadata(&target).await {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("inspect", path, e)),
    };
    match existing {
        Some(meta) if meta.is_dir() => Err(Error::io(
            "write",
            path,
            std::io::Error::new(
                ErrorKind::IsADirectory,
                "is a directory; -o needs a file name",
            ),
        )),
        Some(meta) if !meta.is_file() => {
            let mut out = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .await
                .map_err(|e| Error::io("open", path, e))?;
            tokio::io::copy(body, &mut out).await?;
            out.flush().await.map_err(|e| Error::io("write", path, e))?;
            Ok(())
        }
        regular => replace(path, &target, regular.map(|m| m.permissions()), body).await,
    }
}

/// Writes a temporary file beside `target` and renames it over `target`.
async fn replace<R>(
    path: &Path,
    target: &Path,
    permissions: Option<std::fs::Permissions>,
    body: &mut R,
) -> Result<(), Error>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let name = target.file_name().ok_or_else(|| {
        Error::io(
            "write",
            path,
            std::io::Error::new(ErrorKind::InvalidInput, "-o needs a file name"),
        )
    })?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".cachew-get-{}.part", std::process::id()));
    let temp = Temp(dir.join(temp_name));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.0)
        .await
        .map_err(|e| Error::io("create", &temp.0, e))?;
    // The old file's mode carries over, as `os.Create` keeps it.
    if let Some(permissions) = permissions {
        file.set_permissions(permissions)
            .await
            .map_err(|e| Error::io("set permissions of", &temp.0, e))?;
    }
    tokio::io::copy(body, &mut file).await?;
    file.sync_all()
        .await
        .map_err(|e| Error::io("sync", &temp.0, e))?;
    drop(file);
    tokio::fs::rename(&temp.0, target)
        .await
        .map_err(|e| Error::io("rename into place", path, e))?;
    std::mem::forget(temp);
    Ok(())
}

/// The temporary file, removed unless it was renamed into place (also when
/// the download's future is dropped by a signal).
struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body whose connection breaks after `prefix`.
    fn failing(prefix: &'static [u8]) -> impl AsyncRead + Unpin {
        use tokio::io::AsyncReadExt as _;
        prefix.chain(Broken)
    }

    struct Broken;

    impl AsyncRead for Broken {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Err(std::io::Error::new(
                ErrorKind::ConnectionReset,
                "server went away",
            )))
        }
    }

    #[tokio::test]
    async fn a_failed_download_keeps_the_old_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old contents").unwrap();
        let err = write_to(&path, &mut failing(b"new par")).await.unwrap_err();
        assert!(err.to_string().contains("server went away"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the old file: {names:?}");
    }

    #[tokio::test]
    async fn a_failed_download_to_a_new_name_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.bin");
        write_to(&path, &mut failing(b"part")).await.unwrap_err();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_download_replaces_the_file_a_symlink_names_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, b"old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("real", &link).unwrap();
        write_to(&link, &mut &b"new"[..]).await.unwrap();
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        let mode = std::fs::metadata(&real).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[tokio::test]
    async fn a_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_to(dir.path(), &mut &b"x"[..]).await.unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
    }

    /// A FIFO (as `/dev/null` or a terminal, not a regular file) is written
    /// in place, and survives a failed download.
    #[tokio::test]
    async fn a_fifo_is_written_in_place_and_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_to(&fifo, &mut &b"through the pipe"[..])
            .await
            .unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");

        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_to(&fifo, &mut failing(b"half")).await.unwrap_err();
        assert_eq!(reader.join().unwrap(), b"half");
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        use std::os::unix::fs::FileTypeExt as _;
        assert!(kind.is_fifo(), "the FIFO is still there");
    }
}

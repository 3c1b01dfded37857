//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while archiving or extracting.
///
/// Messages name the path or archive entry involved and what was expected, so
/// they can be shown to a user as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `archive` was called with an empty include list.
    #[error("no include paths given: at least one path to archive is required")]
    NoIncludePaths,
    /// An include path does not exist under the base directory.
    #[error("include path `{path}` does not exist under `{base}`")]
    IncludeNotFound {
        /// The include path as given.
        path: PathBuf,
        /// The base directory.
        base: PathBuf,
    },
    /// An include path is absolute or climbs out of the base directory.
    #[error("include path `{path}` must be relative to the base directory and stay inside it")]
    InvalidIncludePath {
        /// The include path as given.
        path: PathBuf,
    },
    /// A file system operation on a named path failed.
    #[error("cannot {op} `{path}`: {error}")]
    Io {
        /// What was being done, e.g. "open", "create directory".
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error. It is part of the message, so it is not
        /// also returned by `source()`: a printed chain says it once.
        error: io::Error,
    },
    /// Reading the compressed input stream failed or it did not decompress.
    /// The I/O error is in the message (and not `source()`).
    #[error("cannot read the archive stream: {0}")]
    Read(io::Error),
    /// Writing the compressed output stream failed; the I/O error is in
    /// the message (and not `source()`).
    #[error("cannot write the archive stream: {0}")]
    Write(io::Error),
    /// The stream ended before the tar end-of-archive marker.
    #[error("archive is truncated at byte {offset}: expected {expected}")]
    Truncated {
        /// Offset in the uncompressed tar stream.
        offset: u64,
        /// What the reader was waiting for.
        expected: &'static str,
    },
    /// The tar stream is malformed.
    #[error("corrupt archive at byte {offset}: {reason}")]
    Corrupt {
        /// Offset in the uncompressed tar stream.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An entry would be written outside the target directory, or is unsafe
    /// in another way (see the crate documentation for the policy).
    #[error("archive entry `{entry}` {reason}")]
    UnsafeEntry {
        /// The entry name, lossily decoded.
        entry: String,
        /// Why it was refused, e.g. "escapes the target directory".
        reason: String,
    },
    /// An entry uses a tar feature this crate does not extract.
    #[error("archive entry `{entry}` uses an unsupported feature: {what}")]
    Unsupported {
        /// The entry name, lossily decoded.
        entry: String,
        /// The feature.
        what: String,
    },
    /// Something in the target is in the way and will not be replaced.
    #[error("cannot extract `{path}`: {reason}")]
    Conflict {
        /// The path in the target.
        path: PathBuf,
        /// What is in the way.
        reason: &'static str,
    },
    /// A file changed size while it was being archived.
    #[error(
        "file `{path}` changed while being archived: expected {expected} bytes, read {actual}"
    )]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// The size recorded in the tar header.
        expected: u64,
        /// What was read.
        actual: u64,
    },
    /// The operation was cancelled (its future was dropped or the consumer went away).
    #[error("archive operation cancelled")]
    Cancelled,
    /// A worker thread panicked.
    #[error("archive worker thread panicked: {0}")]
    Panicked(String),
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            error: source,
        }
    }

    pub(crate) fn unsafe_entry(entry: &[u8], reason: impl Into<String>) -> Self {
        Error::UnsafeEntry {
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_small_send_and_sync() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Error>();
        assert!(
            std::mem::size_of::<Error>() <= 64,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn messages_name_the_path_and_expectation() {
        let e = Error::IncludeNotFound {
            path: "foo".into(),
            base: "/base".into(),
        };
        assert_eq!(
            e.to_string(),
            "include path `foo` does not exist under `/base`"
        );
        let e = Error::unsafe_entry(b"../x", "escapes the target directory");
        assert_eq!(
            e.to_string(),
            "archive entry `../x` escapes the target directory"
        );
    }
}

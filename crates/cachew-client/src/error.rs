use std::path::PathBuf;

use cachew_proto::ProtoError;
use http::HeaderMap;

/// What went wrong, from the caller's point of view.
///
/// Variants say what happened to the request (`NotFound`, `NotModified`, …),
/// not which layer noticed. Lower crates keep their own error types and
/// convert with `From`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No object under this key (404).
    #[error("object not found")]
    NotFound,
    /// An `If-None-Match` condition matched (304); carries the object's headers.
    #[error("object not modified")]
    NotModified {
        /// The stored headers of the object.
        headers: Box<HeaderMap>,
    },
    /// An `If-Match` condition failed (412).
    #[error("precondition failed: the object's ETag does not match")]
    PreconditionFailed,
    /// The requested range starts beyond the object (416).
    #[error("range not satisfiable (object size {size:?})")]
    RangeNotSatisfiable {
        /// The object's size, when known (`Content-Range: bytes */size`).
        size: Option<u64>,
    },
    /// The backend cannot report statistics (501 from a server).
    #[error("cache statistics are unavailable")]
    StatsUnavailable,
    /// A git bundle request found nothing to add (204).
    #[error("already up to date")]
    UpToDate,
    /// The server answered with an unexpected status.
    #[error("server returned {code}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        /// The HTTP status code.
        code: u16,
        /// The server's short error message (its body), if any.
        message: String,
    },
    /// A write was aborted by its caller; the object was discarded.
    #[error("write aborted: {cause}")]
    Aborted {
        /// Why the caller aborted.
        cause: String,
    },
    /// The writer was already committed or aborted.
    #[error("the cache writer is already {0}")]
    WriterClosed(&'static str),
    /// Archiving or extracting failed (a corrupt or hostile archive, a file
    /// that could not be read or written).
    #[error(transparent)]
    Archive(#[from] cachew_archive::Error),
    /// Input that breaks a protocol rule (namespace, ETag, duration, URL).
    #[error(transparent)]
    Protocol(#[from] ProtoError),
    /// An argument that is invalid for this operation.
    #[error("{0}")]
    InvalidInput(String),
    /// A file-system operation failed.
    #[error("{op} {}: {error}", cachew_archive::escape_path(path))]
    Io {
        /// What was being done, e.g. "create directory".
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error. It is part of the message, so it is not
        /// also returned by `source()`: a printed chain says it once.
        error: std::io::Error,
    },
    /// An I/O error without a specific path (a stream, a pipe); it is in
    /// the message (and not `source()`).
    #[error("I/O error: {0}")]
    Stream(std::io::Error),
    /// A backend-specific failure described in text.
    #[error("{0}")]
    Backend(String),
    /// A restored tree does not have the digest saved with the object, or
    /// the object announces a digest trailer it does not have.
    #[error("{0}")]
    Verification(String),
    /// The HTTP exchange with a remote server failed: connect, timeout,
    /// broken connection. Its text names the server (never credentials) and
    /// the underlying causes, so it is not repeated as `source()`;
    /// [`is_connect`](cachew_transport::Error::is_connect) and
    /// [`is_timeout`](cachew_transport::Error::is_timeout) on the inner
    /// error tell the cases apart.
    #[error("{}", display_transport(.0))]
    Transport(cachew_transport::Error),
}

impl From<cachew_transport::Error> for Error {
    fn from(e: cachew_transport::Error) -> Error {
        Error::Transport(e)
    }
}

/// The transport error with its causes, so "failed to connect to URL" also
/// says why (e.g. "Connection refused").
fn display_transport(err: &cachew_transport::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Error {
    /// Whether this says the object itself is bad: a corrupt, truncated,
    /// hostile or oversized archive, or a failed verification. A restore
    /// tries the next fallback key after such an error.
    pub fn is_corrupt_object(&self) -> bool {
        use cachew_archive::Error as A;
        match self {
            Error::Verification(_) => true,
            Error::Archive(a) => matches!(
                a,
                A::Read(_)
                    | A::Truncated { .. }
                    | A::Corrupt { .. }
                    | A::UnsafeEntry { .. }
                    | A::Unsupported { .. }
                    | A::LimitExceeded { .. }
            ),
            _ => false,
        }
    }

    /// A file-system error naming the operation and the path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            error: source,
        }
    }

    /// Whether this is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound)
    }

    /// The HTTP status this error corresponds to, if it has one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::NotFound => Some(404),
            Error::NotModified { .. } => Some(304),
            Error::PreconditionFailed => Some(412),
            Error::RangeNotSatisfiable { .. } => Some(416),
            Error::StatsUnavailable => Some(501),
            Error::UpToDate => Some(204),
            Error::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    /// Unwraps an [`Error`] that travelled inside an `io::Error` (a cache
    /// writer reports e.g. the server's 403 through `AsyncWrite`, which can
    /// only return `io::Error`), so callers keep the typed status; any other
    /// I/O error becomes [`Error::Stream`].
    fn from(e: std::io::Error) -> Error {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(Ok(inner)) = e.into_inner().map(|inner| inner.downcast::<Error>()) {
                return *inner;
            }
            // Unreachable: the check above saw an Error inside.
            return Error::Backend("I/O error carrying a cache error".into());
        }
        Error::Stream(e)
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_give_back_a_carried_cache_error() {
        let carried = std::io::Error::other(Error::Status {
            code: 403,
            message: "denied".into(),
        });
        match Error::from(carried) {
            Error::Status { code, message } => {
                assert_eq!(code, 403);
                assert_eq!(message, "denied");
            }
            other => panic!("expected the carried 403, got {other:?}"),
        }
        let plain = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
        assert!(
            matches!(Error::from(plain), Error::Stream(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
        );
    }
}

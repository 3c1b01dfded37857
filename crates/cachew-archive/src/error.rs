//! The crate's error type, and [`escape_name`], the one function that makes
//! archive-controlled bytes (entry names, link targets, paths derived from
//! them) safe to put in a message.

use std::fmt::Write as _;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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
    #[error("cannot {op} `{}`: {error}", escape_path(path))]
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
    #[error("cannot extract `{}`: {reason}", escape_path(path))]
    Conflict {
        /// The path in the target.
        path: PathBuf,
        /// What is in the way.
        reason: &'static str,
    },
    /// A file changed size while it was being archived.
    #[error(
        "file `{}` changed while being archived: expected {expected} bytes, read {actual}",
        escape_path(path)
    )]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// The size recorded in the tar header.
        expected: u64,
        /// What was read.
        actual: u64,
    },
    /// The archive goes beyond a limit that keeps a hostile archive from
    /// exhausting memory, disk or stack: [`ExtractOptions::max_size`]
    /// (a zstd bomb), the name depth limit, or the bookkeeping budget (see
    /// the crate docs, "Extraction policy").
    ///
    /// [`ExtractOptions::max_size`]: crate::ExtractOptions::max_size
    #[error("archive exceeds a limit: {what}")]
    LimitExceeded {
        /// Which limit, with the numbers, e.g. "unpacked size over 1000 bytes".
        what: String,
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
            entry: escape_name(entry),
            reason: reason.into(),
        }
    }

    pub(crate) fn limit(what: impl Into<String>) -> Self {
        Error::LimitExceeded { what: what.into() }
    }
}

/// Makes an archive-controlled name printable: every byte that could move
/// the cursor, ring the bell, rewrite a terminal line or a CI log (control
/// characters such as ESC, CR, LF, NUL, DEL and the C1 range) or reorder
/// text (Unicode bidirectional overrides) is shown as an escape (`\x1b`,
/// `\r`, `\n`, `\0`, `\u{202e}`), invalid UTF-8 as `\xNN`, and `\`
/// itself as `\\`, so the escaped text names exactly one byte string.
/// Every error message and summary name that contains such bytes goes
/// through here.
pub fn escape_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\0' => out.push_str("\\0"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if (0x80..0xa0).contains(&(c as u32))
                    || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
                {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// [`escape_name`] for a path.
pub fn escape_path(path: &Path) -> String {
    escape_name(path.as_os_str().as_bytes())
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

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape_name(b"plain/name.txt"), "plain/name.txt");
        assert_eq!(escape_name("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(escape_name(b"a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape_name(b"a\rb\nc\0d\te\x7f"), "a\\rb\\nc\\0d\\te\\x7f");
        assert_eq!(escape_name(b"bad\xff\xfeutf8"), "bad\\xff\\xfeutf8");
        assert_eq!(escape_name(b"back\\slash"), "back\\\\slash");
        assert_eq!(
            escape_name("\u{202e}txt.exe".as_bytes()),
            "\\u{202e}txt.exe"
        );
        assert_eq!(escape_name("\u{85}".as_bytes()), "\\u{85}");
        // Escaping is injective: distinct names never print the same.
        assert_ne!(escape_name(b"\\x1b"), escape_name(b"\x1b"));
        let e = Error::unsafe_entry(b"/\x1b]0;pwned\x07\n", "is an absolute path");
        let text = e.to_string();
        assert!(!text.bytes().any(|b| b < 0x20), "{text:?}");
        let e = Error::io(
            "create file",
            Path::new("t/\r\x1bx"),
            io::ErrorKind::Other.into(),
        );
        assert!(!e.to_string().bytes().any(|b| b < 0x20), "{e}");
    }
}

//! Tree digests: a blake3 fingerprint of a directory tree, as saved.
//!
//! The digest itself — what it covers, and the trailer frame that carries it
//! at the end of an archive — is defined in [`cachew_archive::digest`];
//! this module re-exports it and adds what the cache protocol needs.
//!
//! [`save`](crate::save()) has the archiver compute the digest in the same
//! pass that reads the files and append it as the archive's trailer (a zstd
//! skippable frame every decoder skips), and stores the include paths and
//! exclude patterns it used in the [`TREE_PATHS`] and [`TREE_EXCLUDES`]
//! headers, which also tell a reader that the object has a trailer. That
//! powers two checks: `save --skip-unchanged` (reads the stored object's
//! last [`TRAILER_LEN`] bytes; same digest as the tree → no upload) and
//! `restore --verify` (the restored tree must have the digest in the
//! trailer).
//!
//! Why a trailer and not a header: a header has to be sent before the body,
//! so it would need a second pass over every file before the upload could
//! start — on a tree of 52,000 small files that pass cost more than a third
//! of the save's time (`docs/benchmarks.md`).

use std::path::Path;

use crate::{Error, Result};

pub use cachew_archive::digest::{
    DigestSummary, ParseDigestError, TreeDigest, TRAILER_LEN, TRAILER_MAGIC,
};
pub use cachew_proto::header::{TREE_EXCLUDES, TREE_PATHS};

/// Computes the digest of `include_paths` under `base_dir`, leaving out
/// entries matched by `exclude_patterns` (GNU tar `--exclude` semantics),
/// hashing file contents on `threads` threads (0 = one per core). See
/// [`cachew_archive::tree_digest`].
///
/// Blocking: call it from `spawn_blocking` in async code. Errors if an
/// include path is missing or a file cannot be read.
pub fn tree_digest<P: AsRef<Path>, S: AsRef<str>>(
    base_dir: &Path,
    include_paths: &[P],
    exclude_patterns: &[S],
    threads: usize,
) -> Result<DigestSummary> {
    cachew_archive::tree_digest(base_dir, include_paths, exclude_patterns, threads)
        .map_err(crate::save::from_archive)
}

/// [`tree_digest`] on a blocking thread, for async code.
pub(crate) async fn tree_digest_async(
    base_dir: std::path::PathBuf,
    include_paths: Vec<std::path::PathBuf>,
    exclude_patterns: Vec<String>,
    threads: usize,
) -> Result<TreeDigest> {
    let summary = tokio::task::spawn_blocking(move || {
        tree_digest(&base_dir, &include_paths, &exclude_patterns, threads)
    })
    .await
    .map_err(|e| Error::Backend(format!("tree digest task failed: {e}")))??;
    Ok(summary.digest)
}

impl From<ParseDigestError> for Error {
    fn from(e: ParseDigestError) -> Error {
        Error::InvalidInput(e.to_string())
    }
}

/// Encodes a list of paths or patterns for [`TREE_PATHS`] and
/// [`TREE_EXCLUDES`]: bytes outside `[A-Za-z0-9._/*?-]` become `%XX`,
/// items are separated by single spaces.
pub fn encode_list<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
{
    let mut out = String::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        for &b in item.as_ref() {
            if b.is_ascii_alphanumeric() || b"._/*?-".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Decodes [`encode_list`]'s output.
pub fn decode_list(text: &str) -> Result<Vec<Vec<u8>>> {
    let bad = || Error::InvalidInput(format!("malformed path list header {text:?}"));
    let mut items = Vec::new();
    for part in text.split(' ').filter(|p| !p.is_empty()) {
        let mut out = Vec::with_capacity(part.len());
        let bytes = part.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        items.push(out);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_encoding_round_trips() {
        let items: Vec<&[u8]> = vec![b".", b"a b/%c", b"\xff*.o", b"src/x"];
        let text = encode_list(&items);
        assert!(!text.contains("  "));
        assert_eq!(text, ". a%20b/%25c %FF*.o src/x");
        let back = decode_list(&text).unwrap();
        assert_eq!(back, items.iter().map(|i| i.to_vec()).collect::<Vec<_>>());
        assert!(decode_list("a%2").is_err());
    }
}

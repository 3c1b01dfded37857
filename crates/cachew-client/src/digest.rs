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
pub use cachew_proto::header::{decode_list, encode_list, TREE_EXCLUDES, TREE_PATHS};

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

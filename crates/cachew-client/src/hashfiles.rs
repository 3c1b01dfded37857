//! Keys from files: Go's `HashFiles` (`PROTOCOL.md` §1).
//!
//! Patterns use doublestar syntax through the [`glob`] crate, whose `**`
//! matches zero or more whole path segments (`**/go.sum` matches `go.sum`
//! and `a/b/go.sum`) and whose `*` matches names starting with a dot, as
//! doublestar's does.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Key, Result};

/// Computes the key of the regular files matched by `patterns`, exactly as
/// the Go client's `HashFiles` does (`PROTOCOL.md` §1).
///
/// Relative patterns are resolved against `base_dir` (`None` = the current
/// directory) and the matched paths are hashed relative to it, so the key
/// does not depend on where the checkout lives. Absolute patterns hash
/// absolute paths. Symlinks, directories and other non-regular matches are
/// skipped; matches are cleaned (`./a//b` → `a/b`), de-duplicated and
/// sorted bytewise; the digest is SHA-256 over `path, 0x00, contents, 0x00`
/// for each.
///
/// No pattern, an invalid pattern, or no regular file matched at all is an
/// error ([`Error::InvalidInput`]), never a constant key.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// std::fs::create_dir(dir.path().join("a")).unwrap();
/// std::fs::write(dir.path().join("go.sum"), "y\n").unwrap();
/// std::fs::write(dir.path().join("a/go.sum"), "x\n").unwrap();
/// let key = cachew_client::hash_files(&["**/go.sum"], Some(dir.path())).unwrap();
/// assert_eq!(
///     key.to_string(),
///     "9e49419119676ac6fdc8ad5e3aac5edc4d28fb194bef8fc7ef736a0622caeda0"
/// );
/// ```
pub fn hash_files<S: AsRef<str>>(patterns: &[S], base_dir: Option<&Path>) -> Result<Key> {
    let files = matched_files(patterns, base_dir)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    for (name, path) in &files {
        hasher.update(name);
        hasher.update([0u8]);
        let mut file = std::fs::File::open(path).map_err(|e| Error::io("open", path.clone(), e))?;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| Error::io("read", path.clone(), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        hasher.update([0u8]);
    }
    Ok(Key::from_bytes(hasher.finalize().into()))
}

/// The sorted, de-duplicated regular files matched by `patterns`: the name
/// that is hashed and the path to read.
pub(crate) fn matched_files<S: AsRef<str>>(
    patterns: &[S],
    base_dir: Option<&Path>,
) -> Result<Vec<(Vec<u8>, PathBuf)>> {
    if patterns.is_empty() {
        return Err(Error::InvalidInput(
            "no file patterns given: at least one glob is required to compute a key".into(),
        ));
    }
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut found: BTreeSet<Vec<u8>> = BTreeSet::new();
    for pattern in patterns {
        let pattern = pattern.as_ref();
        if pattern.is_empty() {
            return Err(Error::InvalidInput("empty file pattern".into()));
        }
        let absolute = Path::new(pattern).is_absolute();
        // A relative pattern is resolved against the base directory; the
        // base is escaped so that its own characters are taken literally.
        let (full, prefix) = match base_dir {
            Some(base) if !absolute => {
                let base = base.to_str().ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "base directory {} is not valid UTF-8",
                        base.display()
                    ))
                })?;
                let escaped = glob::Pattern::escape(base.trim_end_matches('/'));
                let escaped = if escaped.is_empty() {
                    "/".into()
                } else {
                    escaped
                };
                (format!("{escaped}/{pattern}"), Some(PathBuf::from(base)))
            }
            _ => (pattern.to_owned(), None),
        };
        let paths = glob::glob_with(&full, options)
            .map_err(|e| Error::InvalidInput(format!("invalid file pattern {pattern:?}: {e}")))?;
        // Unreadable directories are skipped, as doublestar skips them.
        for path in paths.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.file_type().is_file() {
                continue;
            }
            let rel = match &prefix {
                Some(base) => match path.strip_prefix(base) {
                    Ok(rel) => rel.to_path_buf(),
                    Err(_) => path.clone(),
                },
                None => path.clone(),
            };
            found.insert(clean(&rel).into_os_string().into_vec());
        }
    }
    if found.is_empty() {
        let list: Vec<&str> = patterns.iter().map(AsRef::as_ref).collect();
        return Err(Error::InvalidInput(format!(
            "no regular files match {list:?}: refusing to compute a key from nothing"
        )));
    }
    Ok(found
        .into_iter()
        .map(|name| {
            let rel = PathBuf::from(std::ffi::OsStr::from_bytes(&name));
            let path = match base_dir {
                Some(base) if rel.is_relative() => base.join(&rel),
                _ => rel,
            };
            (name, path)
        })
        .collect())
}

/// Lexically cleans a path as Go's `filepath.Clean` does: no `.` components,
/// no repeated separators, `..` folded where possible.
pub(crate) fn clean(path: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("go.sum"), "y\n").unwrap();
        fs::write(dir.path().join("a/go.sum"), "x\n").unwrap();
        dir
    }

    #[test]
    fn protocol_vector() {
        let dir = tree();
        let key = hash_files(&["**/go.sum"], Some(dir.path())).unwrap();
        assert_eq!(
            key.to_string(),
            "9e49419119676ac6fdc8ad5e3aac5edc4d28fb194bef8fc7ef736a0622caeda0"
        );
        // Overlapping patterns and `./` spellings de-duplicate to the same key.
        let again = hash_files(&["./**/go.sum", "go.sum", "a//go.sum"], Some(dir.path())).unwrap();
        assert_eq!(again, key);
    }

    #[test]
    fn digest_layout_is_path_nul_contents_nul() {
        let dir = tree();
        let key = hash_files(&["**/go.sum"], Some(dir.path())).unwrap();
        let expected = Sha256::digest(b"a/go.sum\0x\n\0go.sum\0y\n\0");
        assert_eq!(key.as_bytes(), expected.as_slice());
    }

    #[test]
    fn zero_depth_and_deep_matches() {
        let dir = tree();
        fs::write(dir.path().join("a/b/go.sum"), "z\n").unwrap();
        let files = matched_files(&["**/go.sum"], Some(dir.path())).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|(n, _)| String::from_utf8(n.clone()).unwrap())
            .collect();
        assert_eq!(names, ["a/b/go.sum", "a/go.sum", "go.sum"]);
    }

    #[test]
    fn symlinks_and_directories_are_skipped() {
        let dir = tree();
        std::os::unix::fs::symlink("go.sum", dir.path().join("link.sum")).unwrap();
        fs::create_dir(dir.path().join("dir.sum")).unwrap();
        let files = matched_files(&["*.sum"], Some(dir.path())).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, b"go.sum");
    }

    #[test]
    fn nothing_matched_or_no_pattern_is_an_error() {
        let dir = tree();
        let err = hash_files(&["**/Cargo.lock"], Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("no regular files match"), "{err}");
        let err = hash_files::<&str>(&[], Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("no file patterns"), "{err}");
        // Only a symlink matches: still nothing.
        std::os::unix::fs::symlink("go.sum", dir.path().join("only.link")).unwrap();
        assert!(hash_files(&["*.link"], Some(dir.path())).is_err());
    }

    #[test]
    fn absolute_patterns_hash_absolute_paths() {
        let dir = tree();
        let pattern = format!("{}/go.sum", dir.path().display());
        let key = hash_files(&[pattern.as_str()], None).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(clean(&dir.path().join("go.sum")).as_os_str().as_bytes());
        expected.extend_from_slice(b"\0y\n\0");
        assert_eq!(key.as_bytes(), Sha256::digest(&expected).as_slice());
    }

    #[test]
    fn contents_change_the_key() {
        let dir = tree();
        let before = hash_files(&["**/go.sum"], Some(dir.path())).unwrap();
        fs::write(dir.path().join("a/go.sum"), "changed\n").unwrap();
        let after = hash_files(&["**/go.sum"], Some(dir.path())).unwrap();
        assert_ne!(before, after);
    }

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("./a//b", "a/b"),
            ("a/./b/", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            (".", "."),
            ("/x/y", "/x/y"),
        ] {
            assert_eq!(clean(Path::new(input)), PathBuf::from(want), "{input}");
        }
    }
}

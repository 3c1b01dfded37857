//! Keys from files: Go's `HashFiles` (`PROTOCOL.md` §1).
//!
//! The Go `cachew` CLI globs `-H` patterns with bmatcuk/doublestar v4.10.0's
//! `FilepathGlob` (default options) and keys on the regular files found.
//! Keys must be identical, so [`doublestar`] reproduces that function's
//! behaviour, which is more than its documented syntax:
//!
//! - Syntax: `*` any run of characters within one path element; `?` one
//!   character; `[abc]`, `[a-z]`, `[!x]`/`[^x]` one character of a class;
//!   `{a,b}` alternatives, nestable, which may contain `/`; `\` makes the
//!   next character literal; `**` as a whole element matches zero or more
//!   elements (`**/go.sum` matches `go.sum` and `a/b/go.sum`), elsewhere it
//!   is `*` (`a**` is `a*`). Dot files match wildcards like any other name.
//!   Matching is case-sensitive and works on bytes (names need not be UTF-8).
//! - The pattern is first cleaned (`./a//b/../c` is `a/c`, lexically, even
//!   inside braces). Everything up to the last `/` before the first wildcard
//!   is a directory taken literally, so `src/**/*.rs` reads only `src`, and
//!   `../x/*` and `/abs/*` work. Relative patterns resolve against the
//!   current directory and yield relative paths; absolute ones yield absolute
//!   paths.
//! - Invalid: an unclosed `[` or `{`, an empty class `[]`, a `}` without its
//!   `{`, a trailing `\`. Such a pattern is an error, even where nothing would
//!   have matched. The empty pattern matches nothing (it is no error by itself).
//! - Symlinks: a symlink that matches is not hashed (only regular files are),
//!   but symlinked directories are followed wherever the walk descends,
//!   including by `**`, and files below them are hashed under the link's path.
//!   A symlink cycle is followed until the kernel refuses the path (`ELOOP`);
//!   with several cycles that would take forever, so after 2^22 directory
//!   reads for one pattern we stop with an error.
//! - Unreadable directories are skipped silently.
//! - Quirks kept for identical keys: a pattern without wildcards is looked up
//!   after removing only the backslashes before `*?[]{}`, so `go\.sum` names
//!   a file with a backslash while `*/go\.sum` matches `a/go.sum`; an empty
//!   last alternative is never tried while globbing (`go.sum{.orig,}` does
//!   not find `go.sum`, `go.sum{,.orig}` does); `a*{b,}` does not match `a`;
//!   in a pattern with no `**` before its last element, what earlier
//!   alternatives matched is searched as directories by later ones
//!   (`{a/b,c*/go.sum}` also yields `a/b/go.sum`). One quirk is not
//!   reproduced: doublestar can lose or add matches of such alternations
//!   depending on Go slice capacities (only with three or more
//!   alternatives, an earlier one matching a directory).
//!
//! Then, as `HashFiles` does: every match is cleaned and `lstat`ed (failure
//! is an error), non-regular files are dropped, duplicates removed, the rest
//! sorted bytewise and digested. `tests/doublestar_oracle.rs` checks all of
//! this against the real library.

mod doublestar;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Key, Result};

use doublestar::GlobError;

/// Computes the key of the regular files matched by `patterns`, exactly as
/// the Go client's `HashFiles` does (`PROTOCOL.md` §1, and the module
/// documentation for the matching rules).
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
/// let key = cachew_client::hash_files(&["**/{go.sum,yarn.lock}"], Some(dir.path())).unwrap();
/// assert_eq!(
///     key.to_string(),
///     "9e49419119676ac6fdc8ad5e3aac5edc4d28fb194bef8fc7ef736a0622caeda0"
/// );
/// ```
pub fn hash_files<S: AsRef<str>>(patterns: &[S], base_dir: Option<&Path>) -> Result<Key> {
    let files = matched(patterns, base_dir)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    for name in &files {
        let path = doublestar::os_path(base_dir, name);
        hasher.update(name);
        hasher.update([0u8]);
        let mut file =
            std::fs::File::open(&path).map_err(|e| Error::io("open", path.clone(), e))?;
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

/// The files [`hash_files`] would hash, in order, spelled as they are hashed:
/// relative to `base_dir` for relative patterns, absolute for absolute ones.
/// Useful to show what a key is made of.
pub fn matched_files<S: AsRef<str>>(
    patterns: &[S],
    base_dir: Option<&Path>,
) -> Result<Vec<PathBuf>> {
    Ok(matched(patterns, base_dir)?
        .into_iter()
        .map(|name| PathBuf::from(OsStr::from_bytes(&name)))
        .collect())
}

/// The sorted, de-duplicated, cleaned names of the regular files matched.
fn matched<S: AsRef<str>>(patterns: &[S], base_dir: Option<&Path>) -> Result<Vec<Vec<u8>>> {
    if patterns.is_empty() {
        return Err(Error::InvalidInput(
            "no file patterns given: at least one glob is required to compute a key".into(),
        ));
    }
    let mut found: BTreeSet<Vec<u8>> = BTreeSet::new();
    for pattern in patterns {
        let pattern = pattern.as_ref();
        let matches =
            doublestar::filepath_glob(pattern.as_bytes(), base_dir).map_err(|e| match e {
                GlobError::BadPattern => Error::InvalidInput(format!(
                    "invalid file pattern {pattern:?}: syntax error (an unclosed `[` or `{{`, \
                 an empty class `[]`, a `}}` without its `{{`, or a trailing `\\`)"
                )),
                GlobError::TooManyDirectories => Error::InvalidInput(format!(
                    "file pattern {pattern:?} reads too many directories: is there a cycle of \
                 symlinked directories? (they are followed, as the Go client does)"
                )),
            })?;
        for m in matches {
            let name = doublestar::clean(&m);
            let path = doublestar::os_path(base_dir, &name);
            let meta =
                std::fs::symlink_metadata(&path).map_err(|e| Error::io("stat", path.clone(), e))?;
            if meta.file_type().is_file() {
                found.insert(name);
            }
        }
    }
    if found.is_empty() {
        let list: Vec<&str> = patterns.iter().map(AsRef::as_ref).collect();
        return Err(Error::InvalidInput(format!(
            "no regular files match {list:?}: refusing to compute a key from nothing"
        )));
    }
    Ok(found.into_iter().collect())
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

    fn names(patterns: &[&str], dir: &Path) -> Vec<String> {
        matched_files(patterns, Some(dir))
            .unwrap()
            .into_iter()
            .map(|p| p.into_os_string().into_string().unwrap())
            .collect()
    }

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
        assert_eq!(
            names(&["**/go.sum"], dir.path()),
            ["a/b/go.sum", "a/go.sum", "go.sum"]
        );
    }

    #[test]
    fn symlinks_and_directories_are_skipped() {
        let dir = tree();
        std::os::unix::fs::symlink("go.sum", dir.path().join("link.sum")).unwrap();
        fs::create_dir(dir.path().join("dir.sum")).unwrap();
        assert_eq!(names(&["*.sum"], dir.path()), ["go.sum"]);
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
        expected.extend_from_slice(dir.path().join("go.sum").as_os_str().as_bytes());
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
            assert_eq!(
                doublestar::clean(input.as_bytes()),
                want.as_bytes(),
                "{input}"
            );
        }
    }

    /// doublestar's README examples and our quirks, pinned without Go. The
    /// expectations were taken from doublestar v4.10.0 itself
    /// (`tests/doublestar_oracle.rs` re-checks them where Go is installed).
    #[test]
    fn doublestar_table() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "grandparent/parent/child1",
            "grandparent/parent/child2",
            "alt/some",
            "alt/something",
            "alt/somethingnew",
            "path/to/x.txt",
            "path/to/sub/z.txt",
            "go.sum",
            "a/go.sum",
            "a/b/go.sum",
            "yarn.lock",
            ".hidden",
            "a/.env",
            "class/a",
            "class/b",
            "class/z",
            "class/1",
            "class/2",
            "class/5",
            "class/6",
            "class/7",
            "class/8",
            "class/9",
            "class/-",
        ] {
            fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            fs::write(root.join(f), f).unwrap();
        }
        fs::create_dir(root.join("links")).unwrap();
        std::os::unix::fs::symlink("../a", root.join("links/dir.link")).unwrap();
        std::os::unix::fs::symlink("../go.sum", root.join("links/file.link")).unwrap();
        let children: &[&str] = &["grandparent/parent/child1", "grandparent/parent/child2"];
        let table: &[(&str, &[&str])] = &[
            ("**/child*", children),
            ("grandparent/**/child?", children),
            ("**/parent/*", children),
            ("grandparent/**", children),
            // The trailing slash is cleaned away: files match too.
            ("grandparent/**/", children),
            // `**` not alone in its element is `*`.
            ("grandparent/parent/child**", children),
            ("path/to/**.txt", &["path/to/x.txt"]),
            ("path/to/**/*.txt", &["path/to/sub/z.txt", "path/to/x.txt"]),
            (
                "class/[abc123]",
                &["class/1", "class/2", "class/a", "class/b"],
            ),
            (
                "class/[a-z0-9]",
                &[
                    "class/1", "class/2", "class/5", "class/6", "class/7", "class/8", "class/9",
                    "class/a", "class/b", "class/z",
                ],
            ),
            (
                "class/[125-79]",
                &[
                    "class/1", "class/2", "class/5", "class/6", "class/7", "class/9",
                ],
            ),
            (
                "class/[^125-79]",
                &["class/-", "class/8", "class/a", "class/b", "class/z"],
            ),
            (
                "class/[!a-z]",
                &[
                    "class/-", "class/1", "class/2", "class/5", "class/6", "class/7", "class/8",
                    "class/9",
                ],
            ),
            // Globbing never tries an empty last alternative.
            ("alt/some{thing,}", &["alt/something"]),
            ("alt/some{,thing}", &["alt/some", "alt/something"]),
            ("alt/some{thing{new,},}", &["alt/somethingnew"]),
            (
                "**/{go.sum,yarn.lock}",
                &[
                    "a/b/go.sum",
                    "a/go.sum",
                    "go.sum",
                    "links/dir.link/b/go.sum",
                    "links/dir.link/go.sum",
                    "yarn.lock",
                ],
            ),
            // Symlinked directories are followed, symlinked files skipped.
            (
                "links/**",
                &[
                    "links/dir.link/.env",
                    "links/dir.link/b/go.sum",
                    "links/dir.link/go.sum",
                ],
            ),
            ("*/go\\.sum", &["a/go.sum"]),
            // Earlier alternatives' matches are searched by later ones.
            ("{a/b,c*/go.sum}", &["a/b/go.sum"]),
            ("*/.env", &["a/.env"]),
            (".*", &[".hidden"]),
        ];
        for (pattern, want) in table {
            assert_eq!(names(&[pattern], root), *want, "{pattern}");
        }
        for nothing in ["go\\.sum", "a*{b,}", "", "links/file.link", "nomatch/**"] {
            let err = hash_files(&[nothing], Some(root)).unwrap_err();
            assert!(
                err.to_string().contains("no regular files match"),
                "{nothing}: {err}"
            );
        }
        for invalid in ["[abc", "{a", "a}", "[]", "[!]", "a\\", "*/[", "x/{a,b"] {
            let err = hash_files(&[invalid, "go.sum"], Some(root)).unwrap_err();
            assert!(
                err.to_string().contains("invalid file pattern"),
                "{invalid}: {err}"
            );
        }
    }

    #[test]
    fn element_matcher() {
        use doublestar::match_element as m;
        for (pattern, name, want) in [
            ("*", ".hidden", true),
            ("a*", "a", true),
            ("a**", "abc", true),
            ("?", "ü", true),
            ("?", "ab", false),
            ("[a-c]", "b", true),
            ("[!a-c]", "b", false),
            ("[^a-c]", "d", true),
            ("[\\]]", "]", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("{a,b{c,d}}", "bd", true),
            ("some{thing,}", "some", true),
            ("a*{b,}", "a", false),
            ("a*{b,}", "ac", true),
        ] {
            assert_eq!(
                m(pattern.as_bytes(), name.as_bytes()),
                Ok(want),
                "{pattern} {name}"
            );
        }
        assert!(m(b"[", b"a").is_err());
        assert!(m(b"{a", b"a").is_err());
    }
}

//! What the commands print where scripts read it, in the Go CLI's words:
//! the status lines of `save` and `restore`, headers as `Name: value` with
//! Go's canonical names, and `No namespaces found`.
//!
//! Our own detail lines (sizes, rates, digests) come after Go's lines, never
//! instead of them, so a `grep 'Restored: '` written for the Go CLI keeps
//! matching. `--quiet` silences all of them; errors are never silenced.

use std::fmt::Write as _;
use std::path::Path;

use http::HeaderMap;

use crate::progress::Mode;

/// `Archiving DIR...`, before a save.
pub(crate) fn archiving(mode: Mode, dir: &Path) {
    mode.status(&format!("Archiving {}...", dir.display()));
}

/// `Saved: KEY`, after a save.
pub(crate) fn saved(mode: Mode, key_text: &str) {
    mode.status(&format!("Saved: {key_text}"));
}

/// `Restoring to DIR...`, before a restore.
pub(crate) fn restoring(mode: Mode, dir: &Path) {
    mode.status(&format!("Restoring to {}...", dir.display()));
}

/// `Restored: KEY`, after a hit.
pub(crate) fn restored(mode: Mode, key_text: &str) {
    mode.status(&format!("Restored: {key_text}"));
}

/// `Cache miss: KEY`, when nothing matched (exit 2).
pub(crate) fn miss(mode: Mode, key_text: &str) {
    mode.status(&format!("Cache miss: {key_text}"));
}

/// The text `namespaces` prints.
pub(crate) fn namespaces(names: &[String]) -> String {
    if names.is_empty() {
        return "No namespaces found\n".to_owned();
    }
    let mut out = String::new();
    for name in names {
        out.push_str(name);
        out.push('\n');
    }
    out
}

/// Headers as `Name: value` lines, one per value, with Go's canonical
/// names (`etag` is `Etag`, `x-build` is `X-Build`).
pub(crate) fn headers(map: &HeaderMap) -> String {
    let mut out = String::new();
    for (name, value) in map {
        let _ = writeln!(
            out,
            "{}: {}",
            canonical(name.as_str()),
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    out
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: the first letter and every
/// letter after a `-` upper case, the others lower case; a name with a byte
/// that is not a token character (e.g. a space) is left as it is.
pub(crate) fn canonical(name: &str) -> String {
    if !name.bytes().all(is_token_byte) {
        return name.to_owned();
    }
    let mut upper = true;
    name.bytes()
        .map(|b| {
            let c = if upper {
                b.to_ascii_uppercase()
            } else {
                b.to_ascii_lowercase()
            };
            upper = b == b'-';
            c as char
        })
        .collect()
}

/// RFC 9110 `tchar`, as Go's `validHeaderFieldByte`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_as_go() {
        for (raw, want) in [
            ("content-length", "Content-Length"),
            ("etag", "Etag"),
            ("ETAG", "Etag"),
            ("last-modified", "Last-Modified"),
            ("x-build", "X-Build"),
            ("x-cachew-tree-paths", "X-Cachew-Tree-Paths"),
            ("www-authenticate", "Www-Authenticate"),
            ("a--b", "A--B"),
            ("-x", "-X"),
            ("with space", "with space"),
            ("x_y", "X_y"),
        ] {
            assert_eq!(canonical(raw), want, "{raw}");
        }
    }

    #[test]
    fn header_lines_and_namespaces() {
        let mut map = HeaderMap::new();
        map.insert("etag", "\"abc\"".parse().unwrap());
        map.append("x-build", "1".parse().unwrap());
        map.append("x-build", "2".parse().unwrap());
        assert_eq!(headers(&map), "Etag: \"abc\"\nX-Build: 1\nX-Build: 2\n");
        assert_eq!(namespaces(&[]), "No namespaces found\n");
        assert_eq!(namespaces(&["a".into(), "b".into()]), "a\nb\n");
    }
}

//! Header names of the Cachew protocol and the header filter lists
//! (`PROTOCOL.md` §3–5).
//!
//! Names are lowercase, as HTTP/2 and the `http` crate spell them; compare
//! them case-insensitively.

use std::time::SystemTime;

use crate::{ProtoError, Reason};

/// The object's time to live on Create, in Go duration syntax.
pub const TIME_TO_LIVE: &str = "time-to-live";
/// The mirror's HEAD at snapshot time, on `/snapshot.tar.zst` responses.
pub const SNAPSHOT_COMMIT: &str = "x-cachew-snapshot-commit";
/// Where the delta bundle that brings a snapshot up to date can be fetched.
pub const BUNDLE_URL: &str = "x-cachew-bundle-url";
/// The include paths a tree digest covers: each path percent-encoded,
/// separated by single spaces. Written by cachew-rs on Save; its presence
/// says the archive ends with a tree digest trailer (a zstd skippable frame
/// every decoder skips; see `cachew_archive::digest`).
pub const TREE_PATHS: &str = "x-cachew-tree-paths";
/// The exclude patterns a tree digest honoured, encoded like [`TREE_PATHS`];
/// absent when there were none.
pub const TREE_EXCLUDES: &str = "x-cachew-tree-excludes";
/// `Content-Type` of saved directory archives.
pub const ARCHIVE_CONTENT_TYPE: &str = "application/zstd";

/// Headers the server strips before storing a Create's headers: transport
/// and request-control headers that describe one exchange, not the object.
pub const SERVER_FILTERED: &[&str] = &[
    "content-length",
    "date",
    "accept-encoding",
    "user-agent",
    "transfer-encoding",
    "time-to-live",
    "if-match",
    "if-none-match",
    "range",
    "if-range",
    "content-range",
];

/// Headers the client drops from Open/Stat responses before returning them
/// to callers.
pub const CLIENT_FILTERED: &[&str] = &[
    "date",
    "accept-encoding",
    "user-agent",
    "transfer-encoding",
    "time-to-live",
];

/// Whether the server must not store header `name` (case-insensitive).
pub fn is_server_filtered(name: &str) -> bool {
    SERVER_FILTERED.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Whether the client drops header `name` from what it returns (case-insensitive).
pub fn is_client_filtered(name: &str) -> bool {
    CLIENT_FILTERED.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// `Content-Disposition` for a saved directory whose base directory is
/// named `basename`: `attachment; filename="{basename}.tar.zst"`, quoted the
/// way Go's `%q` quotes.
pub fn archive_content_disposition(basename: &str) -> String {
    format!(
        "attachment; filename={}",
        go_quote(&format!("{basename}.tar.zst"))
    )
}

/// Quotes `s` as Go's `strconv.Quote` (and so `fmt`'s `%q`) does.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if !is_go_printable(c) => {
                let v = c as u32;
                if v < 0x10000 {
                    if v < 0x80 {
                        out.push_str(&format!("\\x{v:02x}"));
                    } else {
                        out.push_str(&format!("\\u{v:04x}"));
                    }
                } else {
                    out.push_str(&format!("\\U{v:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `strconv.IsPrint`: control and format
/// characters, separators other than the ASCII space, and unassigned or
/// private-use code points are escaped.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c as u32, 0xad | 0x600..=0x605 | 0x200b..=0x200f | 0x2028..=0x202e
            | 0x2060..=0x2064 | 0xfeff | 0xfff9..=0xfffb | 0xe000..=0xf8ff))
}

/// Formats an HTTP date (`Last-Modified`), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn format_http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Parses an HTTP date; `None` if it is not one.
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(value.trim()).ok()
}

/// `Content-Range` of a partial response: `bytes {start}-{end}/{size}`.
pub fn content_range(start: u64, len: u64, size: u64) -> String {
    format!("bytes {start}-{}/{size}", start + len - 1)
}

/// `Content-Range` of a 416 response: `bytes */{size}`.
pub fn unsatisfied_content_range(size: u64) -> String {
    format!("bytes */{size}")
}

/// A parsed `Content-Range: bytes first-last/total` of a 206 response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// First byte of the part.
    pub start: u64,
    /// Length of the part.
    pub len: u64,
    /// Size of the whole object, when the server knows it.
    pub total: Option<u64>,
}

impl ContentRange {
    /// Parses `bytes first-last/total` (total may be `*`); `None` when
    /// malformed or when `last < first`.
    pub fn parse(value: &str) -> Option<ContentRange> {
        let rest = value.trim().strip_prefix("bytes ")?.trim();
        let (span, total) = rest.split_once('/')?;
        let (first, last) = span.split_once('-')?;
        let num = |s: &str| -> Option<u64> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let (start, last) = (num(first)?, num(last)?);
        if last < start {
            return None;
        }
        let total = match total.trim() {
            "*" => None,
            t => Some(num(t)?),
        };
        if let Some(total) = total {
            if last >= total {
                return None;
            }
        }
        Some(ContentRange {
            start,
            len: last - start + 1,
            total,
        })
    }
}

/// Encodes a list of paths or patterns for list-valued headers such as
/// [`TREE_PATHS`] and [`TREE_EXCLUDES`]: bytes outside `[A-Za-z0-9._/*?-]`
/// become `%XX`, items are separated by single spaces.
///
/// ```
/// use cachew_proto::header::{decode_list, encode_list};
/// let text = encode_list([&b"a b"[..], b"src/*.o"]);
/// assert_eq!(text, "a%20b src/*.o");
/// assert_eq!(decode_list(&text).unwrap(), vec![b"a b".to_vec(), b"src/*.o".to_vec()]);
/// ```
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

/// Decodes [`encode_list`]'s output; a `%` not followed by two hex digits
/// is an error.
pub fn decode_list(text: &str) -> Result<Vec<Vec<u8>>, ProtoError> {
    let bad = || ProtoError::InvalidHeaderList {
        value: text.to_owned(),
        reason: Reason("expected space-separated items with %XX escapes"),
    };
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
        for bad in ["a%2", "a%zz", "%"] {
            let err = decode_list(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("%XX"), "{err}");
        }
    }

    #[test]
    fn filters_are_case_insensitive() {
        assert!(is_server_filtered("Content-Length"));
        assert!(is_server_filtered("TIME-TO-LIVE"));
        assert!(is_server_filtered("If-Range"));
        assert!(!is_server_filtered("Content-Type"));
        assert!(!is_server_filtered("X-Custom"));
        assert!(is_client_filtered("Date"));
        assert!(is_client_filtered("Time-To-Live"));
        assert!(!is_client_filtered("Content-Length"));
        assert!(!is_client_filtered("ETag"));
    }

    #[test]
    fn content_disposition_uses_go_quoting() {
        assert_eq!(
            archive_content_disposition("src"),
            "attachment; filename=\"src.tar.zst\""
        );
        assert_eq!(
            archive_content_disposition("a\"b\\c"),
            "attachment; filename=\"a\\\"b\\\\c.tar.zst\""
        );
        assert_eq!(go_quote("tab\there\n"), "\"tab\\there\\n\"");
        assert_eq!(go_quote("\u{1}"), "\"\\x01\"");
        assert_eq!(go_quote("\u{85}"), "\"\\u0085\"");
        assert_eq!(go_quote("héllo ✓"), "\"héllo ✓\"");
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range(0, 10, 100), "bytes 0-9/100");
        assert_eq!(unsatisfied_content_range(5), "bytes */5");
        assert_eq!(
            ContentRange::parse("bytes 0-9/100"),
            Some(ContentRange {
                start: 0,
                len: 10,
                total: Some(100)
            })
        );
        assert_eq!(
            ContentRange::parse("bytes 5-5/*"),
            Some(ContentRange {
                start: 5,
                len: 1,
                total: None
            })
        );
        for bad in [
            "bytes 9-0/100",
            "bytes 0-100/100",
            "bytes */100",
            "0-9/100",
            "bytes a-9/10",
        ] {
            assert_eq!(ContentRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_dates() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        let s = format_http_date(t);
        assert_eq!(s, "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date(&s), Some(t));
        assert_eq!(parse_http_date("yesterday"), None);
    }
}

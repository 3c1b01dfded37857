//! Request options of the object API and the server-side rules that apply
//! them (`PROTOCOL.md` §3).

use std::time::Duration;

use crate::etag::{EntityTag, EtagCondition};

/// One byte range of an object.
///
/// The typed API is half-open, `[start, end)`; on the wire it is rendered as
/// `bytes=start-(end-1)`, `bytes=start-` or `bytes=-len`
/// ([RFC 9110 §14.1.2](https://www.rfc-editor.org/rfc/rfc9110#section-14.1.2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `start..end` (end exclusive; `end > start`).
    Bounded {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// Bytes from `start` to the end of the object.
    From {
        /// First byte.
        start: u64,
    },
    /// The last `len` bytes of the object.
    Suffix {
        /// How many bytes.
        len: u64,
    },
}

impl ByteRange {
    /// The half-open range `[start, end)`; `None` when it would be empty.
    pub fn new(start: u64, end: u64) -> Option<ByteRange> {
        (end > start).then_some(ByteRange::Bounded { start, end })
    }

    /// From `start` to the end of the object.
    pub fn from_offset(start: u64) -> ByteRange {
        ByteRange::From { start }
    }

    /// The last `len` bytes.
    pub fn suffix(len: u64) -> ByteRange {
        ByteRange::Suffix { len }
    }

    /// The `Range` header value.
    pub fn to_header(&self) -> String {
        match *self {
            ByteRange::Bounded { start, end } => format!("bytes={start}-{}", end - 1),
            ByteRange::From { start } => format!("bytes={start}-"),
            ByteRange::Suffix { len } => format!("bytes=-{len}"),
        }
    }

    /// Parses a `Range` header value. Returns `None` for anything that is not
    /// exactly one well-formed byte range: servers answer multi-range and
    /// malformed specs with the full body.
    pub fn parse_header(value: &str) -> Option<ByteRange> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        match (first.is_empty(), last.is_empty()) {
            (true, true) => None,
            (true, false) => Some(ByteRange::Suffix { len: number(last)? }),
            (false, true) => Some(ByteRange::From {
                start: number(first)?,
            }),
            (false, false) => {
                let start = number(first)?;
                let last = number(last)?;
                if last < start {
                    return None;
                }
                Some(ByteRange::Bounded {
                    start,
                    end: last.checked_add(1)?,
                })
            }
        }
    }

    /// Resolves the range against an object of `size` bytes: the end is
    /// clamped to the size, a start at or beyond it is not satisfiable, and so
    /// is a zero-length suffix.
    pub fn resolve(&self, size: u64) -> RangeResolution {
        let (start, end) = match *self {
            ByteRange::Bounded { start, end } => (start, end.min(size)),
            ByteRange::From { start } => (start, size),
            ByteRange::Suffix { len } => {
                if len == 0 {
                    return RangeResolution::NotSatisfiable;
                }
                (size.saturating_sub(len), size)
            }
        };
        if start >= size {
            return RangeResolution::NotSatisfiable;
        }
        RangeResolution::Partial {
            start,
            len: end - start,
        }
    }
}

/// What a server sends for a range request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeResolution {
    /// The whole body, 200.
    Full,
    /// `len` bytes from `start`, 206 with `Content-Range`.
    Partial {
        /// First byte.
        start: u64,
        /// Number of bytes (at least one).
        len: u64,
    },
    /// 416 with `Content-Range: bytes */{size}`.
    NotSatisfiable,
}

/// The outcome of evaluating `If-Match` / `If-None-Match` against an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the request.
    Proceed,
    /// 304: an `If-None-Match` tag matched.
    NotModified,
    /// 412: no `If-Match` tag matched.
    PreconditionFailed,
}

/// Options of an Open (`GET`) or Stat (`HEAD`) request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenOptions {
    /// Serve only if the stored tag is one of these
    /// ([RFC 9110 §13.1.1](https://www.rfc-editor.org/rfc/rfc9110#section-13.1.1)).
    pub if_match: Option<EtagCondition>,
    /// Answer "not modified" if the stored tag is one of these
    /// ([RFC 9110 §13.1.2](https://www.rfc-editor.org/rfc/rfc9110#section-13.1.2)).
    pub if_none_match: Option<EtagCondition>,
    /// Serve only these bytes
    /// ([RFC 9110 §14.2](https://www.rfc-editor.org/rfc/rfc9110#section-14.2)).
    pub range: Option<ByteRange>,
    /// Apply `range` only if the stored tag equals this one, else serve the
    /// full body ([RFC 9110 §13.1.5](https://www.rfc-editor.org/rfc/rfc9110#section-13.1.5)).
    pub if_range: Option<EntityTag>,
}

impl OpenOptions {
    /// Sets `If-Match`.
    #[must_use]
    pub fn with_if_match(mut self, condition: EtagCondition) -> Self {
        self.if_match = Some(condition);
        self
    }

    /// Sets `If-None-Match`.
    #[must_use]
    pub fn with_if_none_match(mut self, condition: EtagCondition) -> Self {
        self.if_none_match = Some(condition);
        self
    }

    /// Sets `Range`.
    #[must_use]
    pub fn with_range(mut self, range: ByteRange) -> Self {
        self.range = Some(range);
        self
    }

    /// Sets `If-Range`.
    #[must_use]
    pub fn with_if_range(mut self, tag: EntityTag) -> Self {
        self.if_range = Some(tag);
        self
    }

    /// Evaluates the conditional headers against an existing object's tag:
    /// `If-Match` first (412 when no tag matches), then `If-None-Match`
    /// (304 when one does), as RFC 9110 §13.2.2 orders them.
    pub fn check(&self, stored: &EntityTag) -> Precondition {
        if let Some(cond) = &self.if_match {
            if !cond.matches(stored) {
                return Precondition::PreconditionFailed;
            }
        }
        if let Some(cond) = &self.if_none_match {
            if cond.matches(stored) {
                return Precondition::NotModified;
            }
        }
        Precondition::Proceed
    }

    /// Decides what part of an object of `size` bytes with tag `stored` to
    /// send: the full body without a range or when `If-Range` does not match,
    /// else the resolved range.
    pub fn resolve_range(&self, size: u64, stored: &EntityTag) -> RangeResolution {
        let Some(range) = &self.range else {
            return RangeResolution::Full;
        };
        if let Some(tag) = &self.if_range {
            if tag != stored {
                return RangeResolution::Full;
            }
        }
        range.resolve(size)
    }
}

/// Options of a Create (`POST`) request, besides the caller's headers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateOptions {
    /// Time to live; `None` or zero means the server's default. Servers cap it
    /// at their own maximum.
    pub ttl: Option<Duration>,
    /// The ETag to store; without one the server invents one.
    pub etag: Option<EntityTag>,
}

impl CreateOptions {
    /// Sets the time to live.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the ETag.
    #[must_use]
    pub fn with_etag(mut self, etag: EntityTag) -> Self {
        self.etag = Some(etag);
        self
    }

    /// The TTL to send, if any: only a positive one travels.
    pub fn effective_ttl(&self) -> Option<Duration> {
        self.ttl.filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeResolution::{Full, NotSatisfiable, Partial};

    fn tag(s: &str) -> EntityTag {
        EntityTag::new(s).unwrap()
    }

    fn open(range: &str) -> OpenOptions {
        OpenOptions {
            range: ByteRange::parse_header(range),
            ..Default::default()
        }
    }

    #[test]
    fn range_table() {
        let stored = tag("v1");
        // (Range header, object size, expected)
        let cases: &[(&str, u64, RangeResolution)] = &[
            ("bytes=0-9", 100, Partial { start: 0, len: 10 }),
            ("bytes=10-19", 100, Partial { start: 10, len: 10 }),
            ("bytes=99-99", 100, Partial { start: 99, len: 1 }),
            ("bytes=0-0", 1, Partial { start: 0, len: 1 }),
            ("bytes=50-", 100, Partial { start: 50, len: 50 }),
            ("bytes=0-", 100, Partial { start: 0, len: 100 }),
            ("bytes=90-200", 100, Partial { start: 90, len: 10 }),
            (
                "bytes=0-18446744073709551614",
                100,
                Partial { start: 0, len: 100 },
            ),
            ("bytes=-10", 100, Partial { start: 90, len: 10 }),
            ("bytes=-100", 100, Partial { start: 0, len: 100 }),
            ("bytes=-1000", 100, Partial { start: 0, len: 100 }),
            ("bytes=-0", 100, NotSatisfiable),
            ("bytes=100-", 100, NotSatisfiable),
            ("bytes=100-200", 100, NotSatisfiable),
            ("bytes=500-600", 100, NotSatisfiable),
            ("bytes=0-", 0, NotSatisfiable),
            ("bytes=-5", 0, NotSatisfiable),
            (" bytes=1-2 ", 100, Partial { start: 1, len: 2 }),
            // Multi-range and malformed specs: the full body.
            ("bytes=0-1,5-6", 100, Full),
            ("bytes=0-1, 5-", 100, Full),
            ("bytes=5-3", 100, Full),
            ("bytes=", 100, Full),
            ("bytes=-", 100, Full),
            ("bytes=a-b", 100, Full),
            ("bytes=1-b", 100, Full),
            ("bytes=+1-2", 100, Full),
            ("bytes=--5", 100, Full),
            ("items=0-9", 100, Full),
            ("0-9", 100, Full),
            ("bytes=0-18446744073709551615", 100, Full),
            ("bytes=18446744073709551616-", 100, Full),
        ];
        for (header, size, want) in cases {
            let got = open(header).resolve_range(*size, &stored);
            assert_eq!(got, *want, "Range: {header} on {size} bytes");
        }
        assert!(cases.len() >= 20);
        assert_eq!(OpenOptions::default().resolve_range(10, &stored), Full);
    }

    #[test]
    fn if_range() {
        let stored = tag("v1");
        let base = open("bytes=0-4");
        let matching = base.clone().with_if_range(tag("v1"));
        let stale = base.clone().with_if_range(tag("v0"));
        assert_eq!(
            matching.resolve_range(10, &stored),
            Partial { start: 0, len: 5 }
        );
        assert_eq!(stale.resolve_range(10, &stored), Full);
        // If-Range never turns a full answer into a partial one.
        let no_range = OpenOptions::default().with_if_range(tag("v1"));
        assert_eq!(no_range.resolve_range(10, &stored), Full);
    }

    #[test]
    fn range_headers_render_half_open() {
        assert_eq!(ByteRange::new(0, 10).unwrap().to_header(), "bytes=0-9");
        assert_eq!(ByteRange::new(5, 6).unwrap().to_header(), "bytes=5-5");
        assert_eq!(ByteRange::new(5, 5), None);
        assert_eq!(ByteRange::from_offset(7).to_header(), "bytes=7-");
        assert_eq!(ByteRange::suffix(3).to_header(), "bytes=-3");
        for r in [
            ByteRange::new(3, 9).unwrap(),
            ByteRange::from_offset(0),
            ByteRange::suffix(12),
        ] {
            assert_eq!(ByteRange::parse_header(&r.to_header()), Some(r));
        }
    }

    #[test]
    fn conditional_table() {
        use Precondition::{NotModified, PreconditionFailed, Proceed};
        let any = || EtagCondition::Any;
        let list = |s: &str| EtagCondition::parse_header(s).unwrap();
        let stored = tag("v1");
        // (If-Match, If-None-Match, expected)
        let cases: Vec<(Option<EtagCondition>, Option<EtagCondition>, Precondition)> = vec![
            (None, None, Proceed),
            (Some(list("\"v1\"")), None, Proceed),
            (Some(list("\"v0\"")), None, PreconditionFailed),
            (Some(list("\"v0\", \"v1\"")), None, Proceed),
            (Some(any()), None, Proceed),
            (None, Some(list("\"v1\"")), NotModified),
            (None, Some(list("\"v0\"")), Proceed),
            (None, Some(list("\"v0\", \"v1\"")), NotModified),
            (None, Some(any()), NotModified),
            (None, Some(list("W/\"v1\"")), NotModified),
            (
                Some(list("\"v0\"")),
                Some(list("\"v1\"")),
                PreconditionFailed,
            ),
            (Some(list("\"v1\"")), Some(list("\"v1\"")), NotModified),
            (Some(list("\"v1\"")), Some(list("\"v2\"")), Proceed),
        ];
        for (if_match, if_none_match, want) in cases {
            let opts = OpenOptions {
                if_match: if_match.clone(),
                if_none_match: if_none_match.clone(),
                ..Default::default()
            };
            assert_eq!(
                opts.check(&stored),
                want,
                "If-Match {if_match:?} If-None-Match {if_none_match:?}"
            );
        }
    }

    #[test]
    fn create_ttl_zero_is_default() {
        assert_eq!(CreateOptions::default().effective_ttl(), None);
        let zero = CreateOptions::default().with_ttl(Duration::ZERO);
        assert_eq!(zero.effective_ttl(), None);
        let hour = CreateOptions::default().with_ttl(Duration::from_secs(3600));
        assert_eq!(hour.effective_ttl(), Some(Duration::from_secs(3600)));
    }
}

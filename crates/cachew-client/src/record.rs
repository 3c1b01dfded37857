//! The object records the embedded backends (memory and disk) share, so
//! that both answer exactly like a Cachew server: which Create headers are
//! stored, how the ETag and `Last-Modified` are chosen, which headers Open
//! and Stat report, and the writer life cycle.
//!
//! Public so that backends in other crates (the object-store backend of
//! `cachew-objstore`) apply the same rules rather than a copy of them.

use std::time::{Duration, SystemTime};

use cachew_proto::header::{self, format_http_date, parse_http_date};
use cachew_proto::{CreateOptions, EntityTag, OpenOptions, Precondition, RangeResolution};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::cache::ObjectMeta;
use crate::error::{Error, Result};

/// What an embedded backend stores about an object besides its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The Create headers minus [`header::SERVER_FILTERED`] and minus the
    /// headers the backend generates itself (`ETag`, `Last-Modified`).
    pub headers: HeaderMap,
    /// The strong ETag.
    pub etag: EntityTag,
    /// Whole seconds, as an HTTP date can carry them.
    pub last_modified: SystemTime,
    /// Body size in bytes.
    pub size: u64,
}

impl Record {
    /// Applies `If-Match` / `If-None-Match`, as Stat does.
    pub fn stat(&self, options: &OpenOptions) -> Result<ObjectMeta> {
        self.check(options)?;
        Ok(self.meta(None))
    }

    /// Applies the conditions and the range, as Open does. The returned
    /// metadata's `range` says which bytes to send.
    pub fn open(&self, options: &OpenOptions) -> Result<ObjectMeta> {
        self.check(options)?;
        match options.resolve_range(self.size, &self.etag) {
            RangeResolution::Full => Ok(self.meta(None)),
            RangeResolution::Partial { start, len } => Ok(self.meta(Some((start, len)))),
            RangeResolution::NotSatisfiable => Err(Error::RangeNotSatisfiable {
                size: Some(self.size),
            }),
        }
    }

    fn check(&self, options: &OpenOptions) -> Result<()> {
        match options.check(&self.etag) {
            Precondition::Proceed => Ok(()),
            Precondition::PreconditionFailed => Err(Error::PreconditionFailed),
            Precondition::NotModified => Err(Error::NotModified {
                headers: Box::new(self.meta(None).headers),
            }),
        }
    }

    /// The metadata a server would report, for the whole object or for the
    /// part `(start, len)`.
    pub fn meta(&self, range: Option<(u64, u64)>) -> ObjectMeta {
        let mut headers = self.headers.clone();
        let mut set = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        set("etag", self.etag.to_header());
        set("last-modified", format_http_date(self.last_modified));
        set("accept-ranges", "bytes".to_owned());
        let len = range.map_or(self.size, |(_, len)| len);
        set("content-length", len.to_string());
        if let Some((start, len)) = range {
            set(
                "content-range",
                header::content_range(start, len, self.size),
            );
        }
        ObjectMeta {
            headers,
            size: Some(self.size),
            etag: Some(self.etag.clone()),
            last_modified: self.last_modified,
            range,
        }
    }
}

/// A Create's headers and options, checked before any byte is written.
#[derive(Debug, Clone)]
pub struct PendingRecord {
    headers: HeaderMap,
    etag: Option<EntityTag>,
    last_modified: Option<SystemTime>,
    ttl: Option<Duration>,
}

impl PendingRecord {
    /// Filters the headers the way a Cachew server does and validates the
    /// ETag: [`CreateOptions::etag`] wins over an `ETag` header, and an
    /// `ETag` header that is not a valid quoted tag is an error. A
    /// `Last-Modified` header that parses as an HTTP date is kept as the
    /// object's modification time; one that does not is ignored. The TTL is
    /// the caller's, else `default_ttl`, capped at `max_ttl`; `None` means the
    /// object does not expire.
    pub fn new(
        mut headers: HeaderMap,
        options: &CreateOptions,
        default_ttl: Option<Duration>,
        max_ttl: Option<Duration>,
    ) -> Result<PendingRecord> {
        for name in header::SERVER_FILTERED {
            headers.remove(*name);
        }
        // A non-UTF-8 value becomes text with replacement characters, which
        // the ETag rules reject with the value quoted.
        let header_etag = match headers.remove(http::header::ETAG) {
            Some(value) => Some(EntityTag::parse_header(&String::from_utf8_lossy(
                value.as_bytes(),
            ))?),
            None => None,
        };
        let last_modified = headers
            .remove(http::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok().and_then(parse_http_date));
        let ttl = options
            .effective_ttl()
            .or(default_ttl)
            .filter(|d| !d.is_zero());
        let ttl = match (ttl, max_ttl.filter(|d| !d.is_zero())) {
            (Some(ttl), Some(max)) => Some(ttl.min(max)),
            (None, Some(max)) => Some(max),
            (ttl, None) => ttl,
        };
        Ok(PendingRecord {
            headers,
            etag: options.etag.clone().or(header_etag),
            last_modified,
            ttl,
        })
    }

    /// The record of the committed object, and when it expires. Without an
    /// ETag given at Create, `digest` supplies one.
    pub fn finish(
        &self,
        size: u64,
        now: SystemTime,
        digest: impl FnOnce() -> EntityTag,
    ) -> (Record, Option<SystemTime>) {
        let record = Record {
            headers: self.headers.clone(),
            etag: self.etag.clone().unwrap_or_else(digest),
            last_modified: whole_seconds(self.last_modified.unwrap_or(now)),
            size,
        };
        (record, self.ttl.map(|ttl| now + ttl))
    }

    /// Whether an ETag was given, so none needs generating.
    pub fn has_etag(&self) -> bool {
        self.etag.is_some()
    }

    /// The TTL this object will get, if it expires.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }
}

/// The ETag generated for an object created without one: the lowercase hex
/// BLAKE3 digest of its content, so equal bodies get equal strong tags.
pub(crate) fn content_etag(hash: &blake3::Hash) -> EntityTag {
    // Hex digits are always a valid raw ETag.
    EntityTag::new(hash.to_hex().as_str()).unwrap_or_else(|_| unreachable!("hex is a valid ETag"))
}

/// Truncates to whole seconds since the epoch, the precision of HTTP dates.
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Where a writer is in its life: only `Open` accepts bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterState {
    /// Accepting bytes.
    Open,
    /// Committed: the object is visible.
    Committed,
    /// Aborted (or dropped) by the caller.
    Aborted,
    /// Failed while writing or committing.
    Failed,
}

impl WriterState {
    /// What a second `commit` answers.
    pub fn commit_again(self) -> Result<()> {
        match self {
            WriterState::Committed => Ok(()),
            WriterState::Aborted => Err(Error::WriterClosed("aborted")),
            WriterState::Failed => Err(Error::WriterClosed("failed")),
            WriterState::Open => Err(Error::WriterClosed("open")),
        }
    }

    /// The error a write after commit or abort gets.
    pub fn closed_io_error(self) -> std::io::Error {
        let what = match self {
            WriterState::Committed => "committed",
            WriterState::Aborted => "aborted",
            WriterState::Failed => "failed",
            WriterState::Open => "open",
        };
        std::io::Error::other(format!("the cache writer is already {what}"))
    }
}

/// The error for an object that can never fit.
pub(crate) fn too_large(backend: &str, size: u64, capacity: u64) -> String {
    format!(
        "object of {size} bytes exceeds the {backend} cache capacity of {capacity} bytes \
         (objects larger than the capacity are never stored)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rules() {
        let h = Duration::from_secs(3600);
        let ttl = |opt: Option<u64>, default: Option<u64>, max: Option<u64>| {
            let mut options = CreateOptions::default();
            if let Some(s) = opt {
                options = options.with_ttl(Duration::from_secs(s));
            }
            PendingRecord::new(
                HeaderMap::new(),
                &options,
                default.map(Duration::from_secs),
                max.map(Duration::from_secs),
            )
            .unwrap()
            .ttl()
        };
        assert_eq!(ttl(None, None, None), None);
        assert_eq!(ttl(Some(0), Some(3600), None), Some(h));
        assert_eq!(
            ttl(Some(60), Some(3600), None),
            Some(Duration::from_secs(60))
        );
        assert_eq!(ttl(Some(7200), None, Some(3600)), Some(h));
        assert_eq!(ttl(None, None, Some(3600)), Some(h));
        assert_eq!(ttl(None, Some(7200), Some(3600)), Some(h));
    }
}

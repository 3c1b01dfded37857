//! Where the bytes come from: the [`RangedSource`] trait and its two
//! implementations, an object of a [`Cache`] ([`CacheSource`]) and a plain
//! URL ([`HttpSource`]).

use std::fmt;
use std::sync::Arc;

use std::time::Duration;

use async_trait::async_trait;
use cachew_proto::header::ContentRange;
use cachew_proto::{ByteRange, EntityTag, EtagCondition, Key, OpenOptions};
use cachew_transport::{HttpClient, RequestBody};
use http::{HeaderMap, StatusCode};

use crate::cache::{Body, Cache};
use crate::error::{Error, Result};

/// What the server sent for one request of a [`RangedSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangedKind {
    /// The whole object (`200`); `size` from `Content-Length` when known.
    Full {
        /// The object's size, when the response announced it.
        size: Option<u64>,
    },
    /// A part of it (`206`), as its `Content-Range` says.
    Partial(ContentRange),
}

/// One response of a [`RangedSource`].
pub struct RangedResponse {
    /// Whole or partial.
    pub kind: RangedKind,
    /// The object's ETag, if the response carried one.
    pub etag: Option<EntityTag>,
    /// The response headers.
    pub headers: HeaderMap,
    /// The (possibly partial) body.
    pub body: Body,
}

impl fmt::Debug for RangedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RangedResponse")
            .field("kind", &self.kind)
            .field("etag", &self.etag)
            .finish_non_exhaustive()
    }
}

/// Something that serves byte ranges of one object: an HTTP URL, a cache
/// entry. Object-safe, so downloads take `Arc<dyn RangedSource>`.
///
/// Errors follow the facade: [`Error::NotFound`] (404),
/// [`Error::PreconditionFailed`] (412, `If-Match` failed),
/// [`Error::RangeNotSatisfiable`] (416).
#[async_trait]
pub trait RangedSource: Send + Sync + fmt::Debug + 'static {
    /// Requests `range` (or the whole object), served only if the object's
    /// ETag is `if_match` when that is given.
    async fn get(
        &self,
        range: Option<ByteRange>,
        if_match: Option<&EntityTag>,
    ) -> Result<RangedResponse>;
}

/// An object of a [`Cache`] as a [`RangedSource`]: every request is an
/// [`open`](Cache::open) with `range` and `if_match` set. Works for every
/// backend; it pays off for remote ones.
#[derive(Debug, Clone)]
pub struct CacheSource {
    cache: Arc<dyn Cache>,
    key: Key,
}

impl CacheSource {
    /// The object `key` of `cache` (in the cache handle's namespace).
    pub fn new(cache: Arc<dyn Cache>, key: Key) -> Self {
        CacheSource { cache, key }
    }
}

#[async_trait]
impl RangedSource for CacheSource {
    async fn get(
        &self,
        range: Option<ByteRange>,
        if_match: Option<&EntityTag>,
    ) -> Result<RangedResponse> {
        let mut options = OpenOptions::default();
        options.range = range;
        options.if_match = if_match.cloned().map(EtagCondition::one);
        let object = self.cache.open(&self.key, &options).await?;
        let meta = object.meta;
        let kind = match meta.range {
            Some((start, len)) => RangedKind::Partial(ContentRange {
                start,
                len,
                total: meta.size,
            }),
            None => RangedKind::Full { size: meta.size },
        };
        Ok(RangedResponse {
            kind,
            etag: meta.etag,
            headers: meta.headers,
            body: object.body,
        })
    }
}

/// A plain URL fetched with `GET` through an [`HttpClient`] (its
/// authorization, retries and idle timeout apply), e.g. a git snapshot.
#[derive(Clone)]
pub struct HttpSource {
    http: HttpClient,
    url: String,
    header_timeout: Option<Duration>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry credentials (`https://user:pass@host`).
        f.debug_struct("HttpSource")
            .field("http", &self.http)
            .field("url", &cachew_proto::redact_url(&self.url))
            .field("header_timeout", &self.header_timeout)
            .finish()
    }
}

impl HttpSource {
    /// `GET url` through `http`.
    pub fn new(http: HttpClient, url: impl Into<String>) -> Self {
        HttpSource {
            http,
            url: url.into(),
            header_timeout: None,
        }
    }

    /// Waits up to `timeout` for the response headers of each request
    /// instead of the client's header timeout (for endpoints where the
    /// server works before it answers, such as git snapshots).
    #[must_use]
    pub fn with_response_header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = Some(timeout);
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait]
impl RangedSource for HttpSource {
    async fn get(
        &self,
        range: Option<ByteRange>,
        if_match: Option<&EntityTag>,
    ) -> Result<RangedResponse> {
        let mut req = http::Request::get(&self.url);
        if let Some(range) = range {
            req = req.header(http::header::RANGE, range.to_header());
        }
        if let Some(tag) = if_match {
            req = req.header(http::header::IF_MATCH, tag.to_header());
        }
        let mut req = req
            .body(RequestBody::empty())
            .map_err(|e| Error::InvalidInput(format!("invalid download request: {e}")))?;
        if let Some(timeout) = self.header_timeout {
            req.extensions_mut()
                .insert(cachew_transport::ResponseHeaderTimeout(timeout));
        }
        let resp = self.http.send(req).await.map_err(Error::from)?;
        let status = resp.status();
        let (parts, body) = resp.into_parts();
        let headers = parts.headers;
        let header = |name: http::header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let kind = match status {
            StatusCode::OK => RangedKind::Full {
                size: header(http::header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
            },
            StatusCode::PARTIAL_CONTENT => {
                let value = header(http::header::CONTENT_RANGE).unwrap_or_default();
                let range = ContentRange::parse(&value).ok_or_else(|| {
                    Error::Backend(format!(
                        "206 response with an invalid Content-Range {value:?}"
                    ))
                })?;
                RangedKind::Partial(range)
            }
            StatusCode::NOT_FOUND => return Err(Error::NotFound),
            StatusCode::PRECONDITION_FAILED => return Err(Error::PreconditionFailed),
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let size = header(http::header::CONTENT_RANGE).and_then(|v| {
                    v.trim()
                        .strip_prefix("bytes */")
                        .and_then(|n| n.trim().parse().ok())
                });
                return Err(Error::RangeNotSatisfiable { size });
            }
            other => {
                let message = body.bytes_limited(4096).await.unwrap_or_default();
                return Err(Error::Status {
                    code: other.as_u16(),
                    message: String::from_utf8_lossy(&message).trim().to_owned(),
                });
            }
        };
        let etag = header(http::header::ETAG).and_then(|v| EntityTag::parse_header(&v).ok());
        Ok(RangedResponse {
            kind,
            etag,
            headers,
            body: Box::pin(body.into_async_read()),
        })
    }
}

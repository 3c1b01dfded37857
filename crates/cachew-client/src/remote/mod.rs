//! [`RemoteCache`]: the [`Cache`] of a Cachew server, over the `/api/v1`
//! object API (`PROTOCOL.md` §3) — the Go client's `Client`.
//!
//! URLs are `{base}/api/v1/object/{namespace}/{key-hex}`. Open and Stat
//! send `If-Match`, `If-None-Match`, `Range` and `If-Range` from
//! [`OpenOptions`]; Create streams the body with chunked encoding, sends
//! every caller header (minus framing headers), `Time-To-Live` in Go duration
//! syntax when positive and the ETag quoted. Statuses map to [`Error`]: 404
//! → [`Error::NotFound`], 304 → [`Error::NotModified`] with the headers, 412
//! → [`Error::PreconditionFailed`], 416 → [`Error::RangeNotSatisfiable`], 501
//! on stats → [`Error::StatsUnavailable`], anything else →
//! [`Error::Status`] with the server's message. Transport failures are
//! [`Error::Transport`].

mod builder;
mod client;
mod writer;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use cachew_proto::{CreateOptions, EntityTag, Key, Namespace, OpenOptions, Stats};
use cachew_transport::{HttpClient, Idempotency, RequestBody};
use http::header::ETAG;
use http::{HeaderMap, Method, StatusCode};

pub use builder::RemoteCacheBuilder;

use crate::cache::{Cache, CacheWriter, Object, ObjectMeta};
use crate::error::{Error, Result};
pub(crate) use cachew_proto::redact_url;

/// The most JSON accepted from the stats and namespaces endpoints.
const MAX_JSON: u64 = 16 << 20;

/// A remote Cachew server as a [`Cache`].
///
/// Cheap to clone; clones and [`with_namespace`](Cache::with_namespace)
/// handles share one connection pool.
///
/// ```no_run
/// use std::time::Duration;
/// use cachew_client::{Cache, CacheExt, Key, RemoteCache};
///
/// # async fn demo() -> cachew_client::Result<()> {
/// let cache = RemoteCache::builder("http://127.0.0.1:8080")
///     .authorization("Bearer secret-token")
///     .idle_timeout(Duration::from_secs(30))
///     .build()?;
/// let key = Key::new("my build output");
/// if !cache.exists(&key).await? {
///     cache
///         .put_bytes(&key, "data".into(), Default::default(), &Default::default())
///         .await?;
/// }
/// assert_eq!(cache.get_bytes(&key).await?, "data");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RemoteCache {
    inner: Arc<Inner>,
    namespace: Namespace,
}

struct Inner {
    base_url: String,
    http: HttpClient,
}

impl fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCache")
            .field("base_url", &redact_url(&self.inner.base_url))
            .field("namespace", &self.namespace)
            .field("http", &self.inner.http)
            .finish()
    }
}

impl fmt::Display for RemoteCache {
    /// `remote:{base_url}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "remote:{}", redact_url(&self.inner.base_url))
    }
}

impl RemoteCache {
    /// A builder for a server at `base_url`, e.g. `http://127.0.0.1:8080`.
    pub fn builder(base_url: impl Into<String>) -> RemoteCacheBuilder {
        RemoteCacheBuilder::new(base_url)
    }

    /// A client for `base_url` with default settings, in namespace `default`.
    pub fn new(base_url: impl Into<String>) -> Result<RemoteCache> {
        RemoteCache::builder(base_url).build()
    }

    /// The server's base URL, without trailing slashes (Go's `BaseURL`).
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The HTTP client, with the same authorization, headers, timeouts and
    /// retries, for endpoints outside the object API (Go's `HTTP()`).
    pub fn http(&self) -> &HttpClient {
        &self.inner.http
    }

    /// A handle on another namespace, as a concrete type.
    pub fn namespaced(&self, namespace: Namespace) -> RemoteCache {
        RemoteCache {
            inner: self.inner.clone(),
            namespace,
        }
    }

    /// Releases the client (Go's `Close`). Idempotent; in-flight requests
    /// and other handles are unaffected, and pooled idle connections close
    /// when the last handle is dropped or their idle timeout passes.
    pub fn close(&self) -> Result<()> {
        Ok(())
    }

    fn object_url(&self, key: &Key) -> String {
        format!(
            "{}/api/v1/object/{}/{}",
            self.inner.base_url,
            self.namespace,
            key.to_hex()
        )
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
    ) -> Result<http::Response<cachew_transport::ResponseBody>> {
        let mut req = client::request(method, url, RequestBody::empty())?;
        *req.headers_mut() = headers;
        Ok(self.inner.http.send(req).await?)
    }
}

#[async_trait]
impl Cache for RemoteCache {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn with_namespace(&self, namespace: Namespace) -> Arc<dyn Cache> {
        Arc::new(self.namespaced(namespace))
    }

    async fn stat(&self, key: &Key, options: &OpenOptions) -> Result<ObjectMeta> {
        let url = self.object_url(key);
        let mut headers = HeaderMap::new();
        client::open_headers(&mut headers, options, false)?;
        let resp = self.send(Method::HEAD, &url, headers).await?;
        match resp.status() {
            StatusCode::OK => client::meta_from(&url, &resp),
            _ => Err(client::status_error(resp).await),
        }
    }

    async fn open(&self, key: &Key, options: &OpenOptions) -> Result<Object> {
        let url = self.object_url(key);
        let mut headers = HeaderMap::new();
        client::open_headers(&mut headers, options, true)?;
        let resp = self.send(Method::GET, &url, headers).await?;
        match resp.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                let meta = client::meta_from(&url, &resp)?;
                Ok(Object {
                    meta,
                    body: Box::pin(resp.into_body().into_async_read()),
                })
            }
            _ => Err(client::status_error(resp).await),
        }
    }

    async fn create(
        &self,
        key: &Key,
        headers: HeaderMap,
        options: &CreateOptions,
    ) -> Result<Box<dyn CacheWriter>> {
        // Refuse an ETag header the server would reject before any byte is
        // sent, with the same error the embedded backends give.
        if let Some(value) = headers.get(ETAG) {
            let text = value
                .to_str()
                .map_err(|_| Error::InvalidInput("the ETag header is not ASCII text".to_owned()))?;
            EntityTag::parse_header(text)?;
        }
        let url = self.object_url(key);
        let mut headers = client::create_headers(headers);
        client::create_options_headers(&mut headers, options)?;
        let (sender, body) = RequestBody::channel(writer::QUEUE);
        let mut req = client::request(Method::POST, &url, body)?;
        *req.headers_mut() = headers;
        let http = self.inner.http.clone();
        let response = tokio::spawn(async move { http.send(req).await });
        Ok(Box::new(writer::RemoteWriter::new(url, sender, response)))
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let resp = self
            .send(Method::DELETE, &self.object_url(key), HeaderMap::new())
            .await?;
        match resp.status() {
            StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            _ => Err(client::status_error(resp).await),
        }
    }

    async fn invalidate(&self, key: &Key) -> Result<()> {
        let url = format!("{}/invalidate", self.object_url(key));
        let mut req = client::request(Method::POST, &url, RequestBody::empty())?;
        // Invalidating twice is the same as once, so a lost answer may be
        // retried; the transport only knows methods, so say so here.
        req.extensions_mut().insert(Idempotency::Idempotent);
        let resp = self.inner.http.send(req).await?;
        match resp.status() {
            // Absent is fine: invalidation only promises the key is gone.
            StatusCode::OK | StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(client::status_error(resp).await),
        }
    }

    async fn stats(&self) -> Result<Stats> {
        let url = format!("{}/api/v1/stats", self.inner.base_url);
        let resp = self.send(Method::GET, &url, HeaderMap::new()).await?;
        match resp.status() {
            StatusCode::OK => {
                let body = resp.into_body().bytes_limited(MAX_JSON).await?;
                serde_json::from_slice(&body).map_err(|e| {
                    Error::Backend(format!("invalid stats JSON from {}: {e}", redact_url(&url)))
                })
            }
            StatusCode::NOT_IMPLEMENTED => Err(Error::StatsUnavailable),
            _ => Err(client::status_error(resp).await),
        }
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let url = format!("{}/api/v1/namespaces", self.inner.base_url);
        let resp = self.send(Method::GET, &url, HeaderMap::new()).await?;
        match resp.status() {
            StatusCode::OK => {
                let body = resp.into_body().bytes_limited(MAX_JSON).await?;
                // Go encodes an empty (nil) list as `null`.
                let list: Option<Vec<String>> = serde_json::from_slice(&body).map_err(|e| {
                    Error::Backend(format!(
                        "invalid namespace list from {}: {e}",
                        redact_url(&url)
                    ))
                })?;
                Ok(list.unwrap_or_default())
            }
            _ => Err(client::status_error(resp).await),
        }
    }
}

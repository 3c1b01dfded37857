//! [`GitClient`]: the client of a server's `/git/` endpoints (snapshots,
//! LFS snapshots, delta bundles, ensure-refs).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cachew_proto::git::{self, endpoint_url, resolve_bundle_url};
use cachew_proto::{header, EnsureGitRefsRequest, EnsureGitRefsResponse, EntityTag};
use cachew_transport::{HttpClient, RequestBody, ResponseHeaderTimeout};
use http::{HeaderMap, StatusCode};

use crate::cache::Body;
use crate::error::{Error, Result};
use crate::parallel::{parallel_reader, HttpSource, ParallelOptions, RangedKind, RangedSource};
use crate::RemoteCache;

/// Largest JSON answer accepted from ensure-refs.
const MAX_JSON: u64 = 16 << 20;

/// A working-tree (or LFS) snapshot being downloaded: the Go client's
/// `GitSnapshot`.
pub struct GitSnapshot {
    /// The zstd-compressed tarball.
    pub body: Body,
    /// The mirror's HEAD at snapshot time (`X-Cachew-Snapshot-Commit`);
    /// `None` for a cold serve, when the caller must freshen the tree itself.
    pub commit: Option<String>,
    /// The delta bundle that brings the snapshot up to the mirror's HEAD
    /// (`X-Cachew-Bundle-Url`, as sent: absolute or root-relative); pass it
    /// to [`GitClient::open_bundle`].
    pub bundle_url: Option<String>,
    /// The tarball's size, when known.
    pub size: Option<u64>,
    /// The tarball's ETag, when sent.
    pub etag: Option<EntityTag>,
    /// Whether the body is reassembled from parallel ranged requests.
    pub parallel: bool,
    /// The (first) response's headers.
    pub headers: HeaderMap,
}

impl fmt::Debug for GitSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSnapshot")
            .field("commit", &self.commit)
            .field("bundle_url", &self.bundle_url)
            .field("size", &self.size)
            .field("etag", &self.etag)
            .field("parallel", &self.parallel)
            .finish_non_exhaustive()
    }
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// How long git requests (snapshot, LFS snapshot, bundle, ensure-refs) wait
/// for the response headers: a server may clone or fetch a cold repository
/// before it answers (LESSONS 16). A stalled body still fails after the
/// client's idle timeout.
pub const GIT_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The client of a server's `/git/` endpoints.
#[derive(Clone)]
pub struct GitClient {
    http: HttpClient,
    base_url: String,
}

impl fmt::Debug for GitClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The base URL may carry credentials (`https://user:pass@host`).
        f.debug_struct("GitClient")
            .field("http", &self.http)
            .field("base_url", &cachew_proto::redact_url(&self.base_url))
            .finish()
    }
}

impl GitClient {
    /// A client for the server at `base_url` (trailing slashes are trimmed),
    /// sending through `http`.
    pub fn new(http: HttpClient, base_url: impl Into<String>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        GitClient { http, base_url }
    }

    /// A client sharing `remote`'s HTTP client (authorization, headers,
    /// timeouts, retries, connection pool) and base URL.
    pub fn from_remote(remote: &RemoteCache) -> Self {
        GitClient::new(remote.http().clone(), remote.base_url())
    }

    /// The HTTP client.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The URL of endpoint `suffix` of `repo_url`.
    pub fn endpoint(&self, repo_url: &str, suffix: &str) -> Result<String> {
        Ok(endpoint_url(&self.base_url, repo_url, suffix)?)
    }

    /// Fetches the working-tree snapshot of `repo_url` as one stream.
    /// [`Error::NotFound`] when the server has none.
    pub async fn open_snapshot(&self, repo_url: &str) -> Result<GitSnapshot> {
        self.open_single(repo_url, git::SNAPSHOT).await
    }

    /// Fetches the LFS-object snapshot of `repo_url`.
    /// [`Error::NotFound`] when the server has none.
    pub async fn open_lfs_snapshot(&self, repo_url: &str) -> Result<GitSnapshot> {
        self.open_single(repo_url, git::LFS_SNAPSHOT).await
    }

    async fn open_single(&self, repo_url: &str, suffix: &str) -> Result<GitSnapshot> {
        let source = HttpSource::new(self.http.clone(), self.endpoint(repo_url, suffix)?)
            .with_response_header_timeout(GIT_RESPONSE_HEADER_TIMEOUT);
        let resp = source.get(None, None).await?;
        let size = match resp.kind {
            RangedKind::Full { size } => size,
            RangedKind::Partial(r) => r.total.filter(|t| *t == r.len),
        };
        Ok(GitSnapshot {
            commit: header_value(&resp.headers, header::SNAPSHOT_COMMIT),
            bundle_url: header_value(&resp.headers, header::BUNDLE_URL),
            size,
            etag: resp.etag,
            parallel: false,
            headers: resp.headers,
            body: resp.body,
        })
    }

    /// Fetches the snapshot of `repo_url` with parallel ranged requests
    /// ([`parallel_reader`]); returns as soon as the first response's
    /// headers (commit, bundle URL, size) are known, while the chunks
    /// stream. [`Error::NotFound`] when the server has none.
    pub async fn open_snapshot_parallel(
        &self,
        repo_url: &str,
        opts: &ParallelOptions,
    ) -> Result<GitSnapshot> {
        let url = self.endpoint(repo_url, git::SNAPSHOT)?;
        let source = Arc::new(
            HttpSource::new(self.http.clone(), url)
                .with_response_header_timeout(GIT_RESPONSE_HEADER_TIMEOUT),
        );
        let (info, reader) = parallel_reader(source, opts).await?;
        Ok(GitSnapshot {
            commit: header_value(&info.headers, header::SNAPSHOT_COMMIT),
            bundle_url: header_value(&info.headers, header::BUNDLE_URL),
            size: info.size,
            etag: info.etag,
            parallel: info.parallel,
            headers: info.headers,
            body: Box::pin(reader),
        })
    }

    /// Fetches the delta bundle at `bundle_url` (a [`GitSnapshot::bundle_url`]:
    /// absolute, or root-relative and joined to the base URL).
    /// [`Error::UpToDate`] when the server answers 204: the snapshot is
    /// already current, which is not a failure (LESSONS 11).
    pub async fn open_bundle(&self, bundle_url: &str) -> Result<Body> {
        let url = resolve_bundle_url(&self.base_url, bundle_url)?;
        let mut req = http::Request::get(&url)
            .body(RequestBody::empty())
            .map_err(|e| Error::InvalidInput(format!("invalid bundle URL: {e}")))?;
        req.extensions_mut()
            .insert(ResponseHeaderTimeout(GIT_RESPONSE_HEADER_TIMEOUT));
        let resp = self.http.send(req).await.map_err(Error::from)?;
        match resp.status() {
            StatusCode::OK => Ok(Box::pin(resp.into_body().into_async_read())),
            StatusCode::NO_CONTENT => Err(Error::UpToDate),
            StatusCode::NOT_FOUND => Err(Error::NotFound),
            other => Err(status_error(other, resp.into_body()).await),
        }
    }

    /// Asks the server to make its mirror of `repo_url` hold the requested
    /// refs and commits, fetching from upstream if needed. An empty request
    /// is refused locally, as the server would (400).
    pub async fn ensure_refs(
        &self,
        repo_url: &str,
        request: &EnsureGitRefsRequest,
    ) -> Result<EnsureGitRefsResponse> {
        if request.is_empty() {
            return Err(Error::InvalidInput(
                "ensure-refs needs at least one ref or commit".into(),
            ));
        }
        let url = self.endpoint(repo_url, git::ENSURE_REFS)?;
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::InvalidInput(format!("cannot encode ensure-refs: {e}")))?;
        let mut req = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(RequestBody::full(body))
            .map_err(|e| Error::InvalidInput(format!("invalid ensure-refs request: {e}")))?;
        // Asking the server to fetch refs again does no harm, so a lost
        // answer may be retried; the transport only knows methods.
        req.extensions_mut()
            .insert(cachew_transport::Idempotency::Idempotent);
        req.extensions_mut()
            .insert(ResponseHeaderTimeout(GIT_RESPONSE_HEADER_TIMEOUT));
        let resp = self.http.send(req).await.map_err(Error::from)?;
        match resp.status() {
            StatusCode::OK => {
                let data = resp
                    .into_body()
                    .bytes_limited(MAX_JSON)
                    .await
                    .map_err(Error::from)?;
                serde_json::from_slice(&data).map_err(|e| {
                    Error::Backend(format!("invalid ensure-refs answer from the server: {e}"))
                })
            }
            StatusCode::NOT_FOUND => Err(Error::NotFound),
            other => Err(status_error(other, resp.into_body()).await),
        }
    }
}

async fn status_error(status: StatusCode, body: cachew_transport::ResponseBody) -> Error {
    let message = body.bytes_limited(4096).await.unwrap_or_default();
    Error::Status {
        code: status.as_u16(),
        message: String::from_utf8_lossy(&message).trim().to_owned(),
    }
}

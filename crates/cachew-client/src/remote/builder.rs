//! [`RemoteCacheBuilder`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cachew_transport::{HttpClient, Proxies};
use http::HeaderMap;

use super::{Inner, RemoteCache};
use crate::error::{Error, Result};
use crate::Namespace;

type HeaderFn = Arc<dyn Fn() -> HeaderMap + Send + Sync>;

/// Builds a [`RemoteCache`]; see [`RemoteCache::builder`].
///
/// Unless [`http_client`](RemoteCacheBuilder::http_client) supplies a
/// ready-made client, the builder configures a
/// [`cachew_transport::HttpClient`] with the transport's defaults (Go's
/// trust and proxy environment variables, connect timeout 30 s, TLS
/// handshake 10 s, header wait 60 s — 30 minutes for git endpoints —,
/// idle timeout 60 s, 3 retries of idempotent requests) and the settings
/// below.
#[must_use]
pub struct RemoteCacheBuilder {
    base_url: String,
    namespace: Namespace,
    authorization: Option<String>,
    header_fn: Option<HeaderFn>,
    idle_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    max_retries: Option<u32>,
    response_header_timeout: Option<Duration>,
    ca_files: Vec<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    proxies: Option<Proxies>,
    http: Option<HttpClient>,
}

impl fmt::Debug for RemoteCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCacheBuilder")
            .field("base_url", &super::redact_url(&self.base_url))
            .field("namespace", &self.namespace)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("header_fn", &self.header_fn.as_ref().map(|_| "<fn>"))
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_retries", &self.max_retries)
            .field("response_header_timeout", &self.response_header_timeout)
            .field("ca_files", &self.ca_files)
            .field("client_cert", &self.client_cert)
            .field("proxies", &self.proxies)
            .field("http", &self.http.is_some())
            .finish()
    }
}

impl RemoteCacheBuilder {
    pub(super) fn new(base_url: impl Into<String>) -> RemoteCacheBuilder {
        RemoteCacheBuilder {
            base_url: base_url.into(),
            namespace: Namespace::default(),
            authorization: None,
            header_fn: None,
            idle_timeout: None,
            connect_timeout: None,
            max_retries: None,
            response_header_timeout: None,
            ca_files: Vec::new(),
            client_cert: None,
            proxies: None,
            http: None,
        }
    }

    /// The namespace of the built handle (default `default`); other
    /// namespaces are reached with [`Cache::with_namespace`](crate::Cache::with_namespace).
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// An `Authorization` header value (e.g. `"Bearer …"`) sent with every
    /// request. It never appears in `Debug` output or error messages.
    pub fn authorization(mut self, value: impl Into<String>) -> Self {
        self.authorization = Some(value.into());
        self
    }

    /// Headers computed for every request (the Go client's `HeaderFunc`),
    /// e.g. a token that rotates. They replace same-named request headers.
    pub fn header_fn(mut self, f: impl Fn() -> HeaderMap + Send + Sync + 'static) -> Self {
        self.header_fn = Some(Arc::new(f));
        self
    }

    /// The longest wait for the next chunk of a response body; a stalled
    /// transfer fails with a timeout naming the URL instead of hanging.
    /// Default 60 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// The longest wait for a connection (TCP and TLS).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The longest wait for the response headers of object requests
    /// (default 60 s); git endpoints wait
    /// [`GIT_RESPONSE_HEADER_TIMEOUT`](crate::git::GIT_RESPONSE_HEADER_TIMEOUT).
    pub fn response_header_timeout(mut self, timeout: Duration) -> Self {
        self.response_header_timeout = Some(timeout);
        self
    }

    /// Also trusts the CA certificates in this PEM file (on top of the
    /// system store); see [`cachew_transport::HttpClientBuilder::ca_certificate_file`].
    pub fn ca_certificate_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Presents this client certificate (PEM chain and PEM key) for mutual TLS.
    pub fn client_certificate_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Which proxies to use instead of the environment's
    /// ([`Proxies::from_env`]).
    pub fn proxies(mut self, proxies: Proxies) -> Self {
        self.proxies = Some(proxies);
        self
    }

    /// Retries of idempotent requests after connect errors, 429 and 5xx
    /// (never 501, never an upload); 0 disables them.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// Uses `client` as is; the authorization, header, timeout and retry
    /// settings of this builder are then ignored (configure them on the
    /// client).
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.http = Some(client);
        self
    }

    /// Checks the base URL and builds the cache. No request is sent.
    ///
    /// The URL must be absolute `http://` or `https://`, without query or
    /// fragment; trailing slashes are trimmed, a path prefix is kept
    /// (`https://host/cachew` → `https://host/cachew/api/v1/…`).
    pub fn build(self) -> Result<RemoteCache> {
        let base_url = normalize_base_url(&self.base_url)?;
        let http = match self.http {
            Some(client) => client,
            None => {
                let mut b = HttpClient::builder();
                if let Some(value) = self.authorization {
                    b = b.authorization(value);
                }
                if let Some(f) = self.header_fn {
                    b = b.header_fn(move || f());
                }
                if let Some(t) = self.idle_timeout {
                    b = b.idle_timeout(t);
                }
                if let Some(t) = self.connect_timeout {
                    b = b.connect_timeout(t);
                }
                if let Some(n) = self.max_retries {
                    b = b.max_retries(n);
                }
                if let Some(t) = self.response_header_timeout {
                    b = b.response_header_timeout(t);
                }
                for path in self.ca_files {
                    b = b.ca_certificate_file(path);
                }
                if let Some((cert, key)) = self.client_cert {
                    b = b.client_certificate_files(cert, key);
                }
                if let Some(p) = self.proxies {
                    b = b.proxies(p);
                }
                b.build()?
            }
        };
        Ok(RemoteCache {
            inner: Arc::new(Inner { base_url, http }),
            namespace: self.namespace,
        })
    }
}

/// Validates a base URL and trims its trailing slashes.
fn normalize_base_url(raw: &str) -> Result<String> {
    let invalid = |why: &str| {
        Error::InvalidInput(format!(
            "invalid server URL {:?}: {why}",
            super::redact_url(raw)
        ))
    };
    let trimmed = raw.trim().trim_end_matches('/');
    let uri: http::Uri = trimmed
        .parse()
        .map_err(|_| invalid("not a URL (expected e.g. http://127.0.0.1:8080)"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(_) => return Err(invalid("the scheme must be http or https")),
        None => {
            return Err(invalid(
                "expected an absolute URL such as http://127.0.0.1:8080",
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if uri.query().is_some() || trimmed.contains('#') {
        return Err(invalid("it must not have a query or fragment"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        for (raw, want) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("https://cache.example//", "https://cache.example"),
            (
                "https://cache.example/prefix/",
                "https://cache.example/prefix",
            ),
        ] {
            assert_eq!(normalize_base_url(raw).unwrap(), want, "{raw}");
        }
        for (raw, why) in [
            ("127.0.0.1:8080", "absolute"),
            ("ftp://host", "http or https"),
            ("http://host/?q=1", "query"),
            ("not a url", "not a URL"),
            ("/relative", "absolute"),
        ] {
            let err = normalize_base_url(raw).unwrap_err().to_string();
            assert!(err.contains(why), "{raw}: {err}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let b = RemoteCache::builder("http://user:hunter2@host:1")
            .authorization("Bearer hunter2")
            .header_fn(HeaderMap::new);
        let text = format!("{b:?}");
        assert!(!text.contains("hunter2"), "{text}");
        let cache = b.build().unwrap();
        assert!(!format!("{cache:?} {cache}").contains("hunter2"));
        let err = RemoteCache::builder("ftp://user:hunter2@host")
            .build()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}

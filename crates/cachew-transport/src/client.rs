//! [`HttpClient`], its builder and the raw [`HttpService`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::body::{RequestBody, ResponseBody};
use crate::error::Error;
use crate::layers::headers::{HeaderConfig, HeaderFn, HeaderLayer};
use crate::layers::hyper_service::{Connector, HyperService};
use crate::layers::retry::{RetryLayer, RetryPolicy};
use crate::layers::timeout::TimeoutLayer;
use crate::layers::trace::TraceLayer;
use crate::layers::BoxFuture;
use crate::proxy::{Proxies, ProxyConnector};
use crate::tls::{ClientIdentity, SystemRoots, TlsSettings};

/// The default `User-Agent`: `cachew-rs/<crate version>`.
pub(crate) const DEFAULT_USER_AGENT: &str = concat!("cachew-rs/", env!("CARGO_PKG_VERSION"));

/// Default for [`HttpClientBuilder::connect_timeout`] (Go's `net.Dialer`
/// timeout in `http.DefaultTransport`).
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`HttpClientBuilder::tls_handshake_timeout`] (Go's
/// `Transport.TLSHandshakeTimeout`).
pub(crate) const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`HttpClientBuilder::response_header_timeout`].
pub(crate) const DEFAULT_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`HttpClientBuilder::idle_timeout`].
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`HttpClientBuilder::max_retries`].
pub(crate) const DEFAULT_MAX_RETRIES: u32 = 3;
/// Default for [`HttpClientBuilder::retry_base_delay`].
pub(crate) const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
/// Default for [`HttpClientBuilder::retry_max_delay`].
pub(crate) const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(10);
/// Default for [`HttpClientBuilder::max_retry_after`].
pub(crate) const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Default for [`HttpClientBuilder::pool_idle_timeout`] (Go's `http.Transport` default).
pub(crate) const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The complete client stack as a clonable tower [`Service`].
///
/// This is what [`HttpClient::send`] calls; [`HttpClient::service`] hands it
/// out for endpoints outside the object API (the Go client's `HTTP()`), with
/// the same headers, retries, timeouts and tracing, or for composing more
/// tower layers on top.
#[derive(Clone)]
pub struct HttpService {
    inner: BoxCloneSyncService<Request<RequestBody>, Response<ResponseBody>, Error>,
}

impl fmt::Debug for HttpService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpService").finish_non_exhaustive()
    }
}

impl Service<Request<RequestBody>> for HttpService {
    type Response = Response<ResponseBody>;
    type Error = Error;
    type Future = BoxFuture<Result<Response<ResponseBody>, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        self.inner.call(req)
    }
}

/// A cheap-to-clone HTTP client for Cachew servers.
///
/// Every response is returned, whatever its status; a non-2xx status is not
/// an [`Error`] at this layer. See [`HttpClientBuilder`] for the settings and
/// the order of the layers.
#[derive(Clone)]
pub struct HttpClient {
    service: HttpService,
    settings: Arc<Settings>,
}

impl HttpClient {
    /// A builder with the defaults (see [`HttpClientBuilder`]).
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::default()
    }

    /// Sends a request through the whole stack and returns the response
    /// once its headers arrived; the body streams afterwards.
    ///
    /// The URI must be absolute (`http://` or `https://`).
    pub async fn send(&self, req: Request<RequestBody>) -> Result<Response<ResponseBody>, Error> {
        self.service.clone().oneshot(req).await
    }

    /// The stack as a tower service, for endpoints outside the object API.
    pub fn service(&self) -> HttpService {
        self.service.clone()
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("settings", &*self.settings)
            .finish_non_exhaustive()
    }
}

/// Settings kept for `Debug`; secrets are reduced to whether they are set.
struct Settings {
    connect_timeout: Duration,
    tls_handshake_timeout: Duration,
    response_header_timeout: Duration,
    idle_timeout: Duration,
    retry: RetryPolicy,
    pool_idle_timeout: Duration,
    headers: Arc<HeaderConfig>,
    custom_tls: bool,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_handshake_timeout", &self.tls_handshake_timeout)
            .field("response_header_timeout", &self.response_header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("retry", &self.retry)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("headers", &self.headers)
            .field("custom_tls", &self.custom_tls)
            .finish()
    }
}

/// Configures and builds an [`HttpClient`].
///
/// # Layers
///
/// hyper-util's pooled client is the innermost service; the others are tower
/// layers, outermost first:
///
/// 1. **trace**: an `http.request` span per call (method, path, status,
///    bytes, retries, error), open until the response body ends.
/// 2. **retry**: replays requests with a replayable body on connect errors,
///    and idempotent ones on 429/502/503/504, with jittered exponential
///    backoff or the server's `Retry-After`; see [`Idempotency`](crate::Idempotency).
/// 3. **headers**: `User-Agent`, the fixed `Authorization`, the
///    [`header_fn`](HttpClientBuilder::header_fn) hook, and with the `otel`
///    feature the W3C `traceparent`. Inside retry, so each attempt calls the
///    hook afresh (rotating tokens work).
/// 4. **timeout**: the header timeout for response headers and the idle timeout for each
///    response body chunk. Inside retry, so each attempt has its own clock.
/// 5. **hyper-util client** (innermost): keep-alive pool, HTTP/1.1, and
///    HTTP/2 when TLS negotiates it through ALPN; its connector is rustls
///    over hyper-util's `HttpConnector`, bounded by the connect timeout.
///
/// # TLS
///
/// `https://` uses rustls with the `ring` provider. It trusts what Go's
/// `net/http` trusts: the system store, with `SSL_CERT_FILE` replacing the
/// system bundle file and `SSL_CERT_DIR` (colon-separated) the system
/// certificate directories ([`SystemRoots`]); the Mozilla roots bundled by
/// `webpki-roots` only when the system has no root at all. To that,
/// [`ca_certificate_file`](HttpClientBuilder::ca_certificate_file) adds a
/// private CA, and [`client_certificate_files`](HttpClientBuilder::client_certificate_files)
/// sets a certificate for mutual TLS. ALPN offers `h2` and `http/1.1`.
/// [`tls_config`](HttpClientBuilder::tls_config) replaces all of this with a
/// configuration of the caller's.
pub struct HttpClientBuilder {
    connect_timeout: Duration,
    tls_handshake_timeout: Duration,
    response_header_timeout: Duration,
    idle_timeout: Duration,
    retry: RetryPolicy,
    header_fn: Option<HeaderFn>,
    authorization: Option<String>,
    user_agent: String,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    tls_config: Option<rustls::ClientConfig>,
    tls: TlsSettings,
    proxies: Option<Proxies>,
}

impl Default for HttpClientBuilder {
    fn default() -> Self {
        HttpClientBuilder {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            response_header_timeout: DEFAULT_RESPONSE_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            retry: RetryPolicy {
                max_retries: DEFAULT_MAX_RETRIES,
                base_delay: DEFAULT_RETRY_BASE_DELAY,
                max_delay: DEFAULT_RETRY_MAX_DELAY,
                max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            },
            header_fn: None,
            authorization: None,
            user_agent: DEFAULT_USER_AGENT.to_string(),
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: usize::MAX,
            tls_config: None,
            tls: TlsSettings::default(),
            proxies: None,
        }
    }
}

impl fmt::Debug for HttpClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_handshake_timeout", &self.tls_handshake_timeout)
            .field("response_header_timeout", &self.response_header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("retry", &self.retry)
            .field("header_fn", &self.header_fn.as_ref().map(|_| "<fn>"))
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("user_agent", &self.user_agent)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("tls_config", &self.tls_config.as_ref().map(|_| "<custom>"))
            .field("tls", &self.tls)
            .field("proxies", &self.proxies)
            .finish()
    }
}

impl HttpClientBuilder {
    /// Bound on establishing the TCP connection (to the server, or to a
    /// proxy including an `https://` proxy's TLS, its `CONNECT` tunnel or
    /// the SOCKS5 handshake). Default 30 s, as Go's. Exceeding it is a
    /// connect error, retried like one.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bound on the TLS handshake after the TCP connection. Default 10 s, as
    /// Go's. Exceeding it is a connect error, retried like one.
    #[must_use]
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.tls_handshake_timeout = timeout;
        self
    }

    /// Bound on the wait for the response headers. Default 60 s; a request
    /// carrying a [`ResponseHeaderTimeout`](crate::ResponseHeaderTimeout)
    /// extension waits that long instead (the Cachew client gives its git
    /// endpoints, where the server may clone a repository before it
    /// answers, 30 minutes).
    ///
    /// The wait starts with the request (so it also covers connection
    /// setup) and restarts whenever the request body hands another chunk
    /// (at most 64 KiB) to the connection; it is paused while a streaming
    /// body waits for the caller to produce data. Like Go's
    /// `ResponseHeaderTimeout`, it cannot see bytes still queued in the
    /// kernel's socket buffers, so after the last chunk the server has this
    /// long to drain them and answer. An idempotent request whose wait
    /// runs out is retried.
    #[must_use]
    pub fn response_header_timeout(mut self, timeout: Duration) -> Self {
        self.response_header_timeout = timeout;
        self
    }

    /// Bound on each wait for the next chunk of a response body: a transfer
    /// that stops delivering bytes for this long fails with
    /// [`Error::Timeout`](crate::Error::Timeout) (naming the URL and the
    /// wait) instead of hanging. Default 60 s.
    ///
    /// The wait starts when the caller asks for the next chunk, so a slow
    /// consumer is never blamed on the server.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Retries after the first attempt; 0 disables retries. Default 3.
    #[must_use]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// The first retry's backoff, doubled for each further retry and
    /// jittered into its upper half. Default 200 ms.
    #[must_use]
    pub fn retry_base_delay(mut self, delay: Duration) -> Self {
        self.retry.base_delay = delay;
        self
    }

    /// Upper bound of the computed backoff. Default 10 s.
    #[must_use]
    pub fn retry_max_delay(mut self, delay: Duration) -> Self {
        self.retry.max_delay = delay;
        self
    }

    /// Upper bound of a server's `Retry-After`. Default 30 s.
    #[must_use]
    pub fn max_retry_after(mut self, delay: Duration) -> Self {
        self.retry.max_retry_after = delay;
        self
    }

    /// A hook called for every request (every attempt, including retries)
    /// whose headers replace same-named request headers; the Go client's
    /// `HeaderFunc`. Use it for tokens that rotate.
    #[must_use]
    pub fn header_fn(mut self, f: impl Fn() -> HeaderMap + Send + Sync + 'static) -> Self {
        self.header_fn = Some(Arc::new(f));
        self
    }

    /// A fixed `Authorization` header value (e.g. `"Bearer …"`), added to
    /// requests that do not carry one. Never shown by `Debug` or in errors.
    #[must_use]
    pub fn authorization(mut self, value: impl Into<String>) -> Self {
        self.authorization = Some(value.into());
        self
    }

    /// The `User-Agent` for requests that do not set one. Default
    /// `cachew-rs/<version>`.
    #[must_use]
    pub fn user_agent(mut self, value: impl Into<String>) -> Self {
        self.user_agent = value.into();
        self
    }

    /// How long an unused pooled connection is kept. Default 90 s.
    #[must_use]
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// Maximum idle pooled connections per host. Default unlimited.
    #[must_use]
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Where the system roots come from. Default
    /// [`SystemRoots::from_env`], read when the client is built.
    #[must_use]
    pub fn system_roots(mut self, roots: SystemRoots) -> Self {
        self.tls.system = Some(roots);
        self
    }

    /// Also trusts the CA certificates in the PEM file at `path` (e.g. a
    /// company CA), on top of the system roots. May be called more than
    /// once. The file is read by [`build`](HttpClientBuilder::build), which
    /// fails if it holds no certificate.
    #[must_use]
    pub fn ca_certificate_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca_files.push(path.into());
        self
    }

    /// Presents the certificate chain in the PEM file `cert` with the
    /// private key in the PEM file `key` (PKCS#8, PKCS#1 or SEC1) to servers
    /// that ask for one (mutual TLS). Read by [`build`](HttpClientBuilder::build).
    #[must_use]
    pub fn client_certificate_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.tls.identity = Some(ClientIdentity {
            cert_file: cert.into(),
            key_file: key.into(),
        });
        self
    }

    /// Which proxy each request goes through. Default
    /// [`Proxies::from_env`] (Go's `ProxyFromEnvironment` rules), read when
    /// the client is built; [`Proxies::none`] to connect directly,
    /// [`Proxies::all`] for one proxy for everything.
    #[must_use]
    pub fn proxies(mut self, proxies: Proxies) -> Self {
        self.proxies = Some(proxies);
        self
    }

    /// Replaces the TLS configuration (roots, client certificates, …),
    /// overriding [`system_roots`](HttpClientBuilder::system_roots),
    /// [`ca_certificate_file`](HttpClientBuilder::ca_certificate_file) and
    /// [`client_certificate_files`](HttpClientBuilder::client_certificate_files).
    /// Its ALPN list is overwritten with `h2`, `http/1.1`.
    #[must_use]
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// Builds the client. Does not need a runtime; requests do (tokio).
    ///
    /// Fails with [`Error::Config`](crate::Error::Config) for a header value
    /// that is not valid in HTTP, naming the setting but not the value.
    pub fn build(self) -> Result<HttpClient, Error> {
        let user_agent = HeaderValue::from_str(&self.user_agent).map_err(|_| Error::Config {
            reason: "user_agent is not a valid header value".into(),
        })?;
        let authorization = match &self.authorization {
            Some(value) => {
                let mut value = HeaderValue::from_str(value).map_err(|_| Error::Config {
                    reason: "authorization is not a valid header value".into(),
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let headers = Arc::new(HeaderConfig {
            user_agent,
            authorization,
            header_fn: self.header_fn,
        });

        let custom_tls = self.tls_config.is_some();
        let mut tls = match self.tls_config {
            Some(config) => config,
            None => self.tls.client_config()?,
        };
        // An `https://` proxy is spoken to in HTTP/1.1 (CONNECT, absolute
        // form), as Go does; the origin may choose h2.
        let mut proxy_tls = tls.clone();
        proxy_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(30)));
        let proxies = Arc::new(self.proxies.unwrap_or_else(Proxies::from_env));
        let connector = Connector {
            inner: ProxyConnector {
                http,
                proxies: proxies.clone(),
                tls: Arc::new(proxy_tls),
                tls_timeout: self.tls_handshake_timeout,
            },
            tls: Arc::new(tls),
            connect_timeout: self.connect_timeout,
            tls_timeout: self.tls_handshake_timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);

        let stack = ServiceBuilder::new()
            .layer(TraceLayer)
            .layer(RetryLayer { policy: self.retry })
            .layer(HeaderLayer {
                config: headers.clone(),
            })
            .layer(TimeoutLayer {
                headers: self.response_header_timeout,
                idle: self.idle_timeout,
            })
            .service(HyperService { client, proxies });

        Ok(HttpClient {
            service: HttpService {
                inner: BoxCloneSyncService::new(stack),
            },
            settings: Arc::new(Settings {
                connect_timeout: self.connect_timeout,
                tls_handshake_timeout: self.tls_handshake_timeout,
                response_header_timeout: self.response_header_timeout,
                idle_timeout: self.idle_timeout,
                retry: self.retry,
                pool_idle_timeout: self.pool_idle_timeout,
                headers,
                custom_tls,
            }),
        })
    }
}

//! Proxies as Go's `net/http.ProxyFromEnvironment` chooses them, and the
//! connector that goes through them.
//!
//! Through an `http://` or `https://` proxy (TLS to the proxy first),
//! `http://` requests go to the proxy in absolute form (with
//! `Proxy-Authorization` from the proxy URL's credentials) and `https://`
//! requests open a `CONNECT` tunnel through it (hyper-util's [`Tunnel`])
//! and run TLS with the origin inside it. Through a `socks5://` or
//! `socks5h://` proxy (hyper-util's [`SocksV5`], the proxy resolves names,
//! user and password from the URL) every request is a plain stream to the
//! origin.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine as _;
use http::{HeaderValue, Uri};
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tower::{Service, ServiceExt};

use crate::error::{BoxError, Error, TimeoutKind};
use crate::layers::hyper_service::ConnectTimedOut;
use crate::layers::BoxFuture;

/// The kinds of proxy Go's `net/http` speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyKind {
    /// `http://`: plain HTTP to the proxy.
    Http,
    /// `https://`: HTTP over TLS to the proxy.
    Https,
    /// `socks5://` or `socks5h://` (the proxy resolves names for both, as
    /// in Go).
    Socks5,
}

/// One proxy: where it listens, and the `Proxy-Authorization` its URL's
/// credentials make.
#[derive(Clone)]
struct ProxyTarget {
    /// `scheme://host:port/`, credentials removed.
    uri: Uri,
    kind: ProxyKind,
    /// `Proxy-Authorization` for HTTP(S) proxies.
    auth: Option<HeaderValue>,
    /// User and password (decoded) for SOCKS5.
    credentials: Option<(String, String)>,
}

impl fmt::Debug for ProxyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("uri", &self.uri.to_string())
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Percent-decodes a URL's user or password.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(byte) = raw
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Basic base64(user:password)`, marked sensitive, from a URL's
/// percent-encoded userinfo (`user` or `user:password`).
pub(crate) fn basic_auth(userinfo: &str) -> HeaderValue {
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let plain = format!("{}:{}", percent_decode(user), percent_decode(pass));
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
    let mut value =
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

impl ProxyTarget {
    /// Parses a proxy setting as Go does: a URL with scheme `http`,
    /// `https`, `socks5` or `socks5h`, or else `host[:port]`, taken as
    /// `http://…`. The error never contains the value (it may hold a
    /// password).
    fn parse(raw: &str) -> Result<ProxyTarget, String> {
        let raw = raw.trim();
        let with_scheme = match raw.split_once("://") {
            Some((scheme, _))
                if ["http", "https", "socks5", "socks5h"]
                    .contains(&scheme.to_ascii_lowercase().as_str()) =>
            {
                raw.to_owned()
            }
            _ => format!("http://{raw}"),
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|_| "not a URL or host:port".to_string())?;
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let kind = match scheme.as_str() {
            "https" => ProxyKind::Https,
            "socks5" | "socks5h" => ProxyKind::Socks5,
            _ => ProxyKind::Http,
        };
        let authority = uri.authority().ok_or("no host")?.as_str();
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        if host_port.is_empty() {
            return Err("no host".into());
        }
        let has_port = host_port.rfind(':') > host_port.rfind(']');
        let default_port = match kind {
            ProxyKind::Https => 443,
            ProxyKind::Socks5 => 1080,
            ProxyKind::Http => 80,
        };
        let host_port = if has_port {
            host_port.to_owned()
        } else {
            format!("{host_port}:{default_port}")
        };
        let uri = format!("{scheme}://{host_port}/")
            .parse()
            .map_err(|_| "not a URL or host:port".to_string())?;
        let (auth, credentials) = match (kind, userinfo) {
            (_, None) => (None, None),
            (ProxyKind::Socks5, Some(userinfo)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let (user, pass) = (percent_decode(user), percent_decode(pass));
                if user.len() > 255 || pass.len() > 255 {
                    return Err("SOCKS5 user and password are at most 255 bytes each".into());
                }
                (None, Some((user, pass)))
            }
            (_, Some(userinfo)) => (Some(basic_auth(userinfo)), None),
        };
        Ok(ProxyTarget {
            uri,
            kind,
            auth,
            credentials,
        })
    }
}

/// One `NO_PROXY` entry.
#[derive(Debug, Clone)]
enum NoProxyRule {
    /// `*`.
    All,
    /// `10.0.0.0/8`, `fd00::/8`.
    Cidr { net: IpAddr, prefix: u8 },
    /// `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`.
    Ip { ip: IpAddr, port: Option<String> },
    /// `example.com` (the name and its subdomains), `.example.com` or
    /// `*.example.com` (subdomains only), each with an optional `:port`.
    /// `suffix` starts with a dot.
    Domain {
        suffix: String,
        port: Option<String>,
        match_host: bool,
    },
}

fn in_cidr(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }
    let ip = match (ip, net) {
        (IpAddr::V6(v6), IpAddr::V4(_)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => return false,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => return false,
        _ => ip,
    };
    let ((a, width), (b, _)) = (bits(ip), bits(net));
    if prefix == 0 {
        return true;
    }
    let prefix = u32::from(prefix.min(width));
    let mask = u128::MAX << (128 - prefix);
    a & mask == b & mask
}

/// Splits `host:port` / `[v6]:port`; `None` when there is no port.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let (host, port) = s.rsplit_once(':')?;
    if host.starts_with('[') {
        return host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .map(|h| (h, port));
    }
    if host.contains(':') {
        // A bare IPv6 address, not host:port.
        return None;
    }
    Some((host, port))
}

impl NoProxyRule {
    /// Parses one entry as Go's `httpproxy` does; `None` for a malformed one.
    fn parse(entry: &str) -> Option<NoProxyRule> {
        let p = entry.trim().to_ascii_lowercase();
        if p.is_empty() {
            return None;
        }
        if p == "*" {
            return Some(NoProxyRule::All);
        }
        if let Some((net, prefix)) = p.split_once('/') {
            if let (Ok(net), Ok(prefix)) = (net.parse::<IpAddr>(), prefix.parse::<u8>()) {
                let max = if net.is_ipv4() { 32 } else { 128 };
                if prefix <= max {
                    return Some(NoProxyRule::Cidr { net, prefix });
                }
            }
        }
        let (host, port) = match split_host_port(&p) {
            Some((host, port)) => (host.to_owned(), Some(port.to_owned())),
            None => (p.clone(), None),
        };
        if host.is_empty() {
            return None;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(NoProxyRule::Ip { ip, port });
        }
        let host = host.strip_prefix('*').unwrap_or(&host);
        if host.is_empty() {
            return None;
        }
        let (suffix, match_host) = match host.strip_prefix('.') {
            Some(_) => (host.to_owned(), false),
            None => (format!(".{host}"), true),
        };
        Some(NoProxyRule::Domain {
            suffix,
            port,
            match_host,
        })
    }

    fn matches(&self, host: &str, ip: Option<IpAddr>, port: &str) -> bool {
        let port_ok = |want: &Option<String>| want.as_deref().is_none_or(|w| w == port);
        match self {
            NoProxyRule::All => true,
            NoProxyRule::Cidr { net, prefix } => ip.is_some_and(|ip| in_cidr(ip, *net, *prefix)),
            NoProxyRule::Ip { ip: want, port: p } => ip == Some(*want) && port_ok(p),
            NoProxyRule::Domain {
                suffix,
                port: p,
                match_host,
            } => {
                ip.is_none()
                    && (host.ends_with(suffix.as_str()) || (*match_host && host == &suffix[1..]))
                    && port_ok(p)
            }
        }
    }
}

/// Which proxy, if any, each request goes through.
///
/// [`Proxies::from_env`] is what a client uses unless told otherwise
/// ([`HttpClientBuilder::proxies`](crate::HttpClientBuilder::proxies)). It
/// follows Go's `net/http.ProxyFromEnvironment`:
///
/// - `HTTP_PROXY` for `http://` requests, `HTTPS_PROXY` for `https://`
///   ones (the upper-case name wins; `http_proxy` etc. otherwise). As curl
///   does (Go does not), `ALL_PROXY` is the fallback for both. A value is a
///   URL (`http://user:pass@proxy:3128`) or `host:port` (`http` assumed);
///   an unparsable one is ignored, as in Go.
/// - Requests to `localhost` and to loopback addresses never use a proxy.
/// - `NO_PROXY`: comma-separated; `*` (no proxy at all), an IP address
///   (`10.1.2.3`), a CIDR block (`10.0.0.0/8`), a domain (`example.com`:
///   it and its subdomains; `.example.com` or `*.example.com`: subdomains
///   only); IP addresses and domains may carry a port (`example.com:8080`),
///   then only that port is excluded.
/// - Under CGI (`REQUEST_METHOD` set) `HTTP_PROXY` is ignored, since a
///   client could set it through the `Proxy:` request header.
///
/// A proxy is an `http://` or `https://` (TLS to the proxy, verified with
/// the client's trust) HTTP proxy, or a `socks5://` / `socks5h://` one
/// (both let the proxy resolve names, as Go does). Credentials in a proxy
/// URL become `Proxy-Authorization: Basic …` for an HTTP(S) proxy and the
/// user/password method for SOCKS5.
#[derive(Clone, Default)]
pub struct Proxies {
    http: Option<ProxyTarget>,
    https: Option<ProxyTarget>,
    no_proxy: Vec<NoProxyRule>,
    /// Go's special case for environment settings: loopback is direct.
    loopback_direct: bool,
}

impl fmt::Debug for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxies")
            .field("http", &self.http)
            .field("https", &self.https)
            .field("no_proxy", &self.no_proxy)
            .field("loopback_direct", &self.loopback_direct)
            .finish()
    }
}

impl Proxies {
    /// No proxy for any request.
    pub fn none() -> Proxies {
        Proxies::default()
    }

    /// Every request, loopback included, through the proxy at `url` (Go's
    /// `http.ProxyURL`). Fails for a value that is neither a URL nor
    /// `host:port`; the error does not repeat the value.
    pub fn all(url: &str) -> Result<Proxies, Error> {
        let target = ProxyTarget::parse(url).map_err(|why| Error::Config {
            reason: format!("invalid proxy URL: {why}"),
        })?;
        Ok(Proxies {
            http: Some(target.clone()),
            https: Some(target),
            no_proxy: Vec::new(),
            loopback_direct: false,
        })
    }

    /// The settings of the process environment (see the type's docs).
    pub fn from_env() -> Proxies {
        Proxies::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Proxies::from_env), with the variables looked up
    /// through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Proxies {
        let any = |names: [&str; 2]| {
            names
                .into_iter()
                .find_map(|n| var(n).filter(|v| !v.trim().is_empty()))
        };
        let parse = |name: &str, value: Option<String>| {
            value.and_then(|v| match ProxyTarget::parse(&v) {
                Ok(target) => Some(target),
                Err(why) => {
                    tracing::warn!("ignoring {name}: {why}");
                    None
                }
            })
        };
        let all = parse("ALL_PROXY", any(["ALL_PROXY", "all_proxy"]));
        let cgi = var("REQUEST_METHOD").is_some_and(|v| !v.is_empty());
        let http = if cgi {
            None
        } else {
            parse("HTTP_PROXY", any(["HTTP_PROXY", "http_proxy"])).or_else(|| all.clone())
        };
        let https = parse("HTTPS_PROXY", any(["HTTPS_PROXY", "https_proxy"])).or(all);
        let no_proxy = any(["NO_PROXY", "no_proxy"])
            .map(|list| list.split(',').filter_map(NoProxyRule::parse).collect())
            .unwrap_or_default();
        Proxies {
            http,
            https,
            no_proxy,
            loopback_direct: true,
        }
    }

    /// Whether any request could use a proxy.
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The proxy for a request to `uri`, if any.
    fn intercept(&self, uri: &Uri) -> Option<&ProxyTarget> {
        let target = match uri.scheme_str() {
            Some("https") => self.https.as_ref(),
            Some("http") => self.http.as_ref(),
            _ => None,
        }?;
        let host = uri.host()?.to_ascii_lowercase();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host);
        let ip = host.parse::<IpAddr>().ok();
        if self.loopback_direct && (host == "localhost" || ip.is_some_and(|ip| ip.is_loopback())) {
            return None;
        }
        let port = match uri.port_u16() {
            Some(port) => port.to_string(),
            None if uri.scheme_str() == Some("https") => "443".into(),
            None => "80".into(),
        };
        if self.no_proxy.iter().any(|r| r.matches(host, ip, &port)) {
            return None;
        }
        Some(target)
    }

    /// The proxy URL (without credentials) a request to `uri` would use;
    /// for diagnostics and tests.
    pub fn proxy_for(&self, uri: &Uri) -> Option<String> {
        self.intercept(uri).map(|t| t.uri.to_string())
    }

    /// The `Proxy-Authorization` an `http://` request to `uri` needs: the
    /// request goes to the proxy itself, so the header travels with it.
    pub(crate) fn http_proxy_authorization(&self, uri: &Uri) -> Option<HeaderValue> {
        if uri.scheme_str() != Some("http") {
            return None;
        }
        // A SOCKS5 proxy passes the request to the origin untouched: it
        // must carry no proxy credentials (`auth` is `None` there anyway).
        let target = self.intercept(uri)?;
        match target.kind {
            ProxyKind::Http | ProxyKind::Https => target.auth.clone(),
            ProxyKind::Socks5 => None,
        }
    }
}

/// The transport under a [`ProxyStream`]: TCP (direct, to an HTTP
/// proxy, or tunnelled through one), or TLS to an `https://` proxy.
#[derive(Debug)]
enum Io {
    Tcp(TokioIo<TcpStream>),
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

/// A stream to the origin or to a proxy, which says whether it leads to an
/// HTTP proxy (so hyper sends absolute-form request targets on it).
#[derive(Debug)]
pub(crate) struct ProxyStream {
    inner: Io,
    to_http_proxy: bool,
}

impl ProxyStream {
    fn tcp(inner: TokioIo<TcpStream>, to_http_proxy: bool) -> ProxyStream {
        ProxyStream {
            inner: Io::Tcp(inner),
            to_http_proxy,
        }
    }
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        let connected = match &self.inner {
            Io::Tcp(tcp) => tcp.connected(),
            Io::Tls(tls) => tls.inner().get_ref().0.connected(),
        };
        connected.proxy(self.to_http_proxy)
    }
}

/// Delegates one `hyper::rt` I/O call to whichever stream is inside.
macro_rules! delegate {
    ($self:ident, $io:ident => $call:expr) => {
        match &mut $self.inner {
            Io::Tcp($io) => {
                let $io = Pin::new($io);
                $call
            }
            Io::Tls(tls) => {
                let $io = Pin::new(&mut **tls);
                $call
            }
        }
    };
}

impl hyper::rt::Read for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, io => io.poll_read(cx, buf))
    }
}

impl hyper::rt::Write for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => io.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => io.poll_shutdown(cx))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Io::Tcp(tcp) => tcp.is_write_vectored(),
            Io::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => io.poll_write_vectored(cx, bufs))
    }
}

/// Connects directly, to an HTTP(S) proxy, through a `CONNECT` tunnel, or
/// through a SOCKS5 proxy, as [`Proxies`] says; TLS with an `https://`
/// origin is layered on top by the caller.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    pub(crate) http: HttpConnector,
    pub(crate) proxies: Arc<Proxies>,
    /// For `https://` proxies (ALPN `http/1.1` only: the proxy is spoken
    /// to in HTTP/1.1, as Go does).
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// Bounds the TLS handshake with an `https://` proxy.
    pub(crate) tls_timeout: std::time::Duration,
}

impl fmt::Debug for ProxyConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConnector")
            .field("proxies", &self.proxies)
            .field("tls_timeout", &self.tls_timeout)
            .finish_non_exhaustive()
    }
}

/// Why a proxy could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ProxyError(String);

fn proxy_error(message: String) -> BoxError {
    Box::new(ProxyError(message))
}

/// A connector that hands out one stream made beforehand, so that
/// hyper-util's `Tunnel` and `SocksV5` run their handshakes on a
/// connection whose own errors (refused, TLS) we report ourselves.
fn handing_over<S: Send + 'static>(
    stream: S,
) -> impl Service<Uri, Response = S, Error = BoxError, Future = BoxFuture<Result<S, BoxError>>> + Clone
{
    let slot = Arc::new(std::sync::Mutex::new(Some(stream)));
    tower::service_fn(move |_: Uri| {
        let stream = slot.lock().ok().and_then(|mut s| s.take());
        Box::pin(
            async move { stream.ok_or_else(|| proxy_error("proxy stream already used".into())) },
        ) as BoxFuture<Result<S, BoxError>>
    })
}

/// `dst` with its port spelled out (SOCKS needs one; hyper-util would
/// assume 443 for `http://`).
fn with_port(dst: &Uri) -> Result<Uri, BoxError> {
    let port = dst
        .port_u16()
        .unwrap_or(if dst.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let host = dst.host().unwrap_or_default();
    format!("{}://{host}:{port}/", dst.scheme_str().unwrap_or("http"))
        .parse()
        .map_err(|e| Box::new(e) as BoxError)
}

impl ProxyConnector {
    /// TCP to the proxy and, for an `https://` one, TLS with it.
    async fn to_proxy(&self, target: &ProxyTarget) -> Result<ProxyStream, BoxError> {
        let proxy = target.uri.to_string();
        let tcp = self
            .http
            .clone()
            .oneshot(target.uri.clone())
            .await
            .map_err(|e| proxy_error(format!("connecting to proxy {proxy}: {e}")))?;
        if target.kind != ProxyKind::Https {
            return Ok(ProxyStream::tcp(tcp, false));
        }
        let host = target.uri.host().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| proxy_error(format!("proxy {proxy}: {e}")))?;
        let handshake =
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp.into_inner());
        match tokio::time::timeout(self.tls_timeout, handshake).await {
            Ok(Ok(tls)) => Ok(ProxyStream {
                inner: Io::Tls(Box::new(TokioIo::new(tls))),
                to_http_proxy: false,
            }),
            Ok(Err(e)) => Err(proxy_error(format!(
                "TLS handshake with proxy {proxy}: {e}"
            ))),
            Err(_) => Err(Box::new(ConnectTimedOut {
                kind: TimeoutKind::TlsHandshake,
                after: self.tls_timeout,
            })),
        }
    }

    async fn connect(self, dst: Uri, target: Option<ProxyTarget>) -> Result<ProxyStream, BoxError> {
        let Some(target) = target else {
            let inner = self.http.clone().oneshot(dst).await?;
            return Ok(ProxyStream::tcp(inner, false));
        };
        let proxy = target.uri.to_string();
        tracing::debug!(%proxy, "connecting through proxy");
        if target.kind == ProxyKind::Socks5 {
            let tcp = self
                .http
                .clone()
                .oneshot(target.uri.clone())
                .await
                .map_err(|e| proxy_error(format!("connecting to proxy {proxy}: {e}")))?;
            let mut socks = SocksV5::new(target.uri.clone(), handing_over(tcp));
            if let Some((user, pass)) = target.credentials.clone() {
                socks = socks.with_auth(user, pass);
            }
            let inner = socks
                .oneshot(with_port(&dst)?)
                .await
                .map_err(|e| proxy_error(format!("through SOCKS5 proxy {proxy}: {e}")))?;
            return Ok(ProxyStream::tcp(inner, false));
        }
        let mut stream = self.to_proxy(&target).await?;
        if dst.scheme_str() != Some("https") {
            stream.to_http_proxy = true;
            return Ok(stream);
        }
        let mut tunnel = Tunnel::new(target.uri.clone(), handing_over(stream));
        if let Some(auth) = target.auth {
            tunnel = tunnel.with_auth(auth);
        }
        let mut stream = tunnel
            .oneshot(dst)
            .await
            .map_err(|e| proxy_error(format!("CONNECT tunnel through {proxy}: {e}")))?;
        stream.to_http_proxy = false;
        Ok(stream)
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = BoxFuture<Result<ProxyStream, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let target = self.proxies.intercept(&dst).cloned();
        Box::pin(self.clone().connect(dst, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Proxies {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Proxies::from_vars(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    fn via(p: &Proxies, url: &str) -> Option<String> {
        p.proxy_for(&url.parse().unwrap())
    }

    #[test]
    fn scheme_picks_the_variable_and_upper_case_wins() {
        let p = env(&[
            ("HTTP_PROXY", "http://hp:1"),
            ("http_proxy", "http://lower:1"),
            ("https_proxy", "sp:2"),
        ]);
        assert_eq!(
            via(&p, "http://a.example/").as_deref(),
            Some("http://hp:1/")
        );
        assert_eq!(
            via(&p, "https://a.example/").as_deref(),
            Some("http://sp:2/")
        );
        let p = env(&[("HTTPS_PROXY", "http://sp:2")]);
        assert_eq!(via(&p, "http://a.example/"), None);
        let p = env(&[("ALL_PROXY", "http://all:3"), ("HTTP_PROXY", "hp")]);
        assert_eq!(
            via(&p, "http://a.example/").as_deref(),
            Some("http://hp:80/")
        );
        assert_eq!(
            via(&p, "https://a.example/").as_deref(),
            Some("http://all:3/")
        );
        let p = env(&[("HTTP_PROXY", "hp:1"), ("REQUEST_METHOD", "GET")]);
        assert_eq!(via(&p, "http://a.example/"), None);
    }

    #[test]
    fn loopback_is_direct_for_environment_settings_only() {
        let p = env(&[("HTTP_PROXY", "hp:1")]);
        for url in [
            "http://localhost:8080/",
            "http://127.0.0.1/",
            "http://127.9.9.9:1/",
            "http://[::1]:80/",
        ] {
            assert_eq!(via(&p, url), None, "{url}");
        }
        assert!(via(&p, "http://localhost.example/").is_some());
        let all = Proxies::all("http://u:p@proxy:3128").unwrap();
        assert_eq!(
            via(&all, "http://127.0.0.1/").as_deref(),
            Some("http://proxy:3128/")
        );
        assert!(Proxies::all("http://[bad").is_err());
    }

    #[test]
    fn no_proxy_follows_go() {
        let p = env(&[
            ("HTTPS_PROXY", "proxy:1"),
            (
                "NO_PROXY",
                " foo.com, .y.com ,*.z.com, bar.org:8443, 10.0.0.0/8, 192.168.1.1, [fd00::1]:443, 172.16.0.9:80",
            ),
        ]);
        for (url, proxied) in [
            ("https://foo.com/", false),
            ("https://x.foo.com/", false),
            ("https://FOO.com/", false),
            ("https://notfoo.com/", true),
            ("https://y.com/", true),
            ("https://x.y.com/", false),
            ("https://z.com/", true),
            ("https://a.z.com/", false),
            ("https://bar.org:8443/", false),
            ("https://bar.org/", true),
            ("https://10.2.3.4/", false),
            ("https://11.2.3.4/", true),
            ("https://192.168.1.1:9/", false),
            ("https://[fd00::1]/", false),
            ("https://[fd00::1]:8443/", true),
            ("https://172.16.0.9/", true),
        ] {
            assert_eq!(via(&p, url).is_some(), proxied, "{url}");
        }
        let star = env(&[("HTTPS_PROXY", "proxy:1"), ("no_proxy", "*")]);
        assert_eq!(via(&star, "https://anything.example/"), None);
    }

    #[test]
    fn credentials_become_basic_auth_and_stay_out_of_debug() {
        let p = Proxies::all("http://us%40er:s3cr%3At@proxy:3128").unwrap();
        let auth = p
            .http_proxy_authorization(&"http://a.example/".parse().unwrap())
            .unwrap();
        let want = base64::engine::general_purpose::STANDARD.encode("us@er:s3cr:t");
        assert_eq!(auth.to_str().unwrap(), format!("Basic {want}"));
        assert!(auth.is_sensitive());
        let text = format!("{p:?}");
        assert!(!text.contains("s3cr") && !text.contains(&want), "{text}");
        let err = Proxies::all("http://u:s3cr@[bad").unwrap_err().to_string();
        assert!(!err.contains("s3cr"), "{err}");
    }

    #[test]
    fn https_and_socks5_proxies_parse_as_in_go() {
        let p = env(&[
            ("HTTPS_PROXY", "SOCKS5H://su:s0cks@sp"),
            ("HTTP_PROXY", "https://hu:h77ps@hp"),
        ]);
        assert_eq!(
            via(&p, "https://a.example/").as_deref(),
            Some("socks5h://sp:1080/")
        );
        assert_eq!(
            via(&p, "http://a.example/").as_deref(),
            Some("https://hp:443/")
        );
        let text = format!("{p:?}");
        assert!(!text.contains("s0cks") && !text.contains("h77ps"), "{text}");
        // The user/password method for SOCKS5; Basic for an https:// proxy.
        let socks = Proxies::all("socks5://us%40er:p%3Ass@sp:9").unwrap();
        let target = socks.https.as_ref().unwrap();
        assert_eq!(target.kind, ProxyKind::Socks5);
        assert_eq!(
            target.credentials,
            Some(("us@er".to_owned(), "p:ss".to_owned()))
        );
        // A request through SOCKS5 reaches the origin: no proxy header.
        assert!(socks
            .http_proxy_authorization(&"http://a.example/".parse().unwrap())
            .is_none());
        let https = Proxies::all("https://u:pw@hp").unwrap();
        assert!(https
            .http_proxy_authorization(&"http://a.example/".parse().unwrap())
            .is_some());
        let long = format!("socks5://{}:pw@sp", "u".repeat(256));
        assert!(Proxies::all(&long).is_err());
    }
}

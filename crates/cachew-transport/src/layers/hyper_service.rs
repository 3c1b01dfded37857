//! The innermost service: hyper-util's pooled client, behind a connector
//! that bounds the connect and the TLS handshake time.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use tower::Service;

use super::BoxFuture;
use crate::body::RequestBody;
use crate::error::{find_in_chain, origin_of, url_of, BoxError, Error, TimeoutKind};
use crate::proxy::{Proxies, ProxyConnector, ProxyStream};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

/// Marker error for a connect or TLS handshake timeout, found again in
/// hyper-util's error chain.
#[derive(Debug)]
pub(crate) struct ConnectTimedOut {
    pub(crate) kind: TimeoutKind,
    pub(crate) after: Duration,
}

impl fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {:?} {}", self.after, self.kind)
    }
}

impl StdError for ConnectTimedOut {}

/// The connector: TCP (direct, to an HTTP proxy, or through a `CONNECT`
/// tunnel; [`ProxyConnector`]) bounded by the connect timeout, then for
/// `https://` the rustls handshake with the origin bounded by the TLS
/// handshake timeout, as Go's `Dialer.Timeout` and
/// `Transport.TLSHandshakeTimeout` bound them.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) inner: ProxyConnector,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) connect_timeout: Duration,
    pub(crate) tls_timeout: Duration,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("inner", &self.inner)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_timeout", &self.tls_timeout)
            .finish_non_exhaustive()
    }
}

impl Service<Uri> for Connector {
    type Response = MaybeHttpsStream<ProxyStream>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let (connect_timeout, tls_timeout) = (self.connect_timeout, self.tls_timeout);
        let tls = self.tls.clone();
        let https = dst.scheme_str() == Some("https");
        let server_name = dst.host().map(|h| {
            h.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(h)
                .to_owned()
        });
        let tcp = self.inner.call(dst);
        Box::pin(async move {
            let tcp = match tokio::time::timeout(connect_timeout, tcp).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(Box::new(ConnectTimedOut {
                        kind: TimeoutKind::Connect,
                        after: connect_timeout,
                    }) as BoxError)
                }
            };
            if !https {
                return Ok(MaybeHttpsStream::Http(tcp));
            }
            let name = ServerName::try_from(server_name.unwrap_or_default())
                .map_err(|e| Box::new(e) as BoxError)?;
            let handshake = tokio_rustls::TlsConnector::from(tls).connect(name, TokioIo::new(tcp));
            match tokio::time::timeout(tls_timeout, handshake).await {
                Ok(stream) => Ok(MaybeHttpsStream::from(stream?)),
                Err(_) => Err(Box::new(ConnectTimedOut {
                    kind: TimeoutKind::TlsHandshake,
                    after: tls_timeout,
                }) as BoxError),
            }
        })
    }
}

/// hyper-util's client as a tower service with the transport's [`Error`].
#[derive(Clone)]
pub(crate) struct HyperService<C> {
    pub(crate) client: Client<C, RequestBody>,
    /// For the `Proxy-Authorization` of requests sent to an HTTP proxy.
    pub(crate) proxies: Arc<Proxies>,
}

impl<C> fmt::Debug for HyperService<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperService").finish_non_exhaustive()
    }
}

impl<C> Service<Request<RequestBody>> for HyperService<C>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    type Response = Response<Incoming>;
    type Error = Error;
    type Future = BoxFuture<Result<Response<Incoming>, Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<RequestBody>) -> Self::Future {
        if let Err(err) = validate_uri(req.uri()) {
            return Box::pin(std::future::ready(Err(err)));
        }
        if let Some(auth) = self.proxies.http_proxy_authorization(req.uri()) {
            req.headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, auth);
        }
        let (origin, url) = (origin_of(req.uri()), url_of(req.uri()));
        let fut = self.client.request(req);
        Box::pin(async move { fut.await.map_err(|err| map_client_error(err, origin, url)) })
    }
}

fn validate_uri(uri: &Uri) -> Result<(), Error> {
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(_) => {
            return Err(Error::InvalidRequest {
                reason: "only http:// and https:// URLs are supported".into(),
            })
        }
        None => {
            return Err(Error::InvalidRequest {
                reason: "the URL must be absolute (scheme://host/...)".into(),
            })
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(Error::InvalidRequest {
            reason: "the URL has no host".into(),
        });
    }
    Ok(())
}

fn map_client_error(err: hyper_util::client::legacy::Error, origin: String, url: String) -> Error {
    if err.is_connect() {
        if let Some(t) = find_in_chain::<ConnectTimedOut>(&err) {
            return Error::Timeout {
                kind: t.kind,
                after: t.after,
                url,
            };
        }
        return Error::Connect {
            url: origin,
            source: Box::new(err),
        };
    }
    Error::from_boxed(Box::new(err))
}

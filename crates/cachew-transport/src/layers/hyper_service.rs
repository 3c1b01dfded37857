//! The innermost service: hyper-util's pooled client, behind a connector
//! that bounds connect + TLS handshake time.

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
use crate::error::{find_in_chain, origin_of, BoxError, Error, TimeoutKind};
use crate::proxy::Proxies;

/// A connector that fails with [`ConnectTimedOut`] when `inner` (TCP connect
/// plus TLS handshake) takes longer than `timeout`.
#[derive(Clone, Debug)]
pub(crate) struct TimeoutConnector<C> {
    pub(crate) inner: C,
    pub(crate) timeout: Duration,
}

/// Marker error for a connect timeout, found again in hyper-util's error chain.
#[derive(Debug)]
pub(crate) struct ConnectTimedOut(Duration);

impl fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connect timed out after {:?}", self.0)
    }
}

impl StdError for ConnectTimedOut {}

impl<C> Service<Uri> for TimeoutConnector<C>
where
    C: Service<Uri> + Send + 'static,
    C::Response: Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<C::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        let fut = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(timeout, fut).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(ConnectTimedOut(timeout)) as BoxError),
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
        let origin = origin_of(req.uri());
        let fut = self.client.request(req);
        Box::pin(async move { fut.await.map_err(|err| map_client_error(err, origin)) })
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

fn map_client_error(err: hyper_util::client::legacy::Error, origin: String) -> Error {
    if err.is_connect() {
        if let Some(t) = find_in_chain::<ConnectTimedOut>(&err) {
            return Error::Timeout {
                kind: TimeoutKind::Connect,
                after: t.0,
                url: origin,
            };
        }
        return Error::Connect {
            url: origin,
            source: Box::new(err),
        };
    }
    Error::from_boxed(Box::new(err))
}

//! The HTTP client object_store's cloud stores send through:
//! cachew-transport's [`HttpClient`](cachew_transport::HttpClient), so S3,
//! GCS and Azure requests get the same TLS trust (`SSL_CERT_FILE`, the
//! system store), proxies (`HTTPS_PROXY`, `NO_PROXY`) and timeouts as every
//! other request cachew makes, with no second HTTP stack. Retries are
//! object_store's (its `RetryConfig`), so the transport's are off.

use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use cachew_transport::{HttpClient as Transport, RequestBody, ResponseBody};
use http_body_util::BodyExt;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::ClientOptions;

/// An [`HttpConnector`] that hands out cachew-transport clients.
#[derive(Debug, Clone)]
pub(crate) struct TransportConnector {
    client: Transport,
}

impl TransportConnector {
    pub(crate) fn new() -> Result<TransportConnector, cachew_transport::Error> {
        let client = Transport::builder().max_retries(0).build()?;
        Ok(TransportConnector { client })
    }
}

impl HttpConnector for TransportConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(TransportService {
            client: self.client.clone(),
        }))
    }
}

#[derive(Debug)]
struct TransportService {
    client: Transport,
}

#[async_trait]
impl HttpService for TransportService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        // Request bodies are at most one part, already in memory: sent with
        // a Content-Length, as S3's signature wants.
        let bytes: Bytes = match body.as_bytes() {
            Some(bytes) => bytes.clone(),
            None => body.collect().await?.to_bytes(),
        };
        let req = http::Request::from_parts(parts, RequestBody::full(bytes));
        let response = self.client.send(req).await.map_err(|e| {
            let kind = match &e {
                cachew_transport::Error::Connect { .. } => HttpErrorKind::Connect,
                cachew_transport::Error::Timeout { .. } => HttpErrorKind::Timeout,
                _ => HttpErrorKind::Request,
            };
            HttpError::new(kind, e)
        })?;
        let (parts, body) = response.into_parts();
        let body = HttpResponseBody::new(SyncBody(Mutex::new(body)));
        Ok(HttpResponse::from_parts(parts, body))
    }
}

/// A response body made `Sync`, as object_store's body type asks; only
/// ever polled through `&mut`, so the lock is never contended.
struct SyncBody(Mutex<ResponseBody>);

impl http_body::Body for SyncBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        let body = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        Pin::new(body)
            .poll_frame(cx)
            .map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e))
    }
}

//! The tracing layer: one `http.request` span per request.
//!
//! Fields: `http.method`, `url.path` (never the query, which may carry
//! tokens), `http.status`, `bytes` (response body bytes, recorded when the
//! body ends or is dropped), `retries` and `error`. The span stays open until
//! the response body is finished, so it covers the whole transfer.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};
use tracing::field::{display, Empty};
use tracing::Instrument;

use super::BoxFuture;
use crate::body::{RequestBody, ResponseBody};
use crate::error::Error;

/// Wraps each request in a span.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner }
    }
}

/// The service produced by [`TraceLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Trace<S> {
    inner: S,
}

impl<S> Service<Request<RequestBody>> for Trace<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Error;
    type Future = BoxFuture<Result<Response<ResponseBody>, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        let span = tracing::info_span!(
            "http.request",
            http.method = %req.method(),
            url.path = %req.uri().path(),
            http.status = Empty,
            bytes = Empty,
            retries = Empty,
            error = Empty,
        );
        let fut = span.in_scope(|| self.inner.call(req));
        Box::pin(async move {
            let result = fut.instrument(span.clone()).await;
            match result {
                Ok(mut resp) => {
                    span.record("http.status", resp.status().as_u16());
                    resp.body_mut().attach_span(span);
                    Ok(resp)
                }
                Err(err) => {
                    span.record("error", display(&err));
                    Err(err)
                }
            }
        })
    }
}

//! The timeout layer: bounds the wait for response headers (the client's
//! header timeout, or a request's [`ResponseHeaderTimeout`]) and wraps the
//! response body in the idle timeout.
//!
//! The wait for headers is an *idle* timeout too: the clock restarts whenever
//! the request body hands a chunk to the connection, and is paused while a
//! streaming body waits for the caller to produce data. So a long upload is
//! fine as long as it keeps moving, and the timer only measures the server.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::{Layer, Service};

use super::BoxFuture;
use crate::body::{Progress, RequestBody, ResponseBody};
use crate::error::{url_of, Error, TimeoutKind};

/// A request extension that sets how long this request waits for the
/// response headers, instead of the client's
/// [`response_header_timeout`](crate::HttpClientBuilder::response_header_timeout).
///
/// For endpoints where the server does work before it answers: the
/// Cachew client sets a long one on the git snapshot, bundle and
/// ensure-refs requests, since a server may clone a cold repository first.
/// The transport never guesses from the path.
///
/// ```
/// use std::time::Duration;
/// use cachew_transport::{RequestBody, ResponseHeaderTimeout};
/// let mut req = http::Request::get("http://127.0.0.1:8080/slow")
///     .body(RequestBody::empty())
///     .unwrap();
/// req.extensions_mut()
///     .insert(ResponseHeaderTimeout(Duration::from_secs(30 * 60)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeaderTimeout(pub Duration);

/// Applies the header timeout to response headers and the idle timeout to
/// response bodies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimeoutLayer {
    pub(crate) headers: Duration,
    pub(crate) idle: Duration,
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            headers: self.headers,
            idle: self.idle,
        }
    }
}

/// The service produced by [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Timeout<S> {
    inner: S,
    headers: Duration,
    idle: Duration,
}

impl<S> Service<Request<RequestBody>> for Timeout<S>
where
    S: Service<Request<RequestBody>, Response = Response<Incoming>, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Error;
    type Future = BoxFuture<Result<Response<ResponseBody>, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<RequestBody>) -> Self::Future {
        let idle = self.idle;
        let wait = req
            .extensions()
            .get::<ResponseHeaderTimeout>()
            .map_or(self.headers, |t| t.0);
        let url = url_of(req.uri());
        let progress = Arc::new(Progress::new());
        req.body_mut().set_progress(progress.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut fut = pin!(fut);
            let mut sleep = pin!(tokio::time::sleep(wait));
            let result = std::future::poll_fn(|cx| {
                if let Poll::Ready(result) = fut.as_mut().poll(cx) {
                    return Poll::Ready(Some(result));
                }
                loop {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let now = tokio::time::Instant::now();
                    match progress.deadline(wait) {
                        // The body waits for the caller: not the server's fault.
                        None => sleep.as_mut().reset(now + wait),
                        Some(deadline) => {
                            if deadline <= now {
                                return Poll::Ready(None);
                            }
                            sleep.as_mut().reset(deadline);
                        }
                    }
                }
            })
            .await;
            match result {
                Some(Ok(resp)) => Ok(resp.map(|body| ResponseBody::incoming(body, idle, url))),
                // Whatever hyper made of it, a request whose body the caller
                // aborted failed because of that abort.
                Some(Err(err)) => match progress.aborted() {
                    Some(cause) if !err.is_body_aborted() => Err(Error::BodyAborted { cause }),
                    _ => Err(err),
                },
                None => Err(Error::Timeout {
                    kind: TimeoutKind::ResponseHeaders,
                    after: wait,
                    url,
                }),
            }
        })
    }
}

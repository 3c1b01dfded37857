//! The retry layer: jittered exponential backoff for requests that are safe
//! to repeat.
//!
//! A request is retried when its body can be replayed (never a streaming
//! upload) and
//! - it failed to connect (nothing reached the server, so this holds for any
//!   method), or
//! - it is idempotent (see [`Idempotency`]) and the server answered 429, 502,
//!   503 or 504 (501 and every other status are final), or
//! - it is idempotent and the connection was closed or reset before any
//!   response arrived, the usual fate of a request sent on a pooled
//!   connection the server had just closed (Go's transport retries these
//!   too), or
//! - it is idempotent and waiting for the response headers timed out (a
//!   connect or TLS handshake timeout counts as a connect error). A body
//!   that stalls after the headers arrived belongs to the caller by then
//!   and is not retried here.
//!
//! `Retry-After` (seconds or an HTTP date) replaces the computed backoff,
//! capped at [`RetryPolicy::max_retry_after`].

use std::io;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};

use super::BoxFuture;
use crate::body::{RequestBody, ResponseBody};
use crate::error::{find_in_chain, Error};

/// A request extension that overrides the retry layer's idempotency
/// classification.
///
/// Without it, idempotency follows the method alone (RFC 9110 §9.2.2):
/// `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT` and `DELETE` are idempotent, and
/// every other method is not. The transport does not know which endpoints
/// are safe to repeat; whoever builds a request does, and marks it — the
/// Cachew client marks its `POST …/invalidate` and `POST …/ensure-refs`
/// requests [`Idempotency::Idempotent`] this way.
///
/// ```
/// use cachew_transport::{Idempotency, RequestBody};
/// let mut req = http::Request::post("http://127.0.0.1:8080/custom")
///     .body(RequestBody::full("{}"))
///     .unwrap();
/// req.extensions_mut().insert(Idempotency::Idempotent);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Safe to repeat: retried on 429/502/503/504 as well as connect errors.
    Idempotent,
    /// Not safe to repeat: retried only on connect errors.
    NonIdempotent,
}

/// Whether `req` may be repeated after the server has seen it.
pub(crate) fn is_idempotent<B>(req: &Request<B>) -> bool {
    if let Some(explicit) = req.extensions().get::<Idempotency>() {
        return *explicit == Idempotency::Idempotent;
    }
    // RFC 9110 §9.2.2: the safe methods, plus PUT and DELETE.
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Retry settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` attempts).
    pub(crate) max_retries: u32,
    /// The first backoff; doubled for each further retry.
    pub(crate) base_delay: Duration,
    /// Upper bound of the computed backoff.
    pub(crate) max_delay: Duration,
    /// Upper bound of a server's `Retry-After`.
    pub(crate) max_retry_after: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): `base * 2^retry`
    /// capped at `max_delay`, then jittered uniformly into its upper half so
    /// that clients that failed together do not retry together.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let half = exp / 2;
        let jitter_nanos = fastrand::u64(0..=half.as_nanos().min(u64::MAX as u128) as u64);
        half + Duration::from_nanos(jitter_nanos)
    }

    /// The wait before retry number `retry`, honouring `Retry-After`.
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(server) => server.min(self.max_retry_after),
            None => self.backoff(retry),
        }
    }
}

/// Parses `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Retries requests according to a [`RetryPolicy`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryLayer {
    pub(crate) policy: RetryPolicy,
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            policy: self.policy,
        }
    }
}

/// The service produced by [`RetryLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Retry<S> {
    inner: S,
    policy: RetryPolicy,
}

fn replay(req: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    let body = req.body().try_clone()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    Some(copy)
}

impl<S> Service<Request<RequestBody>> for Retry<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Error;
    type Future = BoxFuture<Result<Response<ResponseBody>, Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is checked per attempt on a clone of the inner service.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        let inner = self.inner.clone();
        let policy = self.policy;
        Box::pin(async move {
            let idempotent = is_idempotent(&req);
            let mut req = req;
            let mut retry = 0u32;
            loop {
                let next = if retry < policy.max_retries {
                    replay(&req)
                } else {
                    None
                };
                let result = inner.clone().oneshot(req).await;
                let verdict = match &result {
                    Err(err) if err.is_connect() => Some((None, "connect error".to_string())),
                    Err(err) if idempotent && closed_before_response(err) => {
                        Some((None, "connection closed before the response".to_string()))
                    }
                    Err(err) if idempotent && err.is_timeout() => Some((None, err.to_string())),
                    Ok(resp) if idempotent && retryable_status(resp.status()) => Some((
                        parse_retry_after(resp.headers(), SystemTime::now()),
                        format!("status {}", resp.status().as_u16()),
                    )),
                    _ => None,
                };
                match (verdict, next) {
                    (Some((retry_after, reason)), Some(next)) => {
                        let delay = policy.delay(retry, retry_after);
                        // One line at the default level: a CI log should
                        // show that a request needed retries, and how many.
                        // (The request span names the method and path.)
                        tracing::warn!(
                            "{reason}; retrying in {:.1}s (attempt {} of {})",
                            delay.as_secs_f64(),
                            retry + 2,
                            policy.max_retries + 1
                        );
                        // Drop the failed response (and its connection, if the
                        // body was not read) before waiting.
                        drop(result);
                        tokio::time::sleep(delay).await;
                        retry += 1;
                        req = next;
                    }
                    _ => {
                        tracing::Span::current().record("retries", retry);
                        return result;
                    }
                }
            }
        })
    }
}

/// True for a connection that was closed or reset before a response began.
fn closed_before_response(err: &Error) -> bool {
    match err {
        Error::Io { source } => matches!(
            source.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ),
        Error::Protocol { source } => find_in_chain::<hyper::Error>(&**source)
            .is_some_and(|e| e.is_incomplete_message() || e.is_canceled() || e.is_closed()),
        _ => false,
    }
}

fn retryable_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn backoff_grows_jitters_and_is_capped() {
        let p = policy();
        for _ in 0..100 {
            let d0 = p.backoff(0);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d3 = p.backoff(3);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
            let big = p.backoff(40);
            assert!(big >= Duration::from_secs(1) && big <= Duration::from_secs(2));
        }
    }

    #[test]
    fn retry_after_seconds_and_date_are_parsed_and_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(12));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(12)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h, now), None);
        assert_eq!(
            policy().delay(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn idempotency_defaults_and_override() {
        let get = Request::get("http://h/x").body(()).unwrap();
        assert!(is_idempotent(&get));
        let post = Request::post("http://h/api/v1/object/ns/k")
            .body(())
            .unwrap();
        assert!(!is_idempotent(&post));
        // The path says nothing: only the method, or an explicit mark.
        let inv = Request::post("http://h/api/v1/object/ns/k/invalidate")
            .body(())
            .unwrap();
        assert!(!is_idempotent(&inv));
        let mut marked = Request::post("http://h/api/v1/object/ns/k/invalidate")
            .body(())
            .unwrap();
        marked.extensions_mut().insert(Idempotency::Idempotent);
        assert!(is_idempotent(&marked));
        for m in [Method::PATCH, Method::CONNECT] {
            let req = Request::builder()
                .method(m)
                .uri("http://h/x")
                .body(())
                .unwrap();
            assert!(!is_idempotent(&req));
        }
        let mut forced = Request::get("http://h/x").body(()).unwrap();
        forced.extensions_mut().insert(Idempotency::NonIdempotent);
        assert!(!is_idempotent(&forced));
    }
}

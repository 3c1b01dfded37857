//! The header layer: `User-Agent`, the fixed `Authorization`, the
//! per-request header hook and (with the `otel` feature) W3C trace context.
//!
//! It sits inside the retry layer, so every attempt calls the hook again and
//! a rotated token is picked up by a retry.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderValue, Request, Uri};
use tower::{Layer, Service};

use crate::body::RequestBody;

/// The hook called for every request (every attempt) to produce headers.
pub(crate) type HeaderFn = Arc<dyn Fn() -> HeaderMap + Send + Sync + 'static>;

/// Header settings shared by all clones of a client.
#[derive(Clone)]
pub(crate) struct HeaderConfig {
    pub(crate) user_agent: HeaderValue,
    pub(crate) authorization: Option<HeaderValue>,
    pub(crate) header_fn: Option<HeaderFn>,
}

impl fmt::Debug for HeaderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderConfig")
            .field("user_agent", &self.user_agent)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("header_fn", &self.header_fn.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

/// Adds the configured headers to each request.
#[derive(Clone, Debug)]
pub(crate) struct HeaderLayer {
    pub(crate) config: Arc<HeaderConfig>,
}

impl<S> Layer<S> for HeaderLayer {
    type Service = Headers<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Headers {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service produced by [`HeaderLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Headers<S> {
    inner: S,
    config: Arc<HeaderConfig>,
}

impl<S> Service<Request<RequestBody>> for Headers<S>
where
    S: Service<Request<RequestBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<RequestBody>) -> Self::Future {
        let userinfo = take_userinfo(req.uri_mut());
        apply(&self.config, req.headers_mut(), userinfo.as_deref());
        self.inner.call(req)
    }
}

/// Removes `user:password@` from the URI's authority and returns it, so
/// that the credentials travel only as a header and never reach the wire,
/// a `Host` header or a log as part of the URL.
fn take_userinfo(uri: &mut Uri) -> Option<String> {
    let authority = uri.authority()?.as_str();
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (userinfo, host) = (userinfo.to_owned(), host.to_owned());
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(host.parse().ok()?);
    *uri = Uri::from_parts(parts).ok()?;
    Some(userinfo)
}

/// Precedence, lowest first: the request's own headers, then the defaults
/// `User-Agent` and `Authorization` (only where the request has none), then
/// `Authorization: Basic` from credentials in the URL (`https://user:pass@host`,
/// as Go's `net/http` does, only where there is no `Authorization` yet), then
/// the hook's headers, which replace same-named ones (as Go's `HeaderFunc`
/// round tripper does), then the trace context.
fn apply(config: &HeaderConfig, headers: &mut HeaderMap, userinfo: Option<&str>) {
    if !headers.contains_key(USER_AGENT) {
        headers.insert(USER_AGENT, config.user_agent.clone());
    }
    if let Some(auth) = &config.authorization {
        if !headers.contains_key(AUTHORIZATION) {
            headers.insert(AUTHORIZATION, auth.clone());
        }
    }
    if let Some(userinfo) = userinfo {
        if !headers.contains_key(AUTHORIZATION) {
            headers.insert(AUTHORIZATION, crate::proxy::basic_auth(userinfo));
        }
    }
    if let Some(header_fn) = &config.header_fn {
        let extra = header_fn();
        for name in extra.keys() {
            headers.remove(name);
        }
        for (name, value) in extra.iter() {
            headers.append(name.clone(), value.clone());
        }
    }
    // Keep credentials out of HTTP/2 header compression tables and out of
    // `Debug` output of the request.
    for name in [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE] {
        if let http::header::Entry::Occupied(mut entry) = headers.entry(name) {
            for value in entry.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }
    #[cfg(feature = "otel")]
    crate::otel::inject(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(header_fn: Option<HeaderFn>) -> HeaderConfig {
        HeaderConfig {
            user_agent: HeaderValue::from_static("ua/1"),
            authorization: Some(HeaderValue::from_static("Bearer fixed")),
            header_fn,
        }
    }

    #[test]
    fn url_credentials_become_basic_auth_unless_one_is_given() {
        let mut uri: Uri = "https://al%40ice:pa%3Ass@example.com:8443/a?q=1"
            .parse()
            .unwrap();
        let userinfo = take_userinfo(&mut uri);
        assert_eq!(uri.to_string(), "https://example.com:8443/a?q=1");
        let mut none = config(None);
        none.authorization = None;
        let mut headers = HeaderMap::new();
        apply(&none, &mut headers, userinfo.as_deref());
        // base64("al@ice:pa:ss")
        assert_eq!(headers[AUTHORIZATION], "Basic YWxAaWNlOnBhOnNz");
        assert!(headers[AUTHORIZATION].is_sensitive());
        // An explicit authorization wins.
        let mut headers = HeaderMap::new();
        apply(&config(None), &mut headers, userinfo.as_deref());
        assert_eq!(headers[AUTHORIZATION], "Bearer fixed");
        let mut plain: Uri = "http://h/x".parse().unwrap();
        assert_eq!(take_userinfo(&mut plain), None);
    }

    #[test]
    fn defaults_do_not_override_request_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, HeaderValue::from_static("mine"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer mine"));
        apply(&config(None), &mut headers, Some("u:p"));
        assert_eq!(headers[USER_AGENT], "mine");
        assert_eq!(headers[AUTHORIZATION], "Bearer mine");
        assert!(headers[AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn hook_replaces_same_named_headers_and_keeps_multiple_values() {
        let hook: HeaderFn = Arc::new(|| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer rotated"));
            h.append("x-multi", HeaderValue::from_static("a"));
            h.append("x-multi", HeaderValue::from_static("b"));
            h
        });
        let mut headers = HeaderMap::new();
        headers.insert("x-multi", HeaderValue::from_static("old"));
        apply(&config(Some(hook)), &mut headers, None);
        assert_eq!(headers[AUTHORIZATION], "Bearer rotated");
        assert!(headers[AUTHORIZATION].is_sensitive());
        let multi: Vec<_> = headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        assert_eq!(headers[USER_AGENT], "ua/1");
    }
}

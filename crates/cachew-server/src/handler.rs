//! Routing and the `/api/v1` handlers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cachew_client::{Cache, CreateOptions, EntityTag, Error, Key, Namespace, ObjectMeta};
use cachew_proto::header;
use cachew_proto::{duration, ByteRange, EtagCondition, OpenOptions};
use http::header::{
    HeaderName, HeaderValue, ACCEPT_RANGES, ALLOW, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, IF_MATCH, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use crate::auth::{Denied, Tokens};
use crate::body::ResponseBody;
use crate::request_body::{BodyError, RequestBody};
use crate::Policy;

/// What every connection shares.
pub(crate) struct State {
    pub(crate) cache: Arc<dyn Cache>,
    pub(crate) tokens: Option<Tokens>,
    pub(crate) policy: Option<Policy>,
    pub(crate) max_ttl: Option<Duration>,
    pub(crate) max_object_size: Option<u64>,
    pub(crate) git: Option<crate::git::GitState>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

type Resp = Response<ResponseBody>;

/// The Prometheus endpoint; with tokens it needs one (any right).
const METRICS_PATH: &str = "/metrics";

/// Request headers that describe the connection or the caller rather than the
/// object. The Go server stores them, but storing `Authorization` would hand
/// one caller's credentials to every reader, so this server drops them
/// together with [`header::SERVER_FILTERED`].
const NOT_STORED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "connection",
    "keep-alive",
    "expect",
    "te",
    "trailer",
    "upgrade",
    "etag",
];

/// Checks the caller's token, then routes. The token's id, if any, goes
/// into the response's extensions for the access log.
pub(crate) async fn handle(state: Arc<State>, req: Request<RequestBody>) -> Resp {
    let (parts, body) = req.into_parts();
    let mut token = None;
    if let Some(tokens) = &state.tokens {
        match tokens.check(&parts) {
            Ok(id) => token = id,
            Err(denied) => {
                linger(body, &parts.headers);
                let (status, challenge, message) = denied.answer();
                let mut resp = text(status, message);
                if let Some(challenge) = challenge {
                    resp.headers_mut()
                        .insert(http::header::WWW_AUTHENTICATE, challenge);
                }
                if let Denied::Forbidden { id } = denied {
                    resp.extensions_mut().insert(id);
                }
                return resp;
            }
        }
    }
    let mut resp = route(state, parts, body).await;
    if let Some(id) = token {
        resp.extensions_mut().insert(id);
    }
    resp
}

async fn route(state: Arc<State>, parts: http::request::Parts, body: RequestBody) -> Resp {
    if let Some(policy) = &state.policy {
        if let Some(rejection) = policy(&parts) {
            linger(body, &parts.headers);
            return text(rejection.status, &rejection.message);
        }
    }
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();
    if crate::auth::OPEN_PATHS.contains(&path.as_str()) {
        return match method {
            Method::GET | Method::HEAD => text(StatusCode::OK, "OK"),
            _ => not_allowed("GET, HEAD"),
        };
    }
    if path == METRICS_PATH {
        return match method {
            Method::GET => {
                let body = crate::metrics::render(&state).await;
                let mut resp = Response::new(ResponseBody::full(body));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            _ => not_allowed("GET"),
        };
    }
    if let (Some(git), Some(rest)) = (&state.git, path.strip_prefix("/git/")) {
        return crate::git::handle(git, rest, Request::from_parts(parts, body)).await;
    }
    let Some(api) = path.strip_prefix("/api/v1/") else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    match api {
        "stats" => {
            return match method {
                Method::GET => stats(&state).await,
                _ => not_allowed("GET"),
            }
        }
        "namespaces" => {
            return match method {
                Method::GET => namespaces(&state).await,
                _ => not_allowed("GET"),
            }
        }
        _ => {}
    }
    let Some(object) = api.strip_prefix("object/") else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let segments: Vec<&str> = object.split('/').collect();
    let (ns, key, invalidate) = match segments.as_slice() {
        [ns, key] if !key.is_empty() => (*ns, *key, false),
        [ns, key, "invalidate"] if !key.is_empty() => (*ns, *key, true),
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    };
    let namespace = match Namespace::new(ns) {
        Ok(ns) => ns,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let cache = state.cache.with_namespace(namespace);
    let key = Key::parse(key);
    if invalidate {
        return match method {
            Method::POST => match cache.invalidate(&key).await {
                Ok(()) => empty(StatusCode::OK),
                Err(e) => error_response(&e),
            },
            _ => not_allowed("POST"),
        };
    }
    match method {
        Method::GET => open(&*cache, &key, &parts.headers).await,
        Method::HEAD => stat(&*cache, &key, &parts.headers).await,
        Method::POST => create(&state, &*cache, &key, parts.headers, body).await,
        Method::DELETE => match cache.delete(&key).await {
            Ok(()) => empty(StatusCode::OK),
            Err(e) => error_response(&e),
        },
        _ => not_allowed("GET, HEAD, POST, DELETE"),
    }
}

async fn stats(state: &State) -> Resp {
    match state.cache.stats().await {
        Ok(stats) => json(serde_json::to_vec(&stats)),
        Err(e) => error_response(&e),
    }
}

async fn namespaces(state: &State) -> Resp {
    match state.cache.list_namespaces().await {
        Ok(list) => json(serde_json::to_vec(&list)),
        Err(e) => error_response(&e),
    }
}

/// Parses the conditional and range headers of a GET or HEAD.
pub(crate) fn open_options(
    headers: &HeaderMap,
    with_range: bool,
) -> Result<OpenOptions, Box<Resp>> {
    let mut options = OpenOptions::default();
    let condition = |name: &HeaderName| -> Result<Option<EtagCondition>, Box<Resp>> {
        let Some(value) = headers.get(name) else {
            return Ok(None);
        };
        let parsed = value
            .to_str()
            .map_err(|_| format!("invalid {name} header: not ASCII"))
            .and_then(|v| EtagCondition::parse_header(v).map_err(|e| e.to_string()));
        match parsed {
            Ok(c) => Ok(Some(c)),
            Err(msg) => Err(Box::new(text(StatusCode::BAD_REQUEST, &msg))),
        }
    };
    options.if_match = condition(&IF_MATCH)?;
    options.if_none_match = condition(&IF_NONE_MATCH)?;
    if with_range {
        options.range = headers
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(ByteRange::parse_header);
        if let Some(value) = headers.get(IF_RANGE) {
            // An If-Range that is not a strong tag (a date, garbage) can never
            // be verified here, so the full body is the safe answer.
            match value.to_str().ok().map(EntityTag::parse_header) {
                Some(Ok(tag)) if !value.as_bytes().starts_with(b"W/") => {
                    options.if_range = Some(tag);
                }
                _ => options.range = None,
            }
        }
    }
    Ok(options)
}

async fn open(cache: &dyn Cache, key: &Key, headers: &HeaderMap) -> Resp {
    let options = match open_options(headers, true) {
        Ok(o) => o,
        Err(resp) => return *resp,
    };
    match cache.open(key, &options).await {
        Ok(object) => {
            // Embedded backends always know the length; only a backend that
            // relays a server which did not say gets here without one.
            let Some(len) = object.meta.content_length() else {
                return text(
                    StatusCode::BAD_GATEWAY,
                    "the backend did not report the object's size",
                );
            };
            let mut resp = success(&object.meta);
            *resp.body_mut() = ResponseBody::stream(object.body, len);
            resp
        }
        Err(e) => error_response(&e),
    }
}

async fn stat(cache: &dyn Cache, key: &Key, headers: &HeaderMap) -> Resp {
    let options = match open_options(headers, false) {
        Ok(o) => o,
        Err(resp) => return *resp,
    };
    match cache.stat(key, &options).await {
        Ok(meta) => success(&meta),
        Err(e) => error_response(&e),
    }
}

/// The status and headers of a successful Open or Stat: the stored headers
/// with the protocol's headers set from the typed metadata, so every backend
/// answers alike.
fn success(meta: &ObjectMeta) -> Resp {
    let mut resp = Response::new(ResponseBody::empty());
    let headers = resp.headers_mut();
    for (name, value) in &meta.headers {
        if !header::is_server_filtered(name.as_str()) {
            headers.append(name, value.clone());
        }
    }
    if let Some(etag) = &meta.etag {
        set(headers, ETAG, &etag.to_header());
    }
    set(
        headers,
        LAST_MODIFIED,
        &header::format_http_date(meta.last_modified),
    );
    set(headers, ACCEPT_RANGES, "bytes");
    if let Some(len) = meta.content_length() {
        set(headers, CONTENT_LENGTH, &len.to_string());
    }
    if let Some((start, len)) = meta.range {
        let range = match meta.size {
            Some(size) => header::content_range(start, len, size),
            None => format!("bytes {start}-{}/*", start + len - 1),
        };
        set(headers, CONTENT_RANGE, &range);
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    resp
}

async fn create(
    state: &State,
    cache: &dyn Cache,
    key: &Key,
    headers: HeaderMap,
    mut body: RequestBody,
) -> Resp {
    if let Some(max) = state.max_object_size {
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max) {
            linger(body, &headers);
            return too_large(max);
        }
    }
    let mut options = CreateOptions::default();
    if let Some(value) = headers.get(header::TIME_TO_LIVE) {
        let parsed = value
            .to_str()
            .map_err(|_| "invalid Time-To-Live header: not ASCII".to_owned())
            .and_then(|v| duration::parse(v).map_err(|e| e.to_string()));
        match parsed {
            Ok(ttl) => {
                let ttl = state.max_ttl.map_or(ttl, |max| ttl.min(max));
                options = options.with_ttl(ttl);
            }
            Err(msg) => {
                linger(body, &headers);
                return text(StatusCode::BAD_REQUEST, &msg);
            }
        }
    }
    if let Some(value) = headers.get(ETAG) {
        let parsed = value
            .to_str()
            .map_err(|_| "invalid ETag header: not ASCII".to_owned())
            .and_then(|v| EntityTag::parse_header(v).map_err(|e| e.to_string()));
        match parsed {
            Ok(tag) => options = options.with_etag(tag),
            Err(msg) => {
                linger(body, &headers);
                return text(StatusCode::BAD_REQUEST, &msg);
            }
        }
    }
    let mut stored = HeaderMap::new();
    for (name, value) in &headers {
        let name_str = name.as_str();
        if !header::is_server_filtered(name_str) && !NOT_STORED.contains(&name_str) {
            stored.append(name, value.clone());
        }
    }
    let mut writer = match cache.create(key, stored, &options).await {
        Ok(w) => w,
        Err(e) => {
            linger(body, &headers);
            return error_response(&e);
        }
    };
    // The object is committed only after the request body ended cleanly; a
    // body error means the client aborted or the connection broke, and the
    // partial upload is discarded.
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // Trailers carry nothing we store.
                };
                if let Err(e) = writer.write_all(&data).await {
                    let msg = format!("writing the object failed: {e}");
                    let _ = writer.abort(Box::new(e)).await;
                    linger(body, &headers);
                    return text(StatusCode::INTERNAL_SERVER_ERROR, &msg);
                }
            }
            Some(Err(e)) => {
                tracing::debug!(%key, error = %e, "upload body failed; discarding");
                let msg = format!("reading the request body failed: {e}");
                let resp = match &e {
                    BodyError::TooLarge(max) => too_large(*max),
                    BodyError::Stalled(_) => closing(text(StatusCode::REQUEST_TIMEOUT, &msg)),
                    BodyError::Incoming(_) => text(StatusCode::BAD_REQUEST, &msg),
                };
                let _ = writer.abort(Box::new(e)).await;
                if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    linger(body, &headers);
                }
                return resp;
            }
        }
    }
    match writer.commit().await {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => error_response(&e),
    }
}

/// How long, and how much of, an unread request body is still read after an
/// early answer.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 64 << 20;

/// Keeps reading (and discarding) a request body the server answered early,
/// e.g. a `403` for an upload still in progress, as Go's server does. Closing
/// the connection with unread data would make the kernel reset it, and a
/// reset can destroy the answer before the client has read it: the client
/// would see a broken pipe instead of the `403`.
///
/// A client that sent `Expect: 100-continue` has not sent the body yet and
/// will not without a `100 Continue`; reading would make hyper send one, so
/// such a body is dropped instead.
fn linger(body: RequestBody, headers: &HeaderMap) {
    let mut body = body.into_inner();
    let expects_continue = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue || http_body::Body::is_end_stream(&body) {
        return;
    }
    tokio::spawn(async move {
        let mut discarded = 0u64;
        let _ = tokio::time::timeout(LINGER_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    discarded += data.len() as u64;
                }
                if discarded > LINGER_BYTES {
                    break;
                }
            }
        })
        .await;
    });
}

/// Maps a backend error to the status the Go server answers with.
fn error_response(err: &Error) -> Resp {
    match err {
        Error::NotFound => text(StatusCode::NOT_FOUND, "not found"),
        Error::NotModified { headers } => {
            let mut resp = empty(StatusCode::NOT_MODIFIED);
            for (name, value) in headers.iter() {
                if !header::is_server_filtered(name.as_str()) {
                    resp.headers_mut().append(name, value.clone());
                }
            }
            resp
        }
        Error::PreconditionFailed => text(StatusCode::PRECONDITION_FAILED, "precondition failed"),
        Error::RangeNotSatisfiable { size } => {
            let mut resp = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Some(size) = size {
                set(
                    resp.headers_mut(),
                    CONTENT_RANGE,
                    &header::unsatisfied_content_range(*size),
                );
            }
            resp
        }
        Error::StatsUnavailable => text(StatusCode::NOT_IMPLEMENTED, "stats unavailable"),
        Error::Status { code, message } => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            text(status, message)
        }
        Error::Protocol(_) | Error::InvalidInput(_) => {
            text(StatusCode::BAD_REQUEST, &err.to_string())
        }
        _ => text(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

/// `413` for an upload over `max` bytes. The connection is closed after
/// the answer, so the rest of the upload need not be read.
fn too_large(max: u64) -> Resp {
    closing(text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the object is larger than the server's limit of {max} bytes"),
    ))
}

/// `resp` with `Connection: close`: the request body was not read to its
/// end, so the connection cannot carry another request.
fn closing(mut resp: Resp) -> Resp {
    resp.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = status;
    resp
}

/// A short `text/plain` answer, as Go's `http.Error` writes it.
pub(crate) fn text(status: StatusCode, message: &str) -> Resp {
    let mut resp = Response::new(ResponseBody::full(Bytes::from(format!("{message}\n"))));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn not_allowed(allow: &'static str) -> Resp {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

fn json(encoded: serde_json::Result<Vec<u8>>) -> Resp {
    match encoded {
        Ok(bytes) => {
            let mut resp = Response::new(ResponseBody::full(bytes));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

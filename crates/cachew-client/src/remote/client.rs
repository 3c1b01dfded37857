//! Requests of the `/api/v1` object API and the mapping of responses to
//! [`ObjectMeta`] and [`Error`] (`PROTOCOL.md` §3).

use std::time::SystemTime;

use cachew_proto::header::{self, ContentRange};
use cachew_proto::{EntityTag, OpenOptions};
use cachew_transport::{RequestBody, ResponseBody};
use http::header::{
    HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_MATCH, IF_NONE_MATCH,
    IF_RANGE, LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};

use crate::cache::ObjectMeta;
use crate::error::{Error, Result};

/// The most of an error body kept as the error's message.
const MAX_MESSAGE: u64 = 4096;

/// Caller headers never forwarded on Create: they describe the exchange, and
/// hyper frames the streamed body itself. (Go's client ignores a
/// `Content-Length` header, too.)
const NOT_FORWARDED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "host",
    "expect",
];

pub(super) fn request(
    method: Method,
    url: &str,
    body: RequestBody,
) -> Result<Request<RequestBody>> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(body)
        .map_err(|e| Error::InvalidInput(format!("cannot build a request: {e}")))
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) -> Result<()> {
    let value = HeaderValue::from_str(value)
        .map_err(|_| Error::InvalidInput(format!("invalid {name} header value {value:?}")))?;
    headers.insert(name, value);
    Ok(())
}

/// Adds the conditional (and, for Open, range) headers of `options`.
pub(super) fn open_headers(
    headers: &mut HeaderMap,
    options: &OpenOptions,
    with_range: bool,
) -> Result<()> {
    if let Some(cond) = &options.if_match {
        insert(headers, IF_MATCH, &cond.to_header())?;
    }
    if let Some(cond) = &options.if_none_match {
        insert(headers, IF_NONE_MATCH, &cond.to_header())?;
    }
    if with_range {
        if let Some(range) = &options.range {
            insert(headers, RANGE, &range.to_header())?;
            if let Some(tag) = &options.if_range {
                insert(headers, IF_RANGE, &tag.to_header())?;
            }
        }
    }
    Ok(())
}

/// The caller's Create headers as sent: everything except framing headers.
pub(super) fn create_headers(caller: HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(caller.len() + 2);
    let mut last = None;
    for (name, value) in caller {
        // `HeaderMap`'s owning iterator yields a name only for the first of
        // several values.
        if let Some(name) = name {
            last = Some(name);
        }
        let Some(name) = &last else { continue };
        if !NOT_FORWARDED.contains(&name.as_str()) {
            out.append(name.clone(), value);
        }
    }
    out
}

/// Adds the protocol headers of a Create: `Time-To-Live` when positive, the
/// ETag quoted.
pub(super) fn create_options_headers(
    headers: &mut HeaderMap,
    options: &crate::CreateOptions,
) -> Result<()> {
    if let Some(ttl) = options.effective_ttl() {
        let name = HeaderName::from_static(header::TIME_TO_LIVE);
        insert(headers, name, &cachew_proto::duration::format_ascii(ttl))?;
    }
    if let Some(tag) = &options.etag {
        insert(headers, ETAG, &tag.to_header())?;
    }
    Ok(())
}

/// The headers returned to callers: the response's minus the
/// client-filtered ones.
pub(super) fn caller_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !header::is_client_filtered(name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn bad_response(url: &str, why: String) -> Error {
    Error::Backend(format!(
        "invalid response from {}: {why}",
        super::redact_url(url)
    ))
}

/// The metadata of a 200 or 206 answer to Open or Stat.
pub(super) fn meta_from(url: &str, resp: &Response<ResponseBody>) -> Result<ObjectMeta> {
    let headers = resp.headers();
    // Older servers and objects stored before ETags were recorded answer
    // without one (PROTOCOL.md §5): that is a valid answer, just one a
    // download cannot pin chunks to.
    let etag = header_str(headers, &ETAG).and_then(|value| match EntityTag::parse_header(value) {
        Ok(tag) => Some(tag),
        Err(e) => {
            tracing::debug!(url = %super::redact_url(url), "ignoring an unusable ETag: {e}");
            None
        }
    });
    let last_modified = header_str(headers, &LAST_MODIFIED)
        .and_then(header::parse_http_date)
        .unwrap_or_else(SystemTime::now);
    let length = header_str(headers, &CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
    let (size, range) = if resp.status() == StatusCode::PARTIAL_CONTENT {
        let value = header_str(headers, &CONTENT_RANGE)
            .ok_or_else(|| bad_response(url, "206 without Content-Range".into()))?;
        let cr = ContentRange::parse(value)
            .ok_or_else(|| bad_response(url, format!("malformed Content-Range {value:?}")))?;
        if length.is_some_and(|l| l != cr.len) {
            return Err(bad_response(
                url,
                "Content-Length disagrees with Content-Range".into(),
            ));
        }
        (cr.total, Some((cr.start, cr.len)))
    } else {
        // Without Content-Length (a chunked answer) the size is unknown.
        (length, None)
    };
    Ok(ObjectMeta {
        headers: caller_headers(headers),
        size,
        etag,
        last_modified,
        range,
    })
}

/// Turns a response whose status is not the expected success into the
/// caller's error: 404, 304, 412 and 416 become their variants, anything
/// else a [`Error::Status`] carrying the server's short message.
pub(super) async fn status_error(resp: Response<ResponseBody>) -> Error {
    let status = resp.status();
    match status {
        StatusCode::NOT_FOUND => return Error::NotFound,
        StatusCode::NOT_MODIFIED => {
            return Error::NotModified {
                headers: Box::new(caller_headers(resp.headers())),
            }
        }
        StatusCode::PRECONDITION_FAILED => return Error::PreconditionFailed,
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let size = header_str(resp.headers(), &CONTENT_RANGE)
                .and_then(|v| v.trim().strip_prefix("bytes */"))
                .and_then(|n| n.trim().parse().ok());
            return Error::RangeNotSatisfiable { size };
        }
        _ => {}
    }
    let message = match resp.into_body().bytes_limited(MAX_MESSAGE).await {
        Ok(body) => String::from_utf8_lossy(&body).trim().to_owned(),
        // An error body that is too long or breaks off is not worth failing
        // for: the status says enough.
        Err(_) => String::new(),
    };
    Error::Status {
        code: status.as_u16(),
        message,
    }
}

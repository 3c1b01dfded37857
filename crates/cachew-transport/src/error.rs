//! The transport's error type.
//!
//! A response with a non-2xx status is *not* an [`Error`]: the transport
//! hands every response to the caller, which maps statuses to its own errors.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// A boxed error, the error type of request bodies and of hyper's internals.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A `Result` whose error defaults to the transport's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a transport operation was waiting for when its timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Establishing the TCP connection (directly, to a proxy, or through a
    /// proxy's `CONNECT` tunnel).
    Connect,
    /// The TLS handshake with the server, after the TCP connection.
    TlsHandshake,
    /// The response headers, counted from the last progress of the request
    /// (the last request body chunk handed to the connection).
    ResponseHeaders,
    /// The next chunk of the response body.
    BodyIdle,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Connect => "connecting",
            TimeoutKind::TlsHandshake => "in the TLS handshake",
            TimeoutKind::ResponseHeaders => "waiting for response headers",
            TimeoutKind::BodyIdle => "waiting for the next response body chunk",
        })
    }
}

/// The error of every transport operation.
///
/// Messages never contain secrets: URLs are reduced to `scheme://host:port`
/// and header values are never printed. Following the Rust API guidelines,
/// the `Display` text describes this layer only; the underlying cause is
/// reachable through [`std::error::Error::source`] (print the chain to see
/// it, e.g. "Connection refused").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection (TCP connect or TLS handshake) could not be established.
    #[error("failed to connect to {url}")]
    Connect {
        /// The origin, `scheme://host:port`, without credentials, path or query.
        url: String,
        /// Why the connection failed.
        #[source]
        source: BoxError,
    },
    /// A timeout fired; see [`TimeoutKind`] for what was awaited.
    #[error("timed out after {after:?} {kind} ({url})")]
    Timeout {
        /// What was awaited.
        kind: TimeoutKind,
        /// The configured timeout.
        after: Duration,
        /// The request URL without credentials or query
        /// ([`cachew_proto::redact_url`]).
        url: String,
    },
    /// The caller aborted the streaming request body (or dropped its
    /// [`BodySender`](crate::BodySender) without finishing it). The server saw a
    /// failed body, never a clean end.
    #[error("request body aborted by the caller")]
    BodyAborted {
        /// The cause passed to [`BodySender::abort`](crate::BodySender::abort).
        #[source]
        cause: Arc<dyn StdError + Send + Sync + 'static>,
    },
    /// [`BodySender::send`](crate::BodySender::send) was called after the
    /// request had already ended (the response arrived and the connection
    /// closed, or the request failed); the data was not sent.
    #[error("the request already ended; the body chunk was not sent")]
    BodyClosed,
    /// The response body is larger than the limit given to
    /// [`ResponseBody::bytes_limited`](crate::ResponseBody::bytes_limited).
    #[error("response body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// An I/O error on an established connection (e.g. reset by the peer).
    #[error("I/O error on the connection")]
    Io {
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// An HTTP protocol failure: the peer closed the connection before the
    /// message was complete, sent something unparsable, reset an HTTP/2
    /// stream, and the like.
    #[error("HTTP protocol error")]
    Protocol {
        /// The underlying error (usually a `hyper::Error`).
        #[source]
        source: BoxError,
    },
    /// The request cannot be sent as given (e.g. a relative URL or an
    /// unsupported scheme).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong with it.
        reason: String,
    },
    /// The builder was given an invalid setting. The message names the
    /// setting, never its (possibly secret) value.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// True for a failure to establish a connection, including a connect
    /// or TLS handshake timeout. Nothing was sent to the server in that case.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Timeout {
                    kind: TimeoutKind::Connect | TimeoutKind::TlsHandshake,
                    ..
                }
        )
    }

    /// True for any timeout (connect, response headers, body idle).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// True when the caller aborted the request body.
    pub fn is_body_aborted(&self) -> bool {
        matches!(self, Error::BodyAborted { .. })
    }

    /// Converts an error surfaced through a body or hyper into the most
    /// specific variant: an [`Error`] found in the chain is taken back out,
    /// an abort marker becomes [`Error::BodyAborted`], an I/O error becomes
    /// [`Error::Io`], the rest [`Error::Protocol`].
    pub(crate) fn from_boxed(err: BoxError) -> Error {
        let err = match err.downcast::<Error>() {
            Ok(own) => return *own,
            Err(other) => other,
        };
        if let Some(aborted) = find_in_chain::<AbortMarker>(&*err) {
            return Error::BodyAborted {
                cause: aborted.0.clone(),
            };
        }
        if let Some(own) = find_in_chain::<Error>(&*err) {
            if let Some(copy) = own.shallow_clone() {
                return copy;
            }
        }
        if let Some(io) = find_in_chain::<io::Error>(&*err) {
            // Only the kind and message travel; io::Error is not Clone.
            let source = io::Error::new(io.kind(), io.to_string());
            return Error::Io { source };
        }
        Error::Protocol { source: err }
    }

    /// Copies the variants that can be copied without losing information;
    /// used to take an [`Error`] back out of a borrowed error chain.
    fn shallow_clone(&self) -> Option<Error> {
        Some(match self {
            Error::Timeout { kind, after, url } => Error::Timeout {
                kind: *kind,
                after: *after,
                url: url.clone(),
            },
            Error::BodyAborted { cause } => Error::BodyAborted {
                cause: cause.clone(),
            },
            Error::BodyClosed => Error::BodyClosed,
            Error::BodyTooLarge { limit } => Error::BodyTooLarge { limit: *limit },
            Error::InvalidRequest { reason } => Error::InvalidRequest {
                reason: reason.clone(),
            },
            Error::Config { reason } => Error::Config {
                reason: reason.clone(),
            },
            _ => return None,
        })
    }
}

/// The error frame a [`RequestBody`](crate::RequestBody) yields when its
/// upload is aborted. hyper wraps it; [`Error::from_boxed`] finds it again.
#[derive(Debug, Clone)]
pub(crate) struct AbortMarker(pub(crate) Arc<dyn StdError + Send + Sync + 'static>);

impl fmt::Display for AbortMarker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body aborted: {}", self.0)
    }
}

impl StdError for AbortMarker {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// The cause recorded when a [`BodySender`](crate::BodySender) is dropped
/// without [`finish`](crate::BodySender::finish) or
/// [`abort`](crate::BodySender::abort).
#[derive(Debug, thiserror::Error)]
#[error("the body sender was dropped before the body was finished")]
pub(crate) struct SenderDropped;

/// Walks `err` and its sources looking for a `T`.
pub(crate) fn find_in_chain<'a, T: StdError + 'static>(
    err: &'a (dyn StdError + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&'a (dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        // `io::Error::source` skips the wrapped error itself and returns *its*
        // source, so step into a custom I/O error explicitly.
        cur = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Renders `scheme://host:port` for a URI, leaving out credentials, path and
/// query so that the result is safe to put in messages
/// ([`cachew_proto::redact::origin`], the one redactor every crate uses).
pub(crate) fn origin_of(uri: &http::Uri) -> String {
    cachew_proto::redact::origin(&uri.to_string()).unwrap_or_else(|| {
        // Only a relative URI (no scheme or host) gets here; it has no
        // credentials to leak.
        format!("{}://<no host>", uri.scheme_str().unwrap_or("http"))
    })
}

/// The request URL for messages: without credentials
/// ([`cachew_proto::redact_url`]) and without the query, which may carry
/// tokens.
pub(crate) fn url_of(uri: &http::Uri) -> String {
    let without_query = match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}{}", uri.path()),
        _ => uri.path().to_owned(),
    };
    cachew_proto::redact_url(&without_query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_of_drops_credentials_and_query() {
        let uri: http::Uri = "https://user:secret@example.com/a/b?token=x"
            .parse()
            .unwrap();
        assert_eq!(url_of(&uri), "https://example.com/a/b");
    }

    #[test]
    fn origin_drops_credentials_path_and_query() {
        let uri: http::Uri = "https://user:secret@example.com/a/b?token=x"
            .parse()
            .unwrap();
        assert_eq!(origin_of(&uri), "https://example.com:443");
        let uri: http::Uri = "http://127.0.0.1:8080/api".parse().unwrap();
        assert_eq!(origin_of(&uri), "http://127.0.0.1:8080");
    }

    #[test]
    fn error_is_small_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert!(
            std::mem::size_of::<Error>() <= 48,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn abort_marker_is_found_through_wrappers() {
        let cause: Arc<dyn StdError + Send + Sync> = Arc::new(io::Error::other("disk full"));
        let wrapped: BoxError = Box::new(io::Error::other(AbortMarker(cause)));
        match Error::from_boxed(wrapped) {
            Error::BodyAborted { cause } => assert_eq!(cause.to_string(), "disk full"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

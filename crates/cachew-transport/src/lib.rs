//! `cachew-transport`: the HTTP client under the Cachew remote cache.
//!
//! A tower stack on hyper / hyper-util: hyper-util's pooled client is the
//! innermost service, wrapped by layers for timeouts, headers (auth, a
//! per-request hook, `User-Agent`, optional OpenTelemetry context), retries
//! and tracing. [`HttpClientBuilder`] documents the order of the layers.
//!
//! What it guarantees:
//! - **Every response is returned**, whatever its status: mapping statuses to
//!   errors is the caller's job. That includes a response the server sends
//!   while the request body is still being uploaded (e.g. a 403 before the
//!   upload finished): the caller gets the 403, not a broken pipe.
//! - **Nothing hangs**: connects are bounded by the connect timeout, TLS
//!   handshakes by the handshake timeout, the wait for response headers by
//!   the header timeout (per request with [`ResponseHeaderTimeout`]), and
//!   each wait for a response body chunk by the idle timeout.
//! - **No short success**: a connection that drops mid-body is an error.
//! - **Uploads never end cleanly by accident**: a streaming
//!   [`RequestBody::channel`] ends cleanly only through
//!   [`BodySender::finish`]; an abort or a dropped sender fails the body so
//!   the server discards the partial upload.
//! - **Retries only when safe**: replayable bodies on connect errors, and
//!   idempotent requests on 429/502/503/504, with jittered exponential
//!   backoff and `Retry-After`; never streaming uploads, never 501.
//! - **No secrets in output**: `Debug` and error messages show neither the
//!   `Authorization` value nor URL credentials or queries.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use bytes::Bytes;
//! use cachew_transport::{HttpClient, RequestBody};
//!
//! # async fn example() -> Result<(), cachew_transport::Error> {
//! let client = HttpClient::builder()
//!     .authorization("Bearer secret-token")
//!     .idle_timeout(Duration::from_secs(30))
//!     .build()?;
//!
//! // A buffered request: eligible for retries.
//! let req = http::Request::get("http://127.0.0.1:8080/api/v1/stats")
//!     .body(RequestBody::empty())
//!     .expect("valid request");
//! let resp = client.send(req).await?;
//! let status = resp.status();
//! let body = resp.into_body().bytes_limited(1 << 20).await?;
//! println!("{status}: {} bytes", body.len());
//!
//! // A streaming upload: runs alongside the producer, never retried.
//! let (mut tx, body) = RequestBody::channel(8);
//! let req = http::Request::post("http://127.0.0.1:8080/api/v1/object/default/abc")
//!     .body(body)
//!     .expect("valid request");
//! let upload = tokio::spawn({
//!     let client = client.clone();
//!     async move { client.send(req).await }
//! });
//! for chunk in [&b"hello "[..], b"world"] {
//!     if tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
//!         break; // the request ended early; its result says why
//!     }
//! }
//! tx.finish(); // without this (or on `tx.abort(cause)`) the upload fails
//! let resp = upload.await.expect("task")?;
//! println!("upload: {}", resp.status());
//! # Ok(())
//! # }
//! ```
//!
//! # Tracing and OpenTelemetry
//!
//! Each request runs in an `http.request` [`tracing`] span (see
//! [`HttpClientBuilder`]). With the cargo feature `otel`, the header layer
//! also injects `opentelemetry::Context::current()` through the global
//! text-map propagator, which adds a W3C `traceparent` once the application
//! installs `TraceContextPropagator`. Without a configured propagator the
//! global one is a no-op, so this costs nothing; without the feature no
//! OpenTelemetry code is compiled at all.

mod body;
mod client;
mod error;
mod layers;
#[cfg(feature = "otel")]
mod otel;
mod proxy;
mod tls;

pub use body::{BodyReader, BodySender, RequestBody, ResponseBody};
pub use client::{HttpClient, HttpClientBuilder, HttpService};
pub use error::{BoxError, Error, Result, TimeoutKind};
pub use layers::retry::Idempotency;
pub use layers::timeout::ResponseHeaderTimeout;
pub use proxy::Proxies;
pub use tls::SystemRoots;

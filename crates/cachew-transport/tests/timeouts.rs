//! Timeouts against stalled servers: the per-request header wait
//! ([`ResponseHeaderTimeout`]), retries of idempotent requests whose header
//! wait ran out, and a body that stops delivering bytes, with messages
//! that name the (redacted) URL and the wait.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachew_transport::{Error, RequestBody, ResponseHeaderTimeout, TimeoutKind};
use http::Request;
use tokio::io::AsyncWriteExt;

use support::{read_head, serve_raw};

const SHORT: Duration = Duration::from_millis(200);

/// A server that holds the headers of the first `stall_first` requests
/// for `hold`, then answers `ok`; counts requests.
async fn slow_headers(
    hold: Duration,
    stall_first: usize,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let addr = serve_raw(move |mut s| {
        let seen = seen.clone();
        async move {
            loop {
                if read_head(&mut s).await.is_empty() {
                    return;
                }
                let n = seen.fetch_add(1, Ordering::SeqCst);
                if n < stall_first {
                    tokio::time::sleep(hold).await;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        }
    })
    .await;
    (addr, count)
}

fn client() -> cachew_transport::HttpClient {
    support::builder()
        .response_header_timeout(SHORT)
        .idle_timeout(SHORT)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_request_extension_extends_the_header_wait() {
    let (addr, _) = slow_headers(Duration::from_millis(700), usize::MAX).await;
    let url = format!("http://user:pw-secret@{addr}/git/x/snapshot.tar.zst?token=q-secret");
    let no_retry = support::builder()
        .response_header_timeout(SHORT)
        .max_retries(0)
        .build()
        .unwrap();
    let err = no_retry
        .send(Request::get(&url).body(RequestBody::empty()).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                kind: TimeoutKind::ResponseHeaders,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("http://{addr}/git/x/snapshot.tar.zst")),
        "{text}"
    );
    assert!(text.contains("200ms"), "{text}");
    assert!(!text.contains("secret"), "{text}");

    let mut req = Request::get(&url).body(RequestBody::empty()).unwrap();
    req.extensions_mut()
        .insert(ResponseHeaderTimeout(Duration::from_secs(5)));
    let resp = no_retry.send(req).await.unwrap();
    assert_eq!(resp.into_body().bytes().await.unwrap(), "ok");
}

#[tokio::test]
async fn header_timeouts_of_idempotent_requests_are_retried() {
    let (addr, count) = slow_headers(Duration::from_secs(2), 1).await;
    let started = Instant::now();
    let resp = client()
        .send(
            Request::get(format!("http://{addr}/obj"))
                .body(RequestBody::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.into_body().bytes().await.unwrap(), "ok");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_secs(2));

    // A POST is not idempotent: its timeout is final.
    let (addr, count) = slow_headers(Duration::from_secs(2), 1).await;
    let err = client()
        .send(
            Request::post(format!("http://{addr}/api/v1/object/ns/k"))
                .body(RequestBody::full("x"))
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stalled_body_fails_after_the_idle_timeout() {
    let addr = serve_raw(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst")
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let resp = client()
        .send(
            Request::get(format!("http://{addr}/big?sig=s3cret"))
                .body(RequestBody::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let err = resp.into_body().bytes().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                kind: TimeoutKind::BodyIdle,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() >= SHORT && started.elapsed() < Duration::from_secs(2));
    let text = err.to_string();
    assert!(text.contains(&format!("http://{addr}/big")), "{text}");
    assert!(text.contains("200ms") && !text.contains("s3cret"), "{text}");
}

//! Transport-level fault tests: dropped connections, stalls, retries, aborted
//! uploads, early responses and unreachable servers.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachew_transport::{Error, RequestBody, TimeoutKind};
use http::{Request, Response, StatusCode};
use support::{builder, client, collect_body, full, read_head, serve, serve_raw, unused_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

fn get(url: String) -> Request<RequestBody> {
    Request::get(url).body(RequestBody::empty()).unwrap()
}

#[tokio::test]
async fn connection_dropped_mid_download_is_an_error_not_a_short_success() {
    let addr = serve_raw(|mut s| async move {
        read_head(&mut s).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&[b'x'; 400]).await.unwrap();
        // Dropping the stream closes the connection 600 bytes short.
    })
    .await;
    let resp = client()
        .send(get(format!("http://{addr}/obj")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let err = resp.into_body().bytes().await.unwrap_err();
    assert!(
        matches!(err, Error::Protocol { .. } | Error::Io { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn chunked_download_cut_short_fails_the_async_reader() {
    let addr = serve_raw(|mut s| async move {
        read_head(&mut s).await;
        let msg = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
        s.write_all(msg.as_bytes()).await.unwrap();
    })
    .await;
    let resp = client()
        .send(get(format!("http://{addr}/obj")))
        .await
        .unwrap();
    let mut reader = resp.into_body().into_async_read();
    let mut out = Vec::new();
    let err = reader.read_to_end(&mut out).await.unwrap_err();
    assert_eq!(out, b"hello");
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
    assert!(
        inner.is_some(),
        "io error wraps the transport error: {err:?}"
    );
}

#[tokio::test]
async fn stalled_body_trips_the_idle_timeout() {
    let addr = serve_raw(|mut s| async move {
        read_head(&mut s).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&[b'x'; 100]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await;
    let resp = client()
        .send(get(format!("http://{addr}/obj")))
        .await
        .unwrap();
    let started = Instant::now();
    let err = resp.into_body().bytes().await.unwrap_err();
    let waited = started.elapsed();
    assert!(err.is_timeout(), "{err:?}");
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
    assert!(waited >= support::TEST_IDLE, "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn server_that_never_answers_trips_the_header_timeout() {
    let addr = serve_raw(|mut s| async move {
        read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await;
    let started = Instant::now();
    let err = client()
        .send(get(format!("http://{addr}/obj")))
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
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn status_503_then_200_is_retried_and_succeeds() {
    let hits = Arc::new(AtomicUsize::new(0));
    let server = serve({
        let hits = hits.clone();
        move |_req| {
            let n = hits.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Response::builder().status(503).body(full("busy")).unwrap()
                } else {
                    Response::new(full("ok"))
                }
            }
        }
    })
    .await;
    let resp = client().send(get(server.url("/obj"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.into_body().bytes().await.unwrap(), "ok");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_after_is_honoured_and_capped() {
    let hits = Arc::new(AtomicUsize::new(0));
    let server = serve({
        let hits = hits.clone();
        move |_req| {
            let n = hits.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Response::builder()
                        .status(429)
                        .header("retry-after", "1")
                        .body(full(""))
                        .unwrap(),
                    1 => Response::builder()
                        .status(503)
                        .header("retry-after", "3600")
                        .body(full(""))
                        .unwrap(),
                    _ => Response::new(full("ok")),
                }
            }
        }
    })
    .await;
    let client = builder()
        .max_retry_after(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Instant::now();
    let resp = client.send(get(server.url("/obj"))).await.unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // Two waits, each the server's Retry-After capped at 200 ms; far below
    // the hour the second answer asked for.
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // The seconds form below the cap is used as is.
    let hits2 = Arc::new(AtomicUsize::new(0));
    let server = serve({
        let hits = hits2.clone();
        move |_req| {
            let n = hits.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Response::builder()
                        .status(503)
                        .header("retry-after", "1")
                        .body(full(""))
                        .unwrap()
                } else {
                    Response::new(full("ok"))
                }
            }
        }
    })
    .await;
    let started = Instant::now();
    let resp = support::client()
        .send(get(server.url("/obj")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(950));
}

#[tokio::test]
async fn status_501_is_never_retried() {
    let server =
        serve(|_req| async { Response::builder().status(501).body(full("no")).unwrap() }).await;
    let resp = client()
        .send(get(server.url("/api/v1/stats")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn retries_are_bounded() {
    let server =
        serve(|_req| async { Response::builder().status(502).body(full("bad")).unwrap() }).await;
    let client = builder().max_retries(2).build().unwrap();
    let resp = client.send(get(server.url("/obj"))).await.unwrap();
    // The last answer is handed back as is: statuses are not errors here.
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn only_idempotent_requests_are_retried_on_status() {
    let server =
        serve(|_req| async { Response::builder().status(503).body(full("busy")).unwrap() }).await;
    let client = builder().max_retries(1).build().unwrap();

    let create = Request::post(server.url("/api/v1/object/default/abc"))
        .body(RequestBody::full("data"))
        .unwrap();
    assert_eq!(client.send(create).await.unwrap().status(), 503);
    assert_eq!(server.requests(), 1, "a create is not repeated");

    // The path does not make a POST idempotent: only the caller's mark does.
    let unmarked = Request::post(server.url("/api/v1/object/default/abc/invalidate"))
        .body(RequestBody::empty())
        .unwrap();
    assert_eq!(client.send(unmarked).await.unwrap().status(), 503);
    assert_eq!(server.requests(), 2, "an unmarked POST is not repeated");

    let mut marked = Request::post(server.url("/api/v1/object/default/abc/invalidate"))
        .body(RequestBody::empty())
        .unwrap();
    marked
        .extensions_mut()
        .insert(cachew_transport::Idempotency::Idempotent);
    assert_eq!(client.send(marked).await.unwrap().status(), 503);
    assert_eq!(
        server.requests(),
        4,
        "a POST marked idempotent is repeated once"
    );

    let delete = Request::delete(server.url("/api/v1/object/default/abc"))
        .body(RequestBody::empty())
        .unwrap();
    assert_eq!(client.send(delete).await.unwrap().status(), 503);
    assert_eq!(server.requests(), 6, "delete is repeated once");
}

#[tokio::test]
async fn streaming_upload_is_never_retried() {
    let server = serve(|req| async move {
        let _ = collect_body(req).await;
        Response::builder().status(503).body(full("busy")).unwrap()
    })
    .await;
    let (tx, body) = RequestBody::channel(4);
    tx.finish();
    let req = Request::put(server.url("/obj")).body(body).unwrap();
    let resp = client().send(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.requests(), 1);
}

/// Starts a server that reports, per request, whether the body ended cleanly.
async fn body_outcome_server() -> (
    support::Server,
    mpsc::UnboundedReceiver<Result<Bytes, String>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = serve(move |req| {
        let tx = tx.clone();
        async move {
            let outcome = collect_body(req).await.map_err(|e| e.to_string());
            let ok = outcome.is_ok();
            let _ = tx.send(outcome);
            let status = if ok { 200 } else { 400 };
            Response::builder().status(status).body(full("")).unwrap()
        }
    })
    .await;
    (server, rx)
}

#[tokio::test]
async fn aborted_upload_fails_the_body_and_carries_the_cause() {
    let (server, mut outcomes) = body_outcome_server().await;
    let (mut tx, body) = RequestBody::channel(4);
    let req = Request::post(server.url("/api/v1/object/default/abc"))
        .body(body)
        .unwrap();
    let client = client();
    let pending = tokio::spawn(async move { client.send(req).await });
    tx.send(Bytes::from_static(b"partial ")).await.unwrap();
    tx.send(Bytes::from_static(b"data")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.abort(std::io::Error::other("disk read failed"));

    let err = pending.await.unwrap().unwrap_err();
    match &err {
        Error::BodyAborted { cause } => assert_eq!(cause.to_string(), "disk read failed"),
        other => panic!("expected BodyAborted, got {other:?}"),
    }
    assert!(err.is_body_aborted());
    let outcome = tokio::time::timeout(Duration::from_secs(2), outcomes.recv())
        .await
        .expect("server saw the request")
        .expect("outcome");
    assert!(
        outcome.is_err(),
        "server must see a failed body: {outcome:?}"
    );
}

#[tokio::test]
async fn dropped_sender_aborts_instead_of_ending_cleanly() {
    let (server, mut outcomes) = body_outcome_server().await;
    let (mut tx, body) = RequestBody::channel(4);
    let req = Request::post(server.url("/api/v1/object/default/abc"))
        .body(body)
        .unwrap();
    let client = client();
    let pending = tokio::spawn(async move { client.send(req).await });
    tx.send(Bytes::from_static(b"partial")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(tx);

    let err = pending.await.unwrap().unwrap_err();
    assert!(err.is_body_aborted(), "{err:?}");
    let outcome = tokio::time::timeout(Duration::from_secs(2), outcomes.recv())
        .await
        .expect("server saw the request")
        .expect("outcome");
    assert!(
        outcome.is_err(),
        "server must see a failed body: {outcome:?}"
    );
}

#[tokio::test]
async fn finished_upload_arrives_complete() {
    let (server, mut outcomes) = body_outcome_server().await;
    let (mut tx, body) = RequestBody::channel(2);
    let req = Request::post(server.url("/api/v1/object/default/abc"))
        .body(body)
        .unwrap();
    let client = client();
    let pending = tokio::spawn(async move { client.send(req).await });
    let mut expected = Vec::new();
    for i in 0..50u8 {
        let chunk = vec![i; 10_000];
        expected.extend_from_slice(&chunk);
        tx.send(Bytes::from(chunk)).await.unwrap();
    }
    tx.finish();
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let got = outcomes.recv().await.unwrap().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected);
}

#[tokio::test]
async fn slow_producer_does_not_trip_the_header_timeout() {
    // The producer waits twice the idle timeout before finishing; that is the
    // caller's time, not the server's, so the request must succeed.
    let (server, mut outcomes) = body_outcome_server().await;
    let (mut tx, body) = RequestBody::channel(2);
    let req = Request::post(server.url("/api/v1/object/default/abc"))
        .body(body)
        .unwrap();
    let client = client();
    let pending = tokio::spawn(async move { client.send(req).await });
    tx.send(Bytes::from_static(b"first")).await.unwrap();
    tokio::time::sleep(support::TEST_IDLE * 2).await;
    tx.send(Bytes::from_static(b" second")).await.unwrap();
    tokio::time::sleep(support::TEST_IDLE * 2).await;
    tx.finish();
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(outcomes.recv().await.unwrap().unwrap(), "first second");
}

#[tokio::test]
async fn send_after_the_request_ended_fails() {
    let server = serve(|_req| async { Response::new(full("early")) }).await;
    let (mut tx, body) = RequestBody::channel(1);
    let req = Request::post(server.url("/x")).body(body).unwrap();
    let resp = client().send(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    // The request is over; eventually the body is dropped and sends fail.
    let mut result = Ok(());
    for _ in 0..200 {
        result = tx.send(Bytes::from_static(b"late")).await;
        if result.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(result, Err(Error::BodyClosed)), "{result:?}");
    assert!(tx.is_closed());
}

/// The server answers 403 after reading only the request head, then closes
/// while the client is still streaming the body. The caller must get the
/// 403, not a broken pipe.
#[tokio::test]
async fn early_403_during_upload_surfaces_the_status() {
    for round in 0..5 {
        let addr = serve_raw(move |mut s| async move {
            read_head(&mut s).await;
            if round % 2 == 0 {
                // Let some body arrive so the close races with the upload.
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
            } else {
                // Read nothing more: the client fills the socket buffers and
                // blocks writing while the answer arrives.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let msg =
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nConnection: close\r\n\r\nforbidden";
            s.write_all(msg.as_bytes()).await.unwrap();
            let _ = s.flush().await;
            // Dropping the stream with unread data makes the kernel send RST.
        })
        .await;
        let (mut tx, body) = RequestBody::channel(4);
        let req = Request::post(format!("http://{addr}/api/v1/object/default/abc"))
            .body(body)
            .unwrap();
        let client = client();
        let producer = tokio::spawn(async move {
            let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
            // Up to 256 MiB: far more than socket buffers hold.
            for _ in 0..4096 {
                tx.send(chunk.clone()).await?;
            }
            tx.finish();
            Ok(())
        });
        let resp = client
            .send(req)
            .await
            .unwrap_or_else(|err| panic!("round {round}: expected the 403, got {err:?}"));
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "round {round}");
        let sent = tokio::time::timeout(Duration::from_secs(5), producer)
            .await
            .expect("producer stops")
            .unwrap();
        assert!(
            matches!(sent, Err(Error::BodyClosed)),
            "round {round}: the producer learns the request ended: {sent:?}"
        );
    }
}

#[tokio::test]
async fn unreachable_server_is_a_connect_error_naming_the_url() {
    let port = unused_port().await;
    let client = builder().max_retries(1).build().unwrap();
    let url = format!("http://user:hunter2@127.0.0.1:{port}/api/v1/object/ns/k?token=s3cr3t");
    let err = client.send(get(url)).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(!err.is_timeout());
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("http://127.0.0.1:{port}")),
        "{shown}"
    );
    let debug = format!("{err:?}");
    for secret in ["hunter2", "s3cr3t"] {
        assert!(
            !shown.contains(secret) && !debug.contains(secret),
            "{debug}"
        );
    }
    // The cause (connection refused) is in the source chain.
    let mut chain = String::new();
    let mut cur: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = cur {
        chain.push_str(&e.to_string());
        chain.push_str(" / ");
        cur = e.source();
    }
    assert!(chain.to_lowercase().contains("refused"), "{chain}");
}

#[tokio::test]
async fn stalled_tls_handshake_trips_the_tls_handshake_timeout() {
    // A TCP server that accepts and never speaks TLS.
    let addr = serve_raw(|s| async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(s);
    })
    .await;
    let client = builder()
        .tls_handshake_timeout(Duration::from_millis(200))
        .response_header_timeout(Duration::from_secs(5))
        .max_retries(0)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .send(get(format!("https://{addr}/obj")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                kind: TimeoutKind::TlsHandshake,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_connect() && err.is_timeout());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn connect_errors_are_retried_with_backoff() {
    let port = unused_port().await;
    let client = builder()
        .max_retries(2)
        .retry_base_delay(Duration::from_millis(100))
        .build()
        .unwrap();
    let started = Instant::now();
    let req = Request::post(format!("http://127.0.0.1:{port}/api/v1/object/ns/k"))
        .body(RequestBody::full("buffered, so safe to resend"))
        .unwrap();
    let err = client.send(req).await.unwrap_err();
    assert!(err.is_connect());
    // Backoffs of 50..100 ms and 100..200 ms: at least 150 ms in total.
    assert!(started.elapsed() >= Duration::from_millis(150));
}

/// A server that closes the first connection right after reading the request
/// head (as a server closing an idle pooled connection does) and answers on
/// later ones.
async fn closes_first_connection() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let conns = Arc::new(AtomicUsize::new(0));
    let addr = serve_raw({
        let conns = conns.clone();
        move |mut s| {
            let n = conns.fetch_add(1, Ordering::SeqCst);
            async move {
                read_head(&mut s).await;
                if n > 0 {
                    let msg = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    s.write_all(msg.as_bytes()).await.unwrap();
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest).await;
                }
            }
        }
    })
    .await;
    (addr, conns)
}

#[tokio::test]
async fn idempotent_request_is_retried_when_the_connection_closes_before_a_response() {
    let (addr, conns) = closes_first_connection().await;
    let resp = client()
        .send(get(format!("http://{addr}/obj")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.into_body().bytes().await.unwrap(), "ok");
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn non_idempotent_request_is_not_retried_when_the_connection_closes() {
    let (addr, conns) = closes_first_connection().await;
    let req = Request::post(format!("http://{addr}/api/v1/object/default/abc"))
        .body(RequestBody::full("data"))
        .unwrap();
    let err = client().send(req).await.unwrap_err();
    assert!(
        matches!(err, Error::Protocol { .. } | Error::Io { .. }),
        "{err:?}"
    );
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

//! `https://` with rustls: HTTP/2 through ALPN against an in-process TLS
//! server with a self-signed certificate, and the default (webpki) roots
//! refusing that certificate.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cachew_transport::Error;
use tokio::sync::mpsc;

use cachew_transport::RequestBody;
use http::{Request, Response, Version};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Whether each uploaded body ended cleanly, as the server saw it.
type Outcomes = mpsc::UnboundedReceiver<Result<usize, String>>;

/// Starts a TLS server offering h2 and http/1.1 that answers with the HTTP
/// version it served (after reading any body); returns its port, its
/// certificate, the number of accepted connections and the body outcomes.
async fn tls_server() -> (u16, CertificateDer<'static>, Arc<AtomicUsize>, Outcomes) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let (tx, outcomes) = mpsc::unbounded_channel();
    let counter = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let version = format!("{:?}", req.version());
                        if req.uri().path() == "/deny" {
                            // Answer without reading the upload.
                            let resp = Response::builder()
                                .status(403)
                                .body(support::full("forbidden"))
                                .unwrap();
                            return Ok::<_, std::convert::Infallible>(resp);
                        }
                        if req.method() == http::Method::POST {
                            let outcome = support::collect_body(req)
                                .await
                                .map(|b| b.len())
                                .map_err(|e| e.to_string());
                            let _ = tx.send(outcome);
                        }
                        Ok::<_, std::convert::Infallible>(Response::new(support::full(version)))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, cert, conns, outcomes)
}

fn trusting(cert: CertificateDer<'static>) -> cachew_transport::HttpClient {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    support::builder().tls_config(tls).build().unwrap()
}

#[tokio::test]
async fn https_negotiates_http2_with_a_custom_root() {
    let (port, cert, conns, _) = tls_server().await;
    let client = trusting(cert);
    for _ in 0..3 {
        let req = Request::get(format!("https://127.0.0.1:{port}/obj"))
            .body(RequestBody::empty())
            .unwrap();
        let resp = client.send(req).await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.into_body().bytes().await.unwrap(), "HTTP/2.0");
    }
    // HTTP/2 multiplexes every request over one connection.
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http2_upload_finishes_or_aborts_with_its_cause() {
    let (port, cert, _, mut outcomes) = tls_server().await;
    let client = trusting(cert);
    let url = format!("https://127.0.0.1:{port}/api/v1/object/default/k");

    let (mut tx, body) = RequestBody::channel(4);
    let pending = tokio::spawn({
        let (client, req) = (client.clone(), Request::post(&url).body(body).unwrap());
        async move { client.send(req).await }
    });
    tx.send(Bytes::from(vec![1u8; 100_000])).await.unwrap();
    tx.finish();
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(outcomes.recv().await.unwrap(), Ok(100_000));

    let (mut tx, body) = RequestBody::channel(4);
    let pending = tokio::spawn({
        let req = Request::post(&url).body(body).unwrap();
        async move { client.send(req).await }
    });
    tx.send(Bytes::from(vec![1u8; 100_000])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.abort(std::io::Error::other("compression failed"));
    let err = pending.await.unwrap().unwrap_err();
    match &err {
        Error::BodyAborted { cause } => assert_eq!(cause.to_string(), "compression failed"),
        other => panic!("expected BodyAborted, got {other:?}"),
    }
    let outcome = tokio::time::timeout(Duration::from_secs(2), outcomes.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        outcome.is_err(),
        "server must see a failed body: {outcome:?}"
    );
}

#[tokio::test]
async fn default_roots_do_not_trust_a_self_signed_certificate() {
    let (port, _cert, _, _) = tls_server().await;
    let client = support::builder().max_retries(0).build().unwrap();
    let req = Request::get(format!("https://127.0.0.1:{port}/obj"))
        .body(RequestBody::empty())
        .unwrap();
    let err = client.send(req).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(err
        .to_string()
        .contains(&format!("https://127.0.0.1:{port}")));
}

#[tokio::test]
async fn http2_early_403_during_upload_surfaces_the_status() {
    let (port, cert, _, _) = tls_server().await;
    let client = trusting(cert);
    let (mut tx, body) = RequestBody::channel(4);
    let req = Request::post(format!("https://127.0.0.1:{port}/deny"))
        .body(body)
        .unwrap();
    let producer = tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
        for _ in 0..4096 {
            tx.send(chunk.clone()).await?;
        }
        tx.finish();
        Ok::<_, Error>(())
    });
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.into_body().bytes().await.unwrap(), "forbidden");
    let sent = tokio::time::timeout(Duration::from_secs(5), producer)
        .await
        .expect("producer stops")
        .unwrap();
    assert!(matches!(sent, Err(Error::BodyClosed)), "{sent:?}");
}

//! `https://` with rustls: HTTP/2 through ALPN against an in-process TLS
//! server with a self-signed certificate, and the default (webpki) roots
//! refusing that certificate.

mod support;

use std::sync::Arc;

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

/// Starts a TLS server offering h2 and http/1.1 that answers with the HTTP
/// version it served; returns its port and certificate.
async fn tls_server() -> (u16, CertificateDer<'static>) {
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
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = format!("{:?}", req.version());
                    Ok::<_, std::convert::Infallible>(Response::new(support::full(body)))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, cert)
}

#[tokio::test]
async fn https_negotiates_http2_with_a_custom_root() {
    let (port, cert) = tls_server().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = support::builder().tls_config(tls).build().unwrap();
    for _ in 0..3 {
        let req = Request::get(format!("https://127.0.0.1:{port}/obj"))
            .body(RequestBody::empty())
            .unwrap();
        let resp = client.send(req).await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.into_body().bytes().await.unwrap(), "HTTP/2.0");
    }
}

#[tokio::test]
async fn default_roots_do_not_trust_a_self_signed_certificate() {
    let (port, _cert) = tls_server().await;
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

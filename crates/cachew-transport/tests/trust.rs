//! Trust as Go's `net/http` has it, against a private CA made by the
//! `openssl` CLI: `SSL_CERT_FILE` (in a child process, and as an explicit
//! [`SystemRoots`]), `SSL_CERT_DIR`, the CA option, refusal without any of
//! them, and mutual TLS with a client certificate.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cachew_transport::{HttpClient, HttpClientBuilder, RequestBody, SystemRoots};
use http::{Request, Response};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Files of a private PKI: a CA, a server certificate for 127.0.0.1 signed
/// by it, and a client certificate signed by it.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the PKI with the `openssl` CLI, or `None` (and says so on stderr)
/// when there is no `openssl`.
fn make_pki() -> Option<Pki> {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: openssl not found");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=cachew test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(d, &ca);
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        d.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    for who in ["server", "client"] {
        let (key, csr, pem, ext) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.pem"),
            format!("{who}.ext"),
        );
        let subj = format!("/CN=cachew test {who}");
        let mut req = vec!["req", "-nodes"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(d, &req);
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
    }
    Some(Pki { dir })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server with the PKI's server certificate that answers "ok" (or, for
/// a client certificate it verified, "ok mtls"); with `require_client_cert`
/// it refuses clients without a certificate signed by the CA.
async fn tls_server(pki: &Pki, require_client_cert: bool) -> u16 {
    let chain: Vec<_> = CertificateDer::pem_file_iter(pki.path("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(pki.path("ca.pem")).unwrap())
            .unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
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
                let mtls = tls.get_ref().1.peer_certificates().is_some();
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| async move {
                    let text = if mtls { "ok mtls" } else { "ok" };
                    Ok::<_, std::convert::Infallible>(Response::new(support::full(text)))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

/// A builder that trusts nothing from the host: no system bundle file, no
/// system certificate directory (so only what a test adds counts).
fn isolated() -> HttpClientBuilder {
    support::builder().max_retries(0).system_roots(
        SystemRoots::default()
            .with_cert_file("/nonexistent/bundle.pem")
            .with_cert_dirs(Vec::<PathBuf>::new()),
    )
}

async fn get(client: &HttpClient, port: u16) -> Result<String, cachew_transport::Error> {
    let req = Request::get(format!("https://127.0.0.1:{port}/obj"))
        .body(RequestBody::empty())
        .unwrap();
    let resp = client.send(req).await?;
    let body = resp.into_body().bytes().await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_ca_is_trusted_only_when_configured() {
    let Some(pki) = make_pki() else { return };
    let port = tls_server(&pki, false).await;

    // SSL_CERT_FILE as an explicit setting: the file replaces the bundle.
    let client = support::builder()
        .system_roots(SystemRoots::default().with_cert_file(pki.path("ca.pem")))
        .build()
        .unwrap();
    assert_eq!(get(&client, port).await.unwrap(), "ok");

    // SSL_CERT_DIR: a directory of PEM files.
    let dir = pki.path("certdir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(pki.path("ca.pem"), dir.join("private-ca.pem")).unwrap();
    let client = support::builder()
        .system_roots(
            SystemRoots::default()
                .with_cert_file("/nonexistent/bundle.pem")
                .with_cert_dirs(["/nonexistent/dir".into(), dir]),
        )
        .build()
        .unwrap();
    assert_eq!(get(&client, port).await.unwrap(), "ok");

    // The CA option, on top of the real system roots.
    let client = support::builder()
        .ca_certificate_file(pki.path("ca.pem"))
        .build()
        .unwrap();
    assert_eq!(get(&client, port).await.unwrap(), "ok");

    // Without: the system roots (or the bundled fallback) refuse it.
    let client = support::builder().max_retries(0).build().unwrap();
    let err = get(&client, port).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let client = isolated().build().unwrap();
    assert!(get(&client, port).await.unwrap_err().is_connect());

    // A CA file without certificates is a build error naming the file.
    let err = support::builder()
        .ca_certificate_file(pki.path("server.ext"))
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.ext"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate() {
    let Some(pki) = make_pki() else { return };
    let port = tls_server(&pki, true).await;
    let without = isolated()
        .ca_certificate_file(pki.path("ca.pem"))
        .build()
        .unwrap();
    assert!(get(&without, port).await.is_err());
    let with = isolated()
        .ca_certificate_file(pki.path("ca.pem"))
        .client_certificate_files(pki.path("client.pem"), pki.path("client.key"))
        .build()
        .unwrap();
    assert_eq!(get(&with, port).await.unwrap(), "ok mtls");
    // The key file is named in errors, its contents never.
    let err = isolated()
        .client_certificate_files(pki.path("client.pem"), pki.path("missing.key"))
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.key"), "{err}");
}

/// The real environment variable, read by a child process (this test
/// binary, running [`child_trusts_ssl_cert_file`]), so that this process's
/// environment is never changed while other tests run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_cert_file_variable_is_read_from_the_environment() {
    let Some(pki) = make_pki() else { return };
    let port = tls_server(&pki, false).await;
    let run = |ca: &Path| {
        let exe = std::env::current_exe().unwrap();
        let ca = ca.to_owned();
        tokio::task::spawn_blocking(move || {
            Command::new(exe)
                .args([
                    "--exact",
                    "child_trusts_ssl_cert_file",
                    "--ignored",
                    "--nocapture",
                ])
                .env("SSL_CERT_FILE", ca)
                .env_remove("SSL_CERT_DIR")
                .env("CACHEW_TEST_TLS_PORT", port.to_string())
                .output()
                .unwrap()
        })
    };
    let out = run(&pki.path("ca.pem")).await.unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    // With the variable naming a file without our CA, the child fails.
    let out = run(&pki.path("server.ext")).await.unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
#[ignore = "run by ssl_cert_file_variable_is_read_from_the_environment"]
async fn child_trusts_ssl_cert_file() {
    let port: u16 = std::env::var("CACHEW_TEST_TLS_PORT")
        .expect("run by the parent test")
        .parse()
        .unwrap();
    // Default settings: SystemRoots::from_env().
    let client = support::builder().max_retries(0).build().unwrap();
    assert_eq!(get(&client, port).await.unwrap(), "ok");
}

//! Requests through a real proxy: Debian's `tinyproxy`, started by the test
//! on a loopback port with its own configuration. Plain `http://` goes to
//! the proxy in absolute form; `https://` through a `CONNECT` tunnel;
//! credentials in the proxy URL become `Proxy-Authorization: Basic`.

mod support;

use std::net::TcpStream as StdTcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachew_transport::{HttpClient, Proxies, RequestBody};
use http::{Request, Response};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A running tinyproxy, killed when dropped.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tinyproxy {
    fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts tinyproxy allowing `CONNECT` to `connect_port` and, with
/// `auth`, requiring those Basic credentials; `None` (said loudly on
/// stderr) when tinyproxy is not installed.
fn tinyproxy(connect_port: u16, auth: Option<(&str, &str)>) -> Option<Tinyproxy> {
    let exe = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            Command::new("tinyproxy")
                .arg("-v")
                .output()
                .ok()
                .map(|_| PathBuf::from("tinyproxy"))
        });
    let Some(exe) = exe else {
        eprintln!("SKIPPED: tinyproxy not found");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let log = dir.path().join("tinyproxy.log");
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 10\nAllow 127.0.0.1\nConnectPort {connect_port}\n\
         LogLevel Info\nLogFile \"{}\"\nPidFile \"{}\"\nMaxClients 20\n",
        log.display(),
        dir.path().join("tinyproxy.pid").display(),
    );
    if let Some((user, pass)) = auth {
        conf.push_str(&format!("BasicAuth {user} {pass}\n"));
    }
    let conf_path = dir.path().join("tinyproxy.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(exe)
        .arg("-d")
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tinyproxy");
    let proxy = Tinyproxy {
        child,
        port,
        log,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while StdTcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tinyproxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(proxy)
}

/// An `http://` origin that reports the `Via` header the proxy added and
/// whether the request carried `Proxy-Authorization` (it must not reach
/// the origin).
async fn origin() -> support::Server {
    support::serve(|req: Request<hyper::body::Incoming>| async move {
        let via = req
            .headers()
            .get("via")
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .unwrap_or_default();
        let leaked = req.headers().contains_key("proxy-authorization");
        Response::new(support::full(format!("via={via} leaked={leaked}")))
    })
    .await
}

/// A TLS origin with a self-signed certificate for 127.0.0.1.
async fn tls_origin() -> (u16, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
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
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(support::full("tls ok")))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, cert)
}

fn client(proxies: Proxies, cert: Option<CertificateDer<'static>>) -> HttpClient {
    let mut b = support::builder()
        .connect_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .max_retries(0)
        .proxies(proxies);
    if let Some(cert) = cert {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        b = b.tls_config(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
    }
    b.build().unwrap()
}

async fn get(client: &HttpClient, url: &str) -> Result<(u16, String), cachew_transport::Error> {
    let req = Request::get(url).body(RequestBody::empty()).unwrap();
    let resp = client.send(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().bytes().await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_https_go_through_the_proxy() {
    let (tls_port, cert) = tls_origin().await;
    let Some(proxy) = tinyproxy(tls_port, None) else {
        return;
    };
    let origin = origin().await;

    let c = client(Proxies::all(&proxy.url("")).unwrap(), Some(cert.clone()));
    let (status, body) = get(&c, &origin.url("/obj")).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("tinyproxy"), "no Via from the proxy: {body}");

    let (status, body) = get(&c, &format!("https://127.0.0.1:{tls_port}/obj"))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "tls ok"));
    let log = proxy.log();
    assert!(log.contains("CONNECT"), "the proxy saw no CONNECT:\n{log}");

    // Environment settings never proxy loopback (Go's rule): a proxy that
    // does not exist is not even tried.
    let dead = format!("http://127.0.0.1:{}", support::unused_port().await);
    let env = Proxies::from_vars(|name| (name == "HTTP_PROXY").then(|| dead.clone()));
    let (status, body) = get(&client(env, None), &origin.url("/obj")).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "via= leaked=false"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_credentials_come_from_the_proxy_url() {
    let (tls_port, cert) = tls_origin().await;
    let Some(proxy) = tinyproxy(tls_port, Some(("proxyuser", "pr0xy-secret"))) else {
        return;
    };
    let origin = origin().await;
    let https = format!("https://127.0.0.1:{tls_port}/obj");

    let anonymous = client(Proxies::all(&proxy.url("")).unwrap(), Some(cert.clone()));
    let (status, _) = get(&anonymous, &origin.url("/obj")).await.unwrap();
    assert_eq!(status, 407);
    let err = get(&anonymous, &https).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    let authed = client(
        Proxies::all(&proxy.url("proxyuser:pr0xy-secret@")).unwrap(),
        Some(cert),
    );
    let (status, body) = get(&authed, &origin.url("/obj")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("leaked=false"), "{body}");
    let (status, body) = get(&authed, &https).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "tls ok"));
    assert!(!format!("{authed:?}").contains("pr0xy-secret"));
}

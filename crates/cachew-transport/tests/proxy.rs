//! Requests through real proxies started by the test on loopback ports,
//! each with its own configuration: Debian's `tinyproxy` (an HTTP proxy),
//! `stunnel` with an `openssl`-made certificate in front of it (an
//! `https://` proxy) and `microsocks` (SOCKS5). Plain `http://` goes to
//! an HTTP(S) proxy in absolute form, `https://` through a `CONNECT`
//! tunnel; credentials in the proxy URL become `Proxy-Authorization:
//! Basic`, or SOCKS5's user/password method, and never reach the origin
//! or a message. A program that is missing is reported on stderr as
//! `SKIPPED: X not found` (`.ci/run` installs them all).

mod support;

use std::net::TcpStream as StdTcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachew_transport::{HttpClient, Proxies, RequestBody};
use http::{Request, Response};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A proxy process on a loopback port, killed when dropped.
struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn url(&self, scheme: &str, userinfo: &str) -> String {
        format!("{scheme}://{userinfo}127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The path of program `name` (also looked for in the sbin directories,
/// which a normal user's `PATH` may lack), or `None` after saying
/// `SKIPPED` on stderr.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIPPED: {name} not found");
    }
    found
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Runs `command` (output to files in `dir`) and waits until it listens
/// on `port`.
fn spawn(mut command: Command, port: u16, log: PathBuf, dir: tempfile::TempDir) -> Daemon {
    let what = format!("{:?}", command.get_program());
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let mut daemon = Daemon {
        child,
        port,
        log,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while StdTcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("{what} exited ({status}):\n{}", daemon.log());
        }
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

/// Starts tinyproxy allowing `CONNECT` to `connect_port` and, with
/// `auth`, requiring those Basic credentials.
fn tinyproxy(connect_port: u16, auth: Option<(&str, &str)>) -> Option<Daemon> {
    let exe = program("tinyproxy")?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
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
    let mut command = Command::new(exe);
    command.arg("-d").arg("-c").arg(&conf_path);
    Some(spawn(command, port, log, dir))
}

/// Starts microsocks (SOCKS5), with `auth` requiring that user and
/// password (and refusing clients without them).
fn microsocks(auth: Option<(&str, &str)>) -> Option<Daemon> {
    let exe = program("microsocks")?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(exe);
    command.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((user, pass)) = auth {
        command.args(["-u", user, "-P", pass]);
    }
    let log = dir.path().join("none.log");
    Some(spawn(command, port, log, dir))
}

/// Makes a self-signed certificate for IP 127.0.0.1 with the `openssl`
/// CLI in `dir` (`proxy.pem`, `proxy.key`).
fn openssl_certificate(dir: &Path) -> Option<CertificateDer<'static>> {
    let exe = program("openssl")?;
    let out = Command::new(exe)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test proxy",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "proxy.key",
            "-out",
            "proxy.pem",
        ])
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(CertificateDer::from_pem_file(dir.join("proxy.pem")).unwrap())
}

/// An `https://` proxy: stunnel terminating TLS (an openssl-made
/// certificate) in front of `backend` (a tinyproxy). Returns the stunnel
/// and the certificate to trust.
fn stunnel(backend: &Daemon) -> Option<(Daemon, CertificateDer<'static>)> {
    let exe = program("stunnel4").or_else(|| program("stunnel"))?;
    let dir = tempfile::tempdir().unwrap();
    let cert = openssl_certificate(dir.path())?;
    let port = free_port();
    let log = dir.path().join("stunnel.log");
    let conf = format!(
        "foreground = yes\npid =\noutput = {}\ndebug = info\n\
         [proxy]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{}\ncert = {}\nkey = {}\n",
        log.display(),
        backend.port,
        dir.path().join("proxy.pem").display(),
        dir.path().join("proxy.key").display(),
    );
    let conf_path = dir.path().join("stunnel.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut command = Command::new(exe);
    command.arg(&conf_path);
    Some((spawn(command, port, log, dir), cert))
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

fn client(proxies: Proxies, certs: &[CertificateDer<'static>]) -> HttpClient {
    let mut b = support::builder()
        .connect_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .max_retries(0)
        .proxies(proxies);
    if !certs.is_empty() {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots.add(cert.clone()).unwrap();
        }
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

    let c = client(
        Proxies::all(&proxy.url("http", "")).unwrap(),
        std::slice::from_ref(&cert),
    );
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
    let (status, body) = get(&client(env, &[]), &origin.url("/obj")).await.unwrap();
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

    let anonymous = client(
        Proxies::all(&proxy.url("http", "")).unwrap(),
        std::slice::from_ref(&cert),
    );
    let (status, _) = get(&anonymous, &origin.url("/obj")).await.unwrap();
    assert_eq!(status, 407);
    let err = get(&anonymous, &https).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    let authed = client(
        Proxies::all(&proxy.url("http", "proxyuser:pr0xy-secret@")).unwrap(),
        &[cert],
    );
    let (status, body) = get(&authed, &origin.url("/obj")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("leaked=false"), "{body}");
    let (status, body) = get(&authed, &https).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "tls ok"));
    assert!(!format!("{authed:?}").contains("pr0xy-secret"));
}

/// Every message an error can produce, for secret checks.
fn all_text(err: &cachew_transport::Error) -> String {
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        text.push_str(&format!(" / {e}"));
        source = e.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_gets_tls_then_absolute_form_or_connect() {
    let (tls_port, origin_cert) = tls_origin().await;
    let Some(backend) = tinyproxy(tls_port, Some(("proxyuser", "pr0xy-secret"))) else {
        return;
    };
    let Some((proxy, proxy_cert)) = stunnel(&backend) else {
        return;
    };
    let origin = origin().await;
    let https = format!("https://127.0.0.1:{tls_port}/obj");
    let trust = [origin_cert.clone(), proxy_cert];

    let authed = client(
        Proxies::all(&proxy.url("https", "proxyuser:pr0xy-secret@")).unwrap(),
        &trust,
    );
    let (status, body) = get(&authed, &origin.url("/obj")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tinyproxy"), "no Via from the proxy: {body}");
    assert!(body.contains("leaked=false"), "{body}");
    let (status, body) = get(&authed, &https).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "tls ok"));
    let log = backend.log();
    assert!(log.contains("CONNECT"), "the proxy saw no CONNECT:\n{log}");
    // stunnel only speaks TLS on that port: the requests above went
    // through a TLS session with it.
    assert!(
        proxy.log().contains("accepted connection"),
        "stunnel saw nothing:\n{}",
        proxy.log()
    );
    assert!(!format!("{authed:?}").contains("pr0xy-secret"));

    // The credentials matter (so they were sent inside the TLS session).
    let anonymous = client(Proxies::all(&proxy.url("https", "")).unwrap(), &trust);
    let (status, _) = get(&anonymous, &origin.url("/obj")).await.unwrap();
    assert_eq!(status, 407);
    let err = get(&anonymous, &https).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    // The proxy's certificate is checked like any server's.
    let untrusting = client(
        Proxies::all(&proxy.url("https", "proxyuser:pr0xy-secret@")).unwrap(),
        &[origin_cert],
    );
    let err = get(&untrusting, &origin.url("/obj")).await.unwrap_err();
    let text = all_text(&err);
    assert!(err.is_connect(), "{text}");
    assert!(text.contains("TLS handshake with proxy"), "{text}");
    assert!(!text.contains("pr0xy-secret"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_proxy_carries_http_and_https() {
    let (tls_port, cert) = tls_origin().await;
    let Some(proxy) = microsocks(Some(("sockuser", "s0cks-secret"))) else {
        return;
    };
    let origin = origin().await;
    let https = format!("https://127.0.0.1:{tls_port}/obj");

    for scheme in ["socks5", "socks5h"] {
        let c = client(
            Proxies::all(&proxy.url(scheme, "sockuser:s0cks-secret@")).unwrap(),
            std::slice::from_ref(&cert),
        );
        let (status, body) = get(&c, &origin.url("/obj")).await.unwrap();
        // A byte stream to the origin: no Via, no proxy credentials.
        assert_eq!(
            (status, body.as_str()),
            (200, "via= leaked=false"),
            "{scheme}"
        );
        let (status, body) = get(&c, &https).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "tls ok"), "{scheme}");
        assert!(!format!("{c:?}").contains("s0cks-secret"));
    }

    // microsocks refuses a wrong password and clients without one, so the
    // requests above did go through it, with the URL's credentials.
    for userinfo in ["sockuser:wr0ng-secret@", ""] {
        let c = client(
            Proxies::all(&proxy.url("socks5", userinfo)).unwrap(),
            std::slice::from_ref(&cert),
        );
        let err = get(&c, &origin.url("/obj")).await.unwrap_err();
        let text = all_text(&err);
        assert!(err.is_connect(), "{text}");
        assert!(text.contains("SOCKS5 proxy"), "{text}");
        assert!(!text.contains("wr0ng-secret"), "{text}");
    }

    // A SOCKS5 proxy that is gone is a connect error naming it.
    let port = proxy.port;
    drop(proxy);
    let c = client(
        Proxies::all(&format!("socks5://sockuser:s0cks-secret@127.0.0.1:{port}")).unwrap(),
        &[],
    );
    let err = get(&c, &origin.url("/obj")).await.unwrap_err();
    let text = all_text(&err);
    assert!(
        text.contains(&format!("proxy socks5://127.0.0.1:{port}/")),
        "{text}"
    );
    assert!(!text.contains("s0cks-secret"), "{text}");
}

/// A log sink for a TRACE subscriber.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// The TRACE subscriber is the global one (the only test here that sets
// one): a thread-local default set while the other tests run on their
// threads saw nothing at all in a full run of this binary, as tracing
// cached the callsites' interest without it. Their lines land here too,
// and are checked for passwords as well.
#[tokio::test]
async fn proxy_passwords_never_reach_the_logs() {
    use base64::Engine as _;
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");

    let (tls_port, origin_cert) = tls_origin().await;
    let Some(backend) = tinyproxy(tls_port, Some(("proxyuser", "pr0xy-secret"))) else {
        return;
    };
    let Some((https_proxy, proxy_cert)) = stunnel(&backend) else {
        return;
    };
    let Some(socks) = microsocks(Some(("sockuser", "s0cks-secret"))) else {
        return;
    };
    let origin = origin().await;
    let trust = [origin_cert, proxy_cert];
    let mut texts = Vec::new();
    for proxy in [
        backend.url("http", "proxyuser:pr0xy-secret@"),
        https_proxy.url("https", "proxyuser:pr0xy-secret@"),
        socks.url("socks5", "sockuser:s0cks-secret@"),
        // Wrong passwords: the failures are logged and returned.
        backend.url("http", "proxyuser:wr0ng-secret@"),
        socks.url("socks5h", "sockuser:wr0ng-secret@"),
    ] {
        let c = client(Proxies::all(&proxy).unwrap(), &trust);
        for url in [
            origin.url("/obj"),
            format!("https://127.0.0.1:{tls_port}/obj"),
        ] {
            match get(&c, &url).await {
                Ok((status, body)) => texts.push(format!("{status} {body}")),
                Err(e) => texts.push(all_text(&e)),
            }
        }
        texts.push(format!("{c:?}"));
    }
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("DEBUG"),
        "nothing was logged at debug level: {logs}"
    );
    assert!(logs.contains("through proxy"), "{logs}");
    texts.push(logs);
    let basic = |c: &str| base64::engine::general_purpose::STANDARD.encode(c);
    for text in &texts {
        for secret in [
            "pr0xy-secret".to_owned(),
            "s0cks-secret".to_owned(),
            "wr0ng-secret".to_owned(),
            basic("proxyuser:pr0xy-secret"),
            basic("proxyuser:wr0ng-secret"),
        ] {
            assert!(!text.contains(&secret), "{secret} leaked: {text}");
        }
    }
}

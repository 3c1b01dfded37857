//! `cachew serve` as a child process with real peers (curl, openssl, the
//! `cachew` client): refusing an open server off loopback, tokens and the
//! access log, TLS, a slowloris attack at a lowered file-descriptor limit,
//! SIGTERM with an upload in flight, and space: `--max-size` eviction
//! across a restart, the start-up and periodic sweeps, `--max-ttl` and the
//! `/metrics` counters. Loopback only; every wait is
//! bounded and every child is killed on the way out.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{cachew, run};

/// A bound on every wait for the child.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running `cachew serve`.
struct Serve {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `cachew serve --dir DIR --bind 127.0.0.1:0 ARGS…`, with the
    /// open-file limit lowered to `nofile` if given, and waits for its
    /// address.
    fn start(dir: &Path, args: &[&str], nofile: Option<u32>) -> Serve {
        let bin = env!("CARGO_BIN_EXE_cachew");
        let mut cmd = match nofile {
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin);
                sh
            }
            None => Command::new(bin),
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("CACHEW_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["serve", "--dir"])
            .arg(dir)
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split_once(" at ").map(|(_, r)| r) {
                    if line.starts_with("cachew: serving") {
                        let url = rest.split_whitespace().next().unwrap_or_default();
                        let _ = tx.send(url.to_owned());
                    }
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = match rx.recv_timeout(PATIENCE) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not start: {}", stderr.lock().unwrap());
            }
        };
        Serve { child, url, stderr }
    }

    fn addr(&self) -> SocketAddr {
        self.url.rsplit("//").next().unwrap().parse().unwrap()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// Waits (bounded) for the child to exit; its exit code.
    fn wait(&mut self, within: Duration) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                panic!("serve did not exit within {within:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> (i32, String, String) {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null()))
}

const KEY: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/// The size of `ns/KEY` in the disk cache in `dir`, read directly (no
/// server), or `None` when it is absent.
fn stored_size(dir: &Path, ns: &str) -> Option<u64> {
    let out = dir.with_extension("out");
    let (code, _, _) = run(cachew(dir.to_str().unwrap())
        .args(["get", ns, KEY, "-o"])
        .arg(&out));
    (code == 0).then(|| std::fs::metadata(&out).unwrap().len())
}

#[test]
fn an_open_server_off_loopback_is_refused_as_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let (usage_code, _, _) = run(cachew("x").args(["serve", "--no-such-flag"]));
    let (code, _, err) = run(cachew("x")
        .args(["serve", "--bind", "0.0.0.0:0", "--dir"])
        .arg(&dir));
    assert_eq!(code, usage_code, "exits like any usage error: {err}");
    assert!(code != 0 && code != 2, "{code}");
    assert!(err.contains("without access control"), "{err}");
    assert!(
        err.contains("--token-file") && err.contains("--allow-anonymous"),
        "{err}"
    );
    assert!(!dir.exists(), "refused before anything was created");
}

#[test]
fn tokens_access_log_and_sigterm_exit_0() {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens");
    std::fs::write(
        &tokens,
        "# CI\ns3cr3t-writer write\nr3ader-t0ken read ci-*\n",
    )
    .unwrap();
    let file = tmp.path().join("blob");
    std::fs::write(&file, b"cached bytes").unwrap();
    let mut serve = Serve::start(
        &tmp.path().join("cache"),
        &["--token-file", tokens.to_str().unwrap()],
        None,
    );
    let object = format!("{}/api/v1/object/ci-a/{KEY}", serve.url);

    // The cachew client with a token writes; curl without one is told how
    // to authenticate; the read token reads but cannot write.
    let (code, _, err) = run(cachew(&serve.url)
        .env("CACHEW_AUTHORIZATION", "Bearer s3cr3t-writer")
        .args(["put", "ci-a", KEY])
        .arg(&file));
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = curl(&["-D", "-", "-o", "/dev/null", &object]);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{out}"
    );
    let reader = ["-H", "Authorization: Bearer r3ader-t0ken"];
    let (_, out, _) = curl(&[&reader[..], &[&object]].concat());
    assert_eq!(out, "cached bytes");
    let (_, code, _) = curl(
        &[
            &reader[..],
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--data-binary",
                "x",
                &object,
            ],
        ]
        .concat(),
    );
    assert_eq!(code, "403");
    let (_, out, _) = curl(&[&format!("{}/_liveness", serve.url)]);
    assert_eq!(out, "OK\n");

    serve.signal(libc::SIGTERM);
    assert_eq!(serve.wait(PATIENCE), 0, "{}", serve.log());
    let log = serve.log();
    assert!(log.contains("SIGTERM"), "{log}");
    let put = log
        .lines()
        .find(|l| l.contains("method=POST") && l.contains("status=200"))
        .unwrap_or_else(|| panic!("no access log line for the upload: {log}"));
    assert!(
        put.contains("token=tokens:2") && put.contains("received=12"),
        "{put}"
    );
    assert!(
        put.contains("client=127.0.0.1:") && put.contains(" ms="),
        "{put}"
    );
    assert!(
        log.contains("status=401") && log.contains("status=403"),
        "{log}"
    );
    assert!(log.contains("token=tokens:3"), "{log}");
    assert!(
        !log.contains("s3cr3t") && !log.contains("r3ader"),
        "no token in the log: {log}"
    );
}

/// A self-signed certificate for 127.0.0.1 and localhost, made by openssl.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[test]
fn tls_with_an_openssl_certificate_over_http1_and_http2() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(tmp.path());
    let serve = Serve::start(
        &tmp.path().join("cache"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        None,
    );
    assert!(serve.url.starts_with("https://127.0.0.1:"), "{}", serve.url);
    let ca = ["--cacert", cert.to_str().unwrap()];
    let object = format!("{}/api/v1/object/default/{KEY}", serve.url);
    let (code, out, err) = curl(
        &[
            &ca[..],
            &[
                "--http1.1",
                "-w",
                "%{http_code}",
                "--data-binary",
                "over tls",
                &object,
            ],
        ]
        .concat(),
    );
    assert_eq!((code, out.as_str()), (0, "200"), "{err}");
    let (code, out, err) =
        curl(&[&ca[..], &["--http2", "-w", " %{http_version}", &object]].concat());
    assert_eq!((code, out.as_str()), (0, "over tls 2"), "{err}");
    // Without the CA, curl refuses the certificate; plain HTTP gets nothing.
    let (code, _, _) = curl(&[&format!("{}/_liveness", serve.url)]);
    assert_ne!(code, 0);
    let plain = format!("http://{}/_liveness", serve.addr());
    let (code, out, _) = curl(&["-w", "%{http_code}", &plain]);
    assert!(code != 0 || out != "200", "plain HTTP is not served: {out}");
}

/// Raises this process's open-file limit to `want` if the hard limit allows.
fn raise_nofile(want: u64) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return false;
        }
        if lim.rlim_cur >= want {
            return true;
        }
        if lim.rlim_max < want {
            return false;
        }
        lim.rlim_cur = want;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
    }
}

/// Opens `n` connections to `addr` from `from` that never send a byte.
fn silent_sockets(addr: SocketAddr, from: &str, n: usize) -> Vec<std::net::TcpStream> {
    let from: std::net::IpAddr = from.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut out = Vec::new();
        for _ in 0..n {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(from, 0)).unwrap();
            let connect = tokio::time::timeout(Duration::from_secs(2), socket.connect(addr));
            match connect.await {
                Ok(Ok(stream)) => out.push(stream.into_std().unwrap()),
                _ => break,
            }
        }
        out
    })
}

/// Runs 10 concurrent uploads with the cachew client; all must succeed.
fn ten_uploads(url: &str, tmp: &Path) {
    let file = tmp.join("upload");
    std::fs::write(&file, vec![7u8; 256 << 10]).unwrap();
    let children: Vec<Child> = (0..10)
        .map(|i| {
            cachew(url)
                .args(["put", "default", &format!("key-{i}")])
                .arg(&file)
                .env("CACHEW_LOG_LEVEL", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "upload {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn slowloris_from_one_address_does_not_stop_uploads_from_another() {
    if !raise_nofile(4096) {
        eprintln!("skipped: cannot raise this process's open-file limit to 4096");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // The default caps (64 per client) and the default 10 s header
    // timeout, so the silent sockets are still open during the uploads.
    let serve = Serve::start(&tmp.path().join("cache"), &[], Some(1024));
    let silent = silent_sockets(serve.addr(), "127.0.0.2", 1100);
    assert!(silent.len() >= 1000, "opened only {}", silent.len());
    ten_uploads(&serve.url, tmp.path());
    let (code, out, _) = curl(&[
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &format!("{}/_liveness", serve.url),
    ]);
    assert_eq!((code, out.as_str()), (0, "200"));
    drop(silent);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_accept_loop_survives_running_out_of_file_descriptors() {
    let tmp = tempfile::tempdir().unwrap();
    // No per-client cap to speak of and a small descriptor limit: the
    // server runs out of descriptors, and must keep serving once the
    // silent sockets hit the header timeout.
    let serve = Serve::start(
        &tmp.path().join("cache"),
        &[
            "--max-connections-per-client",
            "5000",
            "--max-connections",
            "5000",
            "--header-timeout",
            "2s",
        ],
        Some(128),
    );
    let silent = silent_sockets(serve.addr(), "127.0.0.2", 200);
    assert!(silent.len() >= 150, "opened only {}", silent.len());
    let started = Instant::now();
    while !serve.log().contains("accept failed") {
        assert!(
            started.elapsed() < PATIENCE,
            "EMFILE was never reached: {}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server serves again on its own, the silent sockets still open:
    // the header timeout frees their descriptors.
    let liveness = format!("{}/_liveness", serve.url);
    loop {
        let (code, out, _) = curl(&[
            "-m",
            "5",
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &liveness,
        ]);
        if (code, out.as_str()) == (0, "200") {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the server never served again: {}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Uploads need a descriptor for their temporary file too: with the
    // silent sockets gone, none may fail. (While the backlog of silent
    // sockets still cycled through the header timeout, an upload could
    // meet EMFILE creating its file, a 500, which is not what this tests.)
    drop(silent);
    ten_uploads(&serve.url, tmp.path());
}

/// Starts a raw upload of `total` bytes, sending `first` of them.
fn start_upload(addr: SocketAddr, total: usize, first: usize) -> TcpStream {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        sock,
        "POST /api/v1/object/default/{KEY} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n"
    )
    .unwrap();
    sock.write_all(&vec![b'a'; first]).unwrap();
    sock.flush().unwrap();
    sock
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let mut serve = Serve::start(&dir, &["--shutdown-timeout", "10s"], None);
    let mut sock = start_upload(serve.addr(), 200_000, 100_000);
    std::thread::sleep(Duration::from_millis(200));
    serve.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused while the upload finishes.
    assert!(
        TcpStream::connect(serve.addr()).is_err(),
        "the listener is closed"
    );
    sock.write_all(&vec![b'a'; 100_000]).unwrap();
    let mut answer = String::new();
    let _ = sock.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(serve.wait(PATIENCE), 0, "{}", serve.log());
    assert_eq!(stored_size(&dir, "default"), Some(200_000));
}

#[test]
fn sigterm_cuts_a_stalled_upload_at_the_deadline_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let mut serve = Serve::start(&dir, &["--shutdown-timeout", "500ms"], None);
    let _sock = start_upload(serve.addr(), 200_000, 100_000);
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    serve.signal(libc::SIGTERM);
    assert_eq!(serve.wait(PATIENCE), 0, "{}", serve.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    assert!(
        serve.log().contains("shutdown timeout reached"),
        "{}",
        serve.log()
    );
    assert_eq!(stored_size(&dir, "default"), None, "never half-visible");
}

/// The 64-hex key `n`, so object files have a known name.
fn hex_key(n: u8) -> String {
    format!("{n:064x}")
}

fn object_path(dir: &Path, ns: &str, key: &str) -> PathBuf {
    dir.join("objects").join(ns).join(&key[..2]).join(key)
}

/// `curl` with `args` and then `url`, answering the HTTP status and body.
fn curl_status(url: &str, args: &[&str]) -> (String, String) {
    let out = curl(&[args, &["-w", "\n%{http_code}", url]].concat()).1;
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.to_owned(), body.to_owned())
}

fn upload(url: &str, file: &Path, headers: &[&str]) {
    let data = format!("@{}", file.display());
    let mut args = vec!["--data-binary", &data];
    for h in headers {
        args.extend(["-H", h]);
    }
    let (code, body) = curl_status(url, &args);
    assert_eq!(code, "200", "{body}");
}

/// The value of the unlabelled metric `name` in a `/metrics` answer.
fn metric(base: &str, name: &str) -> u64 {
    let (code, text) = curl_status(&format!("{base}/metrics"), &[]);
    assert_eq!(code, "200", "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn max_size_evicts_the_least_recently_read_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let blob = tmp.path().join("blob");
    std::fs::write(&blob, vec![7u8; 40 * 1024]).unwrap();
    let (a, b, c) = (hex_key(1), hex_key(2), hex_key(3));
    // 40 KiB bodies plus trailers: two fit in 100 KiB, three do not.
    let args = ["--max-size", "100KiB"];
    let mut serve = Serve::start(&dir, &args, None);
    let url = |base: &str, key: &str| format!("{base}/api/v1/object/ci/{key}");
    upload(&url(&serve.url, &a), &blob, &[]);
    std::thread::sleep(Duration::from_millis(20));
    upload(&url(&serve.url, &b), &blob, &[]);
    std::thread::sleep(Duration::from_millis(20));
    // Reading `a` makes `b` the oldest-accessed, and that must survive
    // the restart.
    assert_eq!(
        curl_status(&url(&serve.url, &a), &["-o", "/dev/null"]).0,
        "200"
    );
    let (code, stats) = curl_status(&format!("{}/api/v1/stats", serve.url), &[]);
    assert_eq!(code, "200");
    assert!(stats.contains("\"capacity\":102400"), "{stats}");
    assert!(stats.contains("\"objects\":2"), "{stats}");
    serve.signal(libc::SIGTERM);
    assert_eq!(serve.wait(PATIENCE), 0, "{}", serve.log());

    let serve = Serve::start(&dir, &args, None);
    upload(&url(&serve.url, &c), &blob, &[]);
    let status = |key: &str| curl_status(&url(&serve.url, key), &["-o", "/dev/null"]).0;
    assert_eq!(status(&b), "404", "b was the least recently read");
    assert!(!object_path(&dir, "ci", &b).exists(), "b's file is removed");
    assert_eq!((status(&a), status(&c)), ("200".into(), "200".into()));
    assert_eq!(metric(&serve.url, "cachew_evictions_total"), 1);
    assert!(metric(&serve.url, "cachew_stored_bytes") <= 100 * 1024);
    assert_eq!(metric(&serve.url, "cachew_capacity_bytes"), 100 * 1024);
}

#[test]
fn the_start_up_sweep_removes_expired_objects_nobody_touches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let blob = tmp.path().join("blob");
    std::fs::write(&blob, b"short-lived").unwrap();
    let (short, long) = (hex_key(4), hex_key(5));
    {
        let serve = Serve::start(&dir, &[], None);
        let url = |key: &str| format!("{}/api/v1/object/ci/{key}", serve.url);
        upload(&url(&short), &blob, &["Time-To-Live: 1s"]);
        upload(&url(&long), &blob, &[]);
    }
    std::thread::sleep(Duration::from_millis(1200));
    assert!(object_path(&dir, "ci", &short).exists());
    // A sweep interval far longer than the test: only the start-up sweep
    // can remove it.
    let serve = Serve::start(&dir, &["--sweep-interval", "1h"], None);
    let started = Instant::now();
    while object_path(&dir, "ci", &short).exists() {
        assert!(started.elapsed() < PATIENCE, "not swept: {}", serve.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(object_path(&dir, "ci", &long).exists());
    assert_eq!(metric(&serve.url, "cachew_expired_total"), 1);
    assert_eq!(metric(&serve.url, "cachew_objects"), 1);
}

#[test]
fn max_ttl_caps_a_requested_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let blob = tmp.path().join("blob");
    std::fs::write(&blob, b"wants an hour").unwrap();
    let serve = Serve::start(&tmp.path().join("cache"), &["--max-ttl", "1s"], None);
    let url = format!("{}/api/v1/object/ci/{}", serve.url, hex_key(6));
    upload(&url, &blob, &["Time-To-Live: 1h"]);
    assert_eq!(
        curl_status(&url, &[]),
        ("200".into(), "wants an hour".into())
    );
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        curl_status(&url, &["-o", "/dev/null"]).0,
        "404",
        "expired at the cap"
    );
    assert_eq!(metric(&serve.url, "cachew_misses_total"), 1);
    assert_eq!(metric(&serve.url, "cachew_hits_total"), 1);
}

#[test]
fn the_periodic_sweep_removes_objects_that_expire_while_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let blob = tmp.path().join("blob");
    std::fs::write(&blob, b"short-lived").unwrap();
    let key = hex_key(7);
    let serve = Serve::start(&dir, &["--sweep-interval", "200ms"], None);
    upload(
        &format!("{}/api/v1/object/ci/{key}", serve.url),
        &blob,
        &["Time-To-Live: 1s"],
    );
    let started = Instant::now();
    while object_path(&dir, "ci", &key).exists() {
        assert!(started.elapsed() < PATIENCE, "not swept: {}", serve.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "swept before it expired"
    );
    assert_eq!(metric(&serve.url, "cachew_expired_total"), 1);
}

//! The network flags at work in the binary: `--ca-cert` and `--timeout`
//! (`CACHEW_CA_CERT`, `CACHEW_TIMEOUT`) reach the remote cache, a stalled
//! transfer fails after `--timeout`, and URL credentials reach no output.

mod support;

use support::{cachew, run, TestServer};

#[test]
fn ca_cert_and_timeout_flags_reach_the_remote_cache() {
    let server = TestServer::start();
    // A working timeout in Go syntax changes nothing for a healthy server.
    let (code, _, err) = run(cachew(&server.url()).args(["--timeout", "1m30s", "stat", "ns", "k"]));
    // The request reached the server (which has no such object).
    assert!(err.contains("not found"), "{code}: {err}");
    // A CA file that does not exist fails, naming it.
    let (code, _, err) =
        run(cachew(&server.url()).args(["--ca-cert", "/nonexistent/ca.pem", "stat", "ns", "k"]));
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    let (code, _, err) = run(cachew(&server.url())
        .env("CACHEW_CA_CERT", "/nonexistent/env-ca.pem")
        .args(["stat", "ns", "k"]));
    assert_eq!(code, 1);
    assert!(err.contains("env-ca.pem"), "{err}");
    // A malformed duration is a usage error (exit 80, never 2).
    let (code, _, err) = run(cachew(&server.url()).args(["--timeout", "soon", "stat", "ns", "k"]));
    assert_eq!(code, 80, "{err}");
    assert!(err.contains("--timeout"), "{err}");
}

/// Item 5 of the network issue: a password in `CACHEW_URL` (and the
/// `CACHEW_AUTHORIZATION` value) appears in no output of the binary — logs
/// at trace level, text and JSON, errors, `--help`.
#[test]
fn url_credentials_never_reach_any_output() {
    const PASSWORD: &str = "hunter2-cli-pw";
    let server = TestServer::start();
    let with_password = |url: &str| url.replacen("://", &format!("://ci:{PASSWORD}@"), 1);
    let live = with_password(&server.url());
    let dead = with_password(&support::dead_url());
    let mut outputs = Vec::new();
    for (url, args) in [
        (&live, &["--log-level", "trace", "stat", "ns", "k"][..]),
        (
            &live,
            &["--log-level", "trace", "--log-json", "stat", "ns", "k"],
        ),
        (&dead, &["--log-level", "trace", "stat", "ns", "k"]),
        (
            &dead,
            &["--log-level", "trace", "--log-json", "get", "ns", "k"],
        ),
        (&live, &["--help"]),
        (&live, &["stat", "--help"]),
    ] {
        let (code, out, err) = run(cachew(url)
            .env("CACHEW_AUTHORIZATION", "Bearer t0ken-value")
            .args(args));
        outputs.push((args.join(" "), code, out, err));
    }
    // The runs did what they should: trace logs, a not-found, a refusal.
    assert!(outputs[0].3.contains("TRACE"), "{}", outputs[0].3);
    assert!(outputs[0].3.contains("not found"), "{}", outputs[0].3);
    assert!(outputs[2].3.contains("127.0.0.1"), "{}", outputs[2].3);
    assert!(outputs[4].2.contains("CACHEW_URL"), "{}", outputs[4].2);
    for (args, code, out, err) in &outputs {
        for text in [out, err] {
            assert!(
                !text.contains(PASSWORD) && !text.contains("t0ken-value"),
                "secret in the output of `{args}` (exit {code}):\n{text}"
            );
        }
    }
}

/// A server that answers every request with headers for 1 MiB and 10
/// bytes of it, then stalls (keeping the connection open).
fn stalling_server() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nETag: \"e\"\r\n\r\n0123456789",
            );
            held.push(stream);
        }
    });
    format!("http://{addr}")
}

/// `--timeout` bounds each gap between body bytes; the error names the
/// URL (without credentials) and the wait.
#[test]
fn a_stalled_transfer_fails_after_the_timeout() {
    let url = stalling_server();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.bin");
    let started = std::time::Instant::now();
    let (code, _, err) = run(cachew(&url.replacen("://", "://ci:st4ll-pw@", 1))
        .args(["--timeout", "700ms", "get", "ns", "k", "-o"])
        .arg(&out));
    let took = started.elapsed();
    // Neither the partial body nor its temporary file is left.
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("700ms"), "the wait is named: {err}");
    assert!(err.contains(&url), "the URL is named: {err}");
    assert!(!err.contains("st4ll-pw"), "{err}");
    // Retries included, far from the default 60 s.
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");
}

//! The Go CLI's logging flags at work: `--log-json` lines with Go's keys,
//! renamed by `--log-remap`, and `cachew serve --log-headers` putting
//! request headers (sent by curl) on the access log as attributes, with
//! credentials redacted, in JSON and in text.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{cachew, run, TestServer};

fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn log_remap_renames_go_keys_in_json_lines() {
    let server = TestServer::start();
    let (_, _, err) =
        run(cachew(&server.url()).args(["--log-json", "--log-level", "debug", "stat", "ns", "k"]));
    let lines = json_lines(&err);
    assert!(!lines.is_empty(), "no JSON lines:\n{err}");
    for v in &lines {
        for key in ["time", "level", "msg"] {
            assert!(v.get(key).is_some(), "no {key}: {v}");
        }
    }
    assert!(
        lines.iter().any(|v| v["level"] == "DEBUG"),
        "no debug line:\n{err}"
    );

    let (_, _, err) = run(cachew(&server.url())
        .env("CACHEW_LOG_REMAP", "level=severity")
        .args([
            "--log-json",
            "--log-level",
            "debug",
            "--log-remap",
            "msg=message;time=timestamp",
            "stat",
            "ns",
            "k",
        ]));
    let lines = json_lines(&err);
    assert!(!lines.is_empty(), "no JSON lines:\n{err}");
    for v in &lines {
        // The command line replaces the variable, as in kong.
        for key in ["message", "timestamp", "level"] {
            assert!(v.get(key).is_some(), "no {key}: {v}");
        }
        for key in ["msg", "time", "severity"] {
            assert!(v.get(key).is_none(), "{key} left: {v}");
        }
    }

    // Without --log-json the flag changes nothing (Go: JSON only).
    let (_, _, err) = run(cachew(&server.url()).args([
        "--log-level",
        "debug",
        "--log-remap",
        "msg=message",
        "stat",
        "ns",
        "k",
    ]));
    assert!(json_lines(&err).is_empty(), "{err}");
    assert!(err.contains("DEBUG"), "{err}");
}

/// `cachew serve` on a free loopback port with global flags `args` and
/// variables `env`; its stderr is collected after it exits.
fn serve(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = cachew("http://127.0.0.1:1")
        .envs(env.iter().copied())
        .args(args)
        .args(["serve", "--dir"])
        .arg(dir)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("serve did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

/// SIGTERM, then everything it wrote on stderr.
fn stop(mut child: Child) -> String {
    // SAFETY: kill(2) on the pid of our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let _ = child.wait();
    err
}

fn curl(port: u16, headers: &[&str]) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-o", "/dev/null"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/object/ns/{}",
        "a".repeat(64)
    );
    let (code, _, err) = run(cmd.arg(url).stdin(Stdio::null()));
    assert_eq!(code, 0, "curl: {err}");
}

#[test]
fn serve_log_headers_become_access_log_attributes() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED: curl not found");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let headers = "X-Request-Id=request_id;Authorization=auth;X-Absent=absent";

    let (child, port) = serve(
        &tmp.path().join("json"),
        &["--log-json", "--log-headers", headers],
        &[],
    );
    curl(
        port,
        &[
            "X-Request-Id: req-4711",
            "Authorization: Bearer sup3r-s3cret",
        ],
    );
    curl(port, &[]);
    let err = stop(child);
    assert!(
        !err.contains("sup3r-s3cret"),
        "a credential was logged:\n{err}"
    );
    let access: Vec<Value> = json_lines(&err)
        .into_iter()
        .filter(|v| v["msg"].as_str().is_some_and(|m| m.starts_with("request")))
        .filter(|v| v["method"] == "GET")
        .collect();
    assert_eq!(access.len(), 2, "{err}");
    let with = &access[0];
    assert_eq!(with["request_id"], "req-4711", "{with}");
    assert_eq!(with["auth"], cachew_server::REDACTED, "{with}");
    assert_eq!(with["status"], "404", "{with}");
    assert!(with.get("absent").is_none(), "{with}");
    // A request without the headers has no such attributes.
    let without = &access[1];
    assert!(without.get("request_id").is_none(), "{without}");

    // The same in text, through the environment variable, and at a level
    // that keeps only the access log.
    let (child, port) = serve(
        &tmp.path().join("text"),
        &["--log-level", "error"],
        &[("CACHEW_LOG_HEADERS", headers)],
    );
    curl(
        port,
        &[
            "X-Request-Id: req-0815",
            "Authorization: Bearer sup3r-s3cret",
        ],
    );
    let err = stop(child);
    assert!(
        !err.contains("sup3r-s3cret"),
        "a credential was logged:\n{err}"
    );
    let line = err
        .lines()
        .find(|l| l.contains("method=GET"))
        .unwrap_or_else(|| panic!("no access log line:\n{err}"));
    assert!(
        line.contains("request_id=\"req-0815\"") || line.contains("request_id=req-0815"),
        "{line}"
    );
    assert!(
        line.contains("auth=\"<redacted>\"") || line.contains("auth=<redacted>"),
        "{line}"
    );

    // A malformed entry is a usage error naming the flag.
    let (code, _, err) = run(cachew("http://127.0.0.1:1")
        .args(["--log-headers", "Bad Header=x", "serve", "--dir"])
        .arg(tmp.path().join("never")));
    assert_eq!(code, 80, "{err}");
    assert!(err.contains("--log-headers"), "{err}");
}

//! `--ca-cert` and `--timeout` (`CACHEW_CA_CERT`, `CACHEW_TIMEOUT`) reach
//! the remote cache.

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

#[test]
fn log_json_writes_json_lines_on_stderr() {
    let server = TestServer::start();
    let (_, _, err) =
        run(cachew(&server.url()).args(["--log-json", "--log-level", "debug", "stat", "ns", "k"]));
    let json: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!json.is_empty(), "no JSON lines:\n{err}");
    assert!(json
        .iter()
        .all(|v| v.get("level").is_some() && v.get("fields").is_some()));
}

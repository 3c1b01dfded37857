//! The kong oracle: our parser against kong v1.15.0 itself, case by case.
//!
//! `tests/oracle/kong/` is a small Go program declaring a CLI shaped like
//! the Go cachew CLI (same flags, types, tags, `DefaultEnvars("CACHEW")`)
//! that prints what kong parses for an argv and environment, or kong's
//! error. This test builds it, runs it over a table of command lines and
//! environments, and compares: usage error or not, which flag won, and the
//! values after splitting. Where `go` is absent it says
//! `SKIPPED: go not found` on stderr; it never passes silently otherwise.
//!
//! A few cases differ on purpose (we are stricter); each names why.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use serde_json::Value;

use crate::cli::{self, expand_dir, Cli, Command};
use crate::git_restore::GitCommand;

/// What we expect of a case.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The same outcome and values as kong.
    Same,
    /// kong accepts it; we refuse it as a usage error, for this reason.
    Stricter(&'static str),
}

use Expect::{Same, Stricter};

/// (argv after `cachew`, environment, expectation)
type Case = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    Expect,
);

const CASES: &[Case] = &[
    // Flag names and shorts.
    (&["save", "ns", "d", "--key", "k"], &[], Same),
    (
        &["save", "ns", "d", "-H", "a", "--hash-files", "b"],
        &[],
        Same,
    ),
    (
        &[
            "restore",
            "ns",
            "d",
            "--hash-files",
            "**/go.sum,**/yarn.lock",
        ],
        &[],
        Same,
    ),
    (&["put", "ns", "k", "-H", "a=1;b=2", "-H", "c=3"], &[], Same),
    (
        &[
            "put",
            "ns",
            "k",
            "f.txt",
            "--headers",
            "d=x\\;y",
            "--ttl",
            "1h30m",
        ],
        &[],
        Same,
    ),
    (&["get", "ns", "k", "-o", "out.bin"], &[], Same),
    (&["stat", "ns", "k"], &[], Same),
    (&["delete", "ns", "k"], &[], Same),
    (&["namespaces"], &[], Same),
    (
        &["--log-level", "debug", "--log-json", "namespaces"],
        &[],
        Same,
    ),
    // Go's slog level syntax, offsets included.
    (&["--log-level", "INFO+4", "namespaces"], &[], Same),
    (&["--log-level", "warn-1", "namespaces"], &[], Same),
    (&["--log-level", "Debug-4", "namespaces"], &[], Same),
    (&["namespaces"], &[("CACHEW_LOG_LEVEL", "error+2")], Same),
    (&["--log-level", "info+x", "namespaces"], &[], Same),
    (&["--log-level", "verbose", "namespaces"], &[], Same),
    // The logging maps: --log-remap, --log-headers and their variables.
    (
        &[
            "--log-remap",
            "msg=message;time=timestamp",
            "--log-remap",
            "level=severity",
            "--log-headers",
            "X-Request-Id=request_id",
            "namespaces",
        ],
        &[],
        Same,
    ),
    (
        &["namespaces"],
        &[
            ("CACHEW_LOG_REMAP", "msg=message"),
            ("CACHEW_LOG_HEADERS", "X-Request-Id=rid;Authorization=auth"),
        ],
        Same,
    ),
    (
        &["--log-headers", "X-A=a", "namespaces"],
        &[("CACHEW_LOG_HEADERS", "X-B=b")],
        Same,
    ),
    (&["--log-remap", "novalue", "namespaces"], &[], Same),
    (&["namespaces"], &[("CACHEW_LOG_HEADERS", "novalue")], Same),
    // List splitting and escapes.
    (
        &["save", "ns", "d", "--key", "k", "--exclude", "*.o,*.rs"],
        &[],
        Same,
    ),
    (
        &[
            "save",
            "ns",
            "d",
            "--key",
            "k",
            "--exclude",
            "a\\,b",
            "--exclude",
            "x\\y",
        ],
        &[],
        Same,
    ),
    (
        &["save", "ns", "d", "--key", "k", "--exclude", "a,,b,"],
        &[],
        Same,
    ),
    (
        &["save", "ns", "d", "--key", "k", "--exclude", ""],
        &[],
        Same,
    ),
    (
        &[
            "save",
            "ns",
            "d",
            "p1",
            "p2",
            "--key",
            "k",
            "--zstd-threads",
            "3",
        ],
        &[],
        Same,
    ),
    (
        &[
            "git",
            "restore",
            "https://h/o/r",
            "dir",
            "--commit",
            "a,b",
            "--ref",
            "main=;dev=c",
            "--no-bundle",
        ],
        &[],
        Same,
    ),
    // Environment: every flag, command line wins.
    (&["save", "ns", "d"], &[("CACHEW_KEY", "from-env")], Same),
    (
        &["save", "ns", "d", "--key", "k"],
        &[("CACHEW_EXCLUDE", "a,b"), ("CACHEW_TTL", "72h")],
        Same,
    ),
    (
        &["save", "ns", "d", "--key", "k", "--exclude", "c"],
        &[("CACHEW_EXCLUDE", "a,b")],
        Same,
    ),
    (
        &["restore", "ns", "d"],
        &[("CACHEW_HASH_FILES", "a,b"), ("CACHEW_ZSTD_THREADS", "2")],
        Same,
    ),
    (&["put", "ns", "k"], &[("CACHEW_HEADERS", "a=1;b=2")], Same),
    (
        &["git", "restore", "https://h/o/r", "dir"],
        &[
            ("CACHEW_COMMIT", "a,b"),
            ("CACHEW_REF", "x=1"),
            ("CACHEW_NO_BUNDLE", "true"),
            ("CACHEW_DOWNLOAD_CONCURRENCY", "3"),
        ],
        Same,
    ),
    (
        &["namespaces"],
        &[
            ("CACHEW_URL", "http://cache:8080"),
            ("CACHEW_AUTHORIZATION", "Bearer x"),
        ],
        Same,
    ),
    (
        &["--url", "http://cli:1", "namespaces"],
        &[("CACHEW_URL", "http://env:2")],
        Same,
    ),
    // Booleans: kong's words, any case; not strconv's t/F.
    (&["namespaces"], &[("CACHEW_PLATFORM", "YES")], Same),
    (&["namespaces"], &[("CACHEW_PLATFORM", "0")], Same),
    (&["namespaces"], &[("CACHEW_PLATFORM", "T")], Same),
    (&["namespaces"], &[("CACHEW_PLATFORM", "")], Same),
    (&["--platform=false", "namespaces"], &[], Same),
    (&["--platform=maybe", "namespaces"], &[], Same),
    (
        &["namespaces", "--platform=no"],
        &[("CACHEW_PLATFORM", "1")],
        Same,
    ),
    // xor groups: set means given, whatever the value, or a variable.
    (&["--daily", "--hourly", "namespaces"], &[], Same),
    (&["--daily=false", "--hourly", "namespaces"], &[], Same),
    (
        &["namespaces"],
        &[("CACHEW_DAILY", "false"), ("CACHEW_HOURLY", "true")],
        Same,
    ),
    (
        &["save", "ns", "d", "-H", "x"],
        &[("CACHEW_KEY", "k")],
        Same,
    ),
    (
        &["save", "ns", "d", "--key", "k"],
        &[("CACHEW_HASH_FILES", "")],
        Same,
    ),
    (&["save", "ns", "d", "--key", "k", "-H", "x"], &[], Same),
    (&["save", "ns", "d"], &[], Same),
    // Every command's variables are checked, whatever runs.
    (&["namespaces"], &[("CACHEW_TTL", "1x")], Same),
    (&["namespaces"], &[("CACHEW_NO_BUNDLE", "maybe")], Same),
    (&["namespaces"], &[("CACHEW_HEADERS", "novalue")], Same),
    (&["namespaces"], &[("CACHEW_ZSTD_THREADS", "many")], Same),
    // Usage errors.
    (&["namespaces", "--bogus"], &[], Same),
    (&[], &[], Same),
    (&["save", "bad/ns", "d", "--key", "k"], &[], Same),
    (&["save", "ns", "d", "--key", "k", "--ttl", "1x"], &[], Same),
    (&["put", "ns", "k", "-H", "a"], &[], Same),
    (
        &["save", "ns", "d", "--key", ""],
        &[],
        Stricter("an empty key is a mistake, not sha256(\"\")"),
    ),
    (
        &["restore", "ns", "d"],
        &[("CACHEW_HASH_FILES", "")],
        Stricter("no patterns: Go would silently use the empty key"),
    ),
];

fn find_go() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("go"))
        .find(|p| p.is_file())
}

fn build_oracle(go: &Path, out: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oracle/kong");
    let bin = out.join("kong-oracle");
    let status = Process::new(go)
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        .status()
        .expect("run go build");
    assert!(status.success(), "go build of {} failed", src.display());
    bin
}

fn run_oracle(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut cmd = Process::new(bin);
    cmd.args(args).env_clear();
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the oracle");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "oracle output for {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn ours(args: &[&str], env: &[(&str, &str)]) -> Result<Cli, String> {
    let env: Vec<(String, OsString)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
        .collect();
    let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    cli::parse(
        std::iter::once("cachew").chain(args.iter().copied()),
        &lookup,
    )
    .map_err(|e| match e {
        cli::ParseFailure::Clap(e) => e.to_string(),
        cli::ParseFailure::Usage(m) => m,
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn map_of(occurrences: &[String]) -> BTreeMap<String, String> {
    crate::kong::map(occurrences).unwrap().into_iter().collect()
}

fn nanos(d: Option<std::time::Duration>) -> u64 {
    d.map_or(0, |d| d.as_nanos() as u64)
}

fn dir(p: &Path) -> String {
    expand_dir(p).to_string_lossy().into_owned()
}

/// Compares the values kong parsed with ours, for the command that runs.
fn compare(case: &[&str], kong: &Value, cli: &Cli) {
    let k = &kong["cli"];
    let g = &cli.global;
    let ctx = format!("{case:?}");
    assert_eq!(k["url"].as_str(), Some(g.url.as_str()), "{ctx}: url");
    assert_eq!(
        k["authorization"].as_str().filter(|s| !s.is_empty()),
        g.authorization.as_deref(),
        "{ctx}: authorization"
    );
    for (name, ours) in [
        ("platform", g.platform),
        ("daily", g.daily),
        ("hourly", g.hourly),
    ] {
        assert_eq!(k[name].as_bool(), Some(ours), "{ctx}: {name}");
    }
    assert_eq!(
        k["log"]["json"].as_bool(),
        Some(g.observe.log_json),
        "{ctx}: log-json"
    );
    assert_eq!(
        k["log"]["level"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some(g.log_level.as_str()),
        "{ctx}: log-level"
    );
    assert_eq!(
        string_map(&k["log"]["remap"]),
        map_of(&g.observe.log_remap),
        "{ctx}: log-remap"
    );
    assert_eq!(
        string_map(&k["log"]["headers"]),
        map_of(&g.observe.log_headers),
        "{ctx}: log-headers"
    );
    let command = kong["command"].as_str().unwrap_or_default();
    let name: String = command.split(" <").next().unwrap_or_default().to_owned();
    match &cli.command {
        Command::Save(s) => {
            assert_eq!(name, "save", "{ctx}");
            let k = &k["save"];
            assert_eq!(k["namespace"].as_str(), Some(s.namespace.as_str()), "{ctx}");
            assert_eq!(
                k["directory"].as_str(),
                Some(dir(&s.dir).as_str()),
                "{ctx}: DIR"
            );
            let paths: Vec<String> = s
                .paths
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            assert_eq!(strings(&k["paths"]), paths, "{ctx}: PATHS");
            assert_eq!(
                k["key"].as_str().filter(|s| !s.is_empty()),
                s.key.key.as_deref(),
                "{ctx}"
            );
            assert_eq!(
                strings(&k["hash_files"]),
                crate::kong::list(&s.key.hash_files),
                "{ctx}"
            );
            assert_eq!(
                strings(&k["exclude"]),
                crate::kong::list(&s.exclude),
                "{ctx}"
            );
            assert_eq!(k["ttl"].as_u64(), Some(nanos(s.ttl)), "{ctx}: ttl");
            assert_eq!(
                k["zstd_threads"].as_u64(),
                Some(s.zstd_threads as u64),
                "{ctx}"
            );
        }
        Command::Restore(r) => {
            assert_eq!(name, "restore", "{ctx}");
            let k = &k["restore"];
            assert_eq!(k["namespace"].as_str(), Some(r.namespace.as_str()), "{ctx}");
            assert_eq!(
                k["directory"].as_str(),
                Some(dir(&r.dir).as_str()),
                "{ctx}: DIR"
            );
            assert_eq!(
                k["key"].as_str().filter(|s| !s.is_empty()),
                r.key.key.as_deref(),
                "{ctx}"
            );
            assert_eq!(
                strings(&k["hash_files"]),
                crate::kong::list(&r.key.hash_files),
                "{ctx}"
            );
            assert_eq!(
                k["zstd_threads"].as_u64(),
                Some(r.zstd_threads as u64),
                "{ctx}"
            );
        }
        Command::Put {
            namespace,
            key,
            file,
            ttl,
            headers,
        } => {
            assert_eq!(name, "put", "{ctx}");
            let k = &k["put"];
            assert_eq!(k["namespace"].as_str(), Some(namespace.as_str()), "{ctx}");
            assert_eq!(k["key"].as_str(), Some(key.as_str()), "{ctx}");
            assert_eq!(
                k["input"].as_str(),
                Some(file.as_deref().unwrap_or("-")),
                "{ctx}"
            );
            assert_eq!(k["ttl"].as_u64(), Some(nanos(*ttl)), "{ctx}: ttl");
            assert_eq!(string_map(&k["headers"]), map_of(headers), "{ctx}: headers");
        }
        Command::Get {
            namespace,
            key,
            output,
        } => {
            assert_eq!(name, "get", "{ctx}");
            let k = &k["get"];
            assert_eq!(k["namespace"].as_str(), Some(namespace.as_str()), "{ctx}");
            assert_eq!(k["key"].as_str(), Some(key.as_str()), "{ctx}");
            assert_eq!(
                k["output"].as_str(),
                Some(output.as_deref().unwrap_or("-")),
                "{ctx}"
            );
        }
        Command::Stat { namespace, key, .. } | Command::Delete { namespace, key } => {
            assert!(name == "stat" || name == "delete", "{ctx}");
            assert_eq!(
                k[name.as_str()]["namespace"].as_str(),
                Some(namespace.as_str()),
                "{ctx}"
            );
            assert_eq!(
                k[name.as_str()]["key"].as_str(),
                Some(key.as_str()),
                "{ctx}"
            );
        }
        Command::Namespaces(_) => assert_eq!(name, "namespaces", "{ctx}"),
        Command::Git(GitCommand::Restore(a)) => {
            assert_eq!(name, "git restore", "{ctx}");
            let k = &k["git"]["restore"];
            assert_eq!(k["repo_url"].as_str(), Some(a.repo.as_str()), "{ctx}");
            assert_eq!(
                k["directory"].as_str(),
                Some(dir(&a.dir).as_str()),
                "{ctx}: DIR"
            );
            assert_eq!(string_map(&k["ref"]), map_of(&a.refs), "{ctx}: --ref");
            assert_eq!(
                strings(&k["commit"]),
                crate::kong::list(&a.commits),
                "{ctx}"
            );
            assert_eq!(k["no_bundle"].as_bool(), Some(a.no_bundle), "{ctx}");
            assert_eq!(
                k["zstd_threads"].as_u64(),
                Some(a.zstd_threads as u64),
                "{ctx}"
            );
            // Our download defaults differ from Go's (documented); compare
            // only a value that was given.
            if a.download_concurrency != cachew_client::parallel::DEFAULT_CONCURRENCY {
                assert_eq!(
                    k["download_concurrency"].as_u64(),
                    Some(a.download_concurrency as u64),
                    "{ctx}"
                );
            }
        }
        other => panic!("{ctx}: the oracle has no {other:?}"),
    }
}

#[test]
fn our_parser_agrees_with_kong() {
    let Some(go) = find_go() else {
        eprintln!("SKIPPED: go not found (the kong oracle needs Go to build)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let oracle = build_oracle(&go, tmp.path());
    let mut failures = Vec::new();
    for (args, env, expect) in CASES {
        let kong = run_oracle(&oracle, args, env);
        let kong_ok = kong["ok"].as_bool() == Some(true);
        let ours = ours(args, env);
        match (expect, kong_ok, &ours) {
            (Same, true, Ok(cli)) => compare(args, &kong, cli),
            (Same, false, Err(_)) => {}
            (Stricter(why), true, Err(ours)) => {
                eprintln!("stricter than kong on purpose ({why}): {args:?}: {ours}");
            }
            _ => failures.push(format!(
                "{args:?} env {env:?} (expect {expect:?}): kong {kong}, ours {:?}",
                ours.as_ref().map(|_| "ok")
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "disagreements:\n{}",
        failures.join("\n")
    );
}

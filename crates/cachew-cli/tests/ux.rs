//! What CI users expect of the command line: `--json`, GitHub Actions
//! outputs, `--read-only`, progress lines in CI logs, plain errors,
//! completions, `--version`, help layout — against the embedded `file://`
//! backend or the in-process reference server.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{cachew, run, sample_tree, TestServer};

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

fn json(out: &str) -> Value {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one line of JSON on stdout: {out}");
    serde_json::from_str(lines[0]).unwrap()
}

#[test]
fn json_results_and_github_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path());
    let url = file_url(&tmp.path().join("cache"));
    let gh_out = tmp.path().join("gh_output");
    let gh_sum = tmp.path().join("gh_summary");
    let c = |args: &[&str]| {
        run(cachew(&url)
            .current_dir(tmp.path())
            .env("GITHUB_OUTPUT", &gh_out)
            .env("GITHUB_STEP_SUMMARY", &gh_sum)
            .args(args))
    };

    let (code, out, err) = c(&["save", "ns", "tree", "--key", "v1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["command"], "save");
    assert_eq!(v["result"], "uploaded");
    assert_eq!(v["key"], "v1");
    assert_eq!(v["key_hex"], cachew_client::Key::new("v1").to_hex());
    assert!(v["bytes"].as_u64().unwrap() > 0 && v["entries"].as_u64().unwrap() > 5);
    assert!(v["seconds"].is_number());
    // The key text is printed beside its hash.
    assert!(
        err.contains(&format!("ns/v1 ({})", cachew_client::Key::new("v1"))),
        "{err}"
    );

    fs::write(&gh_out, "").unwrap();
    let (code, out, err) = c(&["restore", "ns", "exact", "--key", "v1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(
        (v["result"].as_str(), v["cache_hit"].as_bool()),
        (Some("exact"), Some(true))
    );
    assert_eq!(v["matched_key"], "v1");
    assert_eq!(
        fs::read_to_string(&gh_out).unwrap(),
        "cache-hit=true\ncache-primary-key=v1\ncache-matched-key=v1\n"
    );

    fs::write(&gh_out, "").unwrap();
    let (code, out, err) = c(&[
        "restore",
        "ns",
        "fb",
        "--key",
        "v2",
        "--fallback-key",
        "v0,v1",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["result"], "fallback");
    assert_eq!(v["cache_hit"], false);
    assert_eq!(v["matched_key"], "v1");
    assert_eq!(
        fs::read_to_string(&gh_out).unwrap(),
        "cache-hit=false\ncache-primary-key=v2\ncache-matched-key=v1\n"
    );

    fs::write(&gh_out, "").unwrap();
    let (code, out, err) = c(&["restore", "ns", "miss", "--key", "nope", "--json"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("ns/nope ({})", cachew_client::Key::new("nope"))),
        "{err}"
    );
    let v = json(&out);
    assert_eq!(v["result"], "miss");
    assert!(v["matched_key"].is_null());
    assert_eq!(
        fs::read_to_string(&gh_out).unwrap(),
        "cache-hit=false\ncache-primary-key=nope\ncache-matched-key=\n"
    );
    let summary = fs::read_to_string(&gh_sum).unwrap();
    assert_eq!(summary.lines().count(), 4, "{summary}");
    assert!(
        summary.lines().all(|l| l.starts_with("cachew: ")),
        "{summary}"
    );

    let (code, out, _) = c(&["stat", "ns", "v1", "--json"]);
    assert_eq!(code, 0);
    let v = json(&out);
    assert_eq!(v["key"], "v1");
    assert!(v["headers"]["etag"][0].is_string(), "{v}");
    assert!(v["bytes"].as_u64().unwrap() > 0);

    let (_, out, _) = c(&["namespaces", "--json"]);
    assert_eq!(json(&out)["namespaces"], serde_json::json!(["ns"]));
    let (_, out, _) = c(&["stats", "--json"]);
    assert_eq!(json(&out)["objects"], 1);
}

#[test]
fn read_only_restores_but_never_writes() {
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path());
    let url = file_url(&tmp.path().join("cache"));
    let (code, _, err) = run(cachew(&url)
        .current_dir(tmp.path())
        .args(["save", "ns", "tree", "--key", "k"]));
    assert_eq!(code, 0, "{err}");
    for args in [
        &["save", "ns", "tree", "--key", "k2"][..],
        &["put", "ns", "p", "tree/run.sh"],
        &["delete", "ns", "k"],
        &["invalidate", "ns", "k"],
    ] {
        let (code, _, err) = run(cachew(&url)
            .current_dir(tmp.path())
            .env("CACHEW_READ_ONLY", "true")
            .args(args));
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(err.matches("warning: --read-only").count(), 1, "{err}");
    }
    let (code, _, err) = run(cachew(&url).current_dir(tmp.path()).args([
        "--read-only",
        "restore",
        "ns",
        "out",
        "--key",
        "k",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(tmp.path().join("out/src/lib.rs").exists());
    // k is still there, nothing else is.
    let (_, out, _) = run(cachew(&url).args(["stats", "--json"]));
    assert_eq!(json(&out)["objects"], 1);
}

#[test]
fn progress_lines_in_ci_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    fs::create_dir_all(&big).unwrap();
    // Incompressible, so the transfer takes a few reads.
    let mut x = 1u64;
    let data: Vec<u8> = (0..8 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(big.join("blob"), data).unwrap();
    let server = TestServer::start();
    let c = |args: &[&str], extra: &[(&str, &str)]| {
        let mut cmd = cachew(&server.url());
        cmd.current_dir(tmp.path())
            .env("CACHEW_PROGRESS_INTERVAL_MS", "20");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        run(cmd.args(args))
    };
    let (code, _, err) = c(&["save", "ns", "big", "--key", "b"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("Sent ") && l.ends_with("/s")),
        "{err}"
    );
    let (code, _, err) = c(&["restore", "ns", "out", "--key", "b"], &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("Received ")).collect();
    assert!(!lines.is_empty(), "{err}");
    for l in &lines {
        assert!(
            l.contains(" of ") && l.contains("%), ") && l.ends_with("/s"),
            "{l}"
        );
    }
    assert!(lines.last().unwrap().contains("(100.0%)"), "{err}");
    let (code, _, err) = c(
        &["--no-progress", "restore", "ns", "out2", "--key", "b"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("Received "), "{err}");
    assert!(err.contains("Restored: b"), "{err}");
}

#[test]
fn errors_name_the_thing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let url = file_url(&cache);
    // Read-only commands do not create a missing local cache: lookups of
    // one object fail, restore is a miss, listings are empty.
    for (args, want) in [
        (&["stat", "ns", "k"][..], 1),
        (&["get", "ns", "k"], 1),
        (&["delete", "ns", "k"], 1),
        (&["namespaces"], 0),
        (&["stats"], 0),
        (&["restore", "ns", "d", "--key", "k"], 2),
    ] {
        let (code, _, err) = run(cachew(&url).current_dir(tmp.path()).args(args));
        assert_eq!(code, want, "{args:?}: {err}");
        if want == 1 {
            assert!(err.contains("no cache directory at"), "{err}");
        }
        assert!(!cache.exists(), "{args:?} created the cache");
    }
    fs::create_dir(tmp.path().join("adir")).unwrap();
    let (code, _, err) = run(cachew(&url)
        .current_dir(tmp.path())
        .args(["put", "ns", "k", "adir"]));
    assert_eq!(code, 1);
    assert!(err.contains("adir is a directory"), "{err}");
    for cmd in ["stat", "get", "delete"] {
        let (code, _, err) = run(cachew(&url).args([cmd, "ns", "missing-key"]));
        assert_eq!(code, 1, "{cmd}: {err}");
        assert!(err.contains("ns/missing-key"), "{cmd}: {err}");
        assert!(
            err.contains(&cachew_client::Key::new("missing-key").to_hex()),
            "{err}"
        );
    }
    // https:// spoken to a plain http port.
    let server = TestServer::start();
    let https = server.url().replacen("http://", "https://", 1);
    let (code, _, err) = run(cachew(&https).args(["stat", "ns", "k"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not speak TLS"), "{err}");
}

#[test]
fn completions_man_version_and_help() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let (code, out, err) = run(cachew("file:///nonexistent").args(["completions", shell]));
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("restore"), "{shell}");
    }
    let (code, out, _) = run(cachew("file:///x").arg("man"));
    assert_eq!(code, 0);
    assert!(out.starts_with(".ie") || out.contains(".TH"), "{out}");
    let (code, out, _) = run(cachew("file:///x").arg("--version"));
    assert_eq!(code, 0);
    assert!(out.contains("rev ") && out.contains("features: "), "{out}");

    let (_, out, _) = run(cachew("file:///x").args(["restore", "--help"]));
    assert!(out.contains("Global options:"), "{out}");
    assert!(
        out.contains("--read-only") && out.contains("--json"),
        "{out}"
    );
    let (_, out, _) = run(cachew("file:///x").args(["serve", "--help"]));
    for unused in ["--platform", "--daily", "--hourly", "--read-only", "--url "] {
        assert!(!out.contains(unused), "serve --help lists {unused}:\n{out}");
    }
    assert!(out.contains("--log-level"), "{out}");
}

/// Runs the shell steps of README.md's GitHub Actions and GitLab examples
/// as scripts, twice (a cold cache, then a warm one), against the embedded
/// `file://` backend, with a stand-in `cargo`, and checks GITHUB_OUTPUT.
#[test]
fn readme_ci_examples_run() {
    let readme =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let github = steps(&block(&readme, "ci-example:github"));
    let gitlab = steps(&block(&readme, "ci-example:gitlab"));
    assert!(
        github.len() >= 3 && gitlab.len() >= 3,
        "{github:?} {gitlab:?}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cachew"), bin.join("cachew")).unwrap();
    // A stand-in cargo: `build` makes target/, `install` is a no-op.
    let fake = bin.join("cargo");
    fs::write(
        &fake,
        "#!/bin/sh\ncase \"$1\" in build) mkdir -p target/debug && echo built > target/debug/app;; esac\n",
    )
    .unwrap();
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Not created: the first restore is a miss, the first save makes it.
    let cache = tmp.path().join("cache");

    for (name, job) in [("github", &github), ("gitlab", &gitlab)] {
        for (round, want_hit) in [(0, "false"), (1, "true")] {
            let work = tmp.path().join(format!("{name}-{round}"));
            fs::create_dir_all(&work).unwrap();
            fs::write(work.join("Cargo.lock"), format!("# {name}\n")).unwrap();
            let gh_out = work.join("gh_output");
            for step in job.iter() {
                let out = Command::new("bash")
                    .args(["-e", "-o", "pipefail", "-c", step])
                    .env_clear()
                    .env("PATH", &path)
                    .env("HOME", tmp.path())
                    .env("CACHEW_URL", file_url(&cache))
                    .env("GITHUB_OUTPUT", &gh_out)
                    .env("CI_COMMIT_REF_NAME", "main")
                    .current_dir(&work)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{name} round {round}: `{step}` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(work.join("target/debug/app").exists(), "{name} {round}");
            if name == "github" {
                let text = fs::read_to_string(&gh_out).unwrap();
                assert!(
                    text.contains(&format!("cache-hit={want_hit}\n")),
                    "{round}: {text}"
                );
                assert!(text.contains("cache-primary-key="), "{text}");
            }
        }
    }
}

/// The fenced block after `<!-- NAME -->`.
fn block(text: &str, name: &str) -> String {
    let start = text
        .find(&format!("<!-- {name} -->"))
        .unwrap_or_else(|| panic!("{name}"));
    let rest = &text[start..];
    let open = rest.find("```").unwrap();
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

/// The shell of each `run: |` block (GitHub) or `script:` item (GitLab).
fn steps(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let t = l.trim_start().trim_start_matches("- ");
        if t.starts_with("run: |") {
            let base = indent(l);
            let mut script = String::new();
            i += 1;
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > base) {
                script.push_str(lines[i].trim_start());
                script.push('\n');
                i += 1;
            }
            out.push(script);
            continue;
        } else if let Some(cmd) = t.strip_prefix("run: ") {
            out.push(cmd.to_owned());
        } else if t.starts_with("script:") {
            let base = indent(l);
            i += 1;
            while i < lines.len() && indent(lines[i]) > base {
                if let Some(cmd) = lines[i].trim_start().strip_prefix("- ") {
                    out.push(cmd.to_owned());
                }
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    out
}

#[test]
fn logs_say_what_the_key_is_made_of_and_show_retries() {
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path());
    fs::write(tmp.path().join("Cargo.lock"), "x\n").unwrap();
    fs::write(tmp.path().join("tree/Cargo.lock"), "y\n").unwrap();
    let url = file_url(&tmp.path().join("cache"));
    let c = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = cachew(&url);
        cmd.current_dir(tmp.path()).env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(cmd.args(args))
    };
    let save = ["save", "ns", "tree", "-H", "**/Cargo.lock"];
    let (code, _, err) = c(&save, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("key from 2 file(s) matching **/Cargo.lock"),
        "{err}"
    );
    assert!(!err.contains("key file:"), "{err}");
    let (_, _, err) = c(&[&["--log-level", "debug"][..], &save].concat(), &[]);
    assert!(
        err.contains("key file: Cargo.lock") && err.contains("key file: tree/Cargo.lock"),
        "{err}"
    );
    // RUST_LOG wins over --log-level; no colour codes off a terminal.
    let (_, _, err) = c(
        &[&["--log-level", "debug"][..], &save].concat(),
        &[("RUST_LOG", "error")],
    );
    assert!(!err.contains("key from"), "{err}");
    assert!(!err.contains('\x1b'), "{err}");

    // A server that is down: each retry is one warning with its attempt.
    let (code, _, err) = run(cachew(&support::dead_url()).args(["stat", "ns", "k"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("WARN") && err.contains("retrying in") && err.contains("(attempt 2 of "),
        "{err}"
    );
}

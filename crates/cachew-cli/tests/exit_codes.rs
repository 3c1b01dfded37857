//! Exit codes and messages of the `cachew` binary (`PROTOCOL.md` §7): 0
//! success, 1 error, 2 restore miss, 80 usage error — and nothing is
//! uploaded on any error.

mod support;

use std::fs;

use support::{cachew, dead_url, run, sample_tree, TestServer};

/// Runs `cachew` against `server` with `args`, in `cwd`.
fn cachew_in(server: &TestServer, cwd: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    run(cachew(&server.url()).current_dir(cwd).args(args))
}

#[test]
fn hit_is_0_and_miss_is_2() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let (code, _, err) = cachew_in(&server, tmp.path(), &["save", "ns", "tree", "--key", "k"]);
    assert_eq!(code, 0, "{err}");

    let (code, _, err) = cachew_in(&server, tmp.path(), &["restore", "ns", "hit", "--key", "k"]);
    assert_eq!(code, 0, "{err}");
    assert!(tmp.path().join("hit/src/lib.rs").exists());

    let (code, _, err) = cachew_in(
        &server,
        tmp.path(),
        &["restore", "ns", "miss", "--key", "other"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("miss"), "{err}");
    assert!(!tmp.path().join("miss").exists(), "a miss creates nothing");

    // --lookup-only: 0 on hit, 2 on miss, never downloads.
    let (code, _, err) = cachew_in(
        &server,
        tmp.path(),
        &["restore", "ns", "look", "--key", "k", "--lookup-only"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("hit"), "{err}");
    assert!(!tmp.path().join("look").exists());
    let (code, _, _) = cachew_in(
        &server,
        tmp.path(),
        &["restore", "ns", "look", "--key", "x", "--lookup-only"],
    );
    assert_eq!(code, 2);

    // Fallback keys: the second one hits and is named.
    let (code, _, err) = cachew_in(
        &server,
        tmp.path(),
        &[
            "restore",
            "ns",
            "fb",
            "--key",
            "nope",
            "--fallback-key",
            "nope2",
            "--fallback-key",
            "k",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("fallback key \"k\""), "{err}");
    support::assert_same_tree(&src, &tmp.path().join("fb"));

    // --quiet says nothing on success.
    let (code, out, err) = cachew_in(
        &server,
        tmp.path(),
        &["--quiet", "restore", "ns", "q", "--key", "k"],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
}

#[test]
fn server_down_is_1_not_2() {
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path());
    let url = dead_url();
    for args in [
        &["restore", "ns", "out", "--key", "k"][..],
        &["save", "ns", "tree", "--key", "k"][..],
        &["restore", "ns", "out", "--key", "k", "--lookup-only"][..],
    ] {
        let (code, _, err) = run(cachew(&url).current_dir(tmp.path()).args(args));
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("cachew: error:"), "{err}");
        assert!(err.to_lowercase().contains("connect"), "{err}");
    }
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn usage_errors_are_80_runtime_errors_1_and_nothing_is_uploaded() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path());
    fs::write(tmp.path().join("Cargo.lock"), "lock").unwrap();
    // (args, exit code, words on stderr)
    let cases: &[(&[&str], i32, &str)] = &[
        (&["save", "bad/ns", "tree", "--key", "k"], 80, "namespace"),
        (&["restore", "_bad", "out", "--key", "k"], 80, "namespace"),
        (
            &["save", "ns", "tree", "--key", "k", "--ttl", "3 days"],
            80,
            "--ttl",
        ),
        (
            &["put", "ns", "k", "Cargo.lock", "--ttl", "1x"],
            80,
            "--ttl",
        ),
        (
            &["put", "ns", "k", "Cargo.lock", "-H", "novalue"],
            80,
            "<key>=<value>",
        ),
        (
            &["save", "ns", "no-such-dir", "--key", "k"],
            1,
            "no-such-dir",
        ),
        (
            &["save", "ns", "tree", "src", "nope", "--key", "k"],
            1,
            "nope",
        ),
        (
            &["save", "ns", "tree", "--key", "k", "-H", "*.lock"],
            80,
            "can't be used together",
        ),
        (
            &[
                "restore",
                "ns",
                "out",
                "--key",
                "k",
                "--hash-files",
                "*.lock",
            ],
            80,
            "can't be used together",
        ),
        (&["save", "ns", "tree"], 80, "missing flags"),
        (&["restore", "ns", "out"], 80, "missing flags"),
        (&["save", "ns", "tree", "--key", ""], 80, "--key is empty"),
        (
            &["save", "ns", "tree", "-H", "**/*.nothing"],
            1,
            "no regular files match",
        ),
        (
            &["restore", "ns", "out", "-H", "**/*.nothing"],
            1,
            "no regular files match",
        ),
        (
            &["--daily", "--hourly", "save", "ns", "tree", "--key", "k"],
            80,
            "can't be used together",
        ),
        (
            &["save", "ns", "tree", "--key", "k", "--bogus"],
            80,
            "unexpected argument",
        ),
        (&["--platform=maybe", "namespaces"], 80, "bool value"),
        (&["frobnicate"], 80, "unrecognized subcommand"),
        (&[], 80, "Usage"),
    ];
    for (args, want, needle) in cases {
        let (code, out, err) = cachew_in(&server, tmp.path(), args);
        assert_eq!(code, *want, "{args:?} should exit {want}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: stderr should mention {needle:?}: {err}"
        );
        assert!(out.is_empty(), "{args:?}: nothing on stdout: {out}");
    }
    assert_eq!(server.objects(), 0, "an error uploaded something");
    assert!(!tmp.path().join("out").exists());

    // A variable that does not parse is a usage error naming it, whatever
    // the command (kong checks every command's variables).
    let (code, _, err) = run(cachew(&server.url())
        .env("CACHEW_TTL", "1x")
        .args(["namespaces"]));
    assert_eq!(code, 80, "{err}");
    assert!(err.contains("CACHEW_TTL"), "{err}");

    // --url that is neither a URL nor clearly a path: 80, and no directory.
    for url in ["cachew.example.com:8080", "htp://cache", "cache-dir"] {
        let (code, _, err) = run(cachew(url).current_dir(tmp.path()).args(["namespaces"]));
        assert_eq!(code, 80, "{url}: {err}");
        assert!(err.contains(url) && err.contains("file:///PATH"), "{err}");
    }
    assert!(!tmp.path().join("cache-dir").exists());

    // A matching glob works from the current directory.
    let (code, _, err) = cachew_in(&server, tmp.path(), &["save", "ns", "tree", "-H", "*.lock"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(server.objects(), 1);
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        &["--help"][..],
        &["save", "--help"],
        &["restore", "-h"],
        &["--version"],
    ] {
        let (code, out, err) = run(cachew(&dead_url()).args(args));
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(!out.is_empty());
    }
    let (_, out, _) = run(cachew(&dead_url()).args(["--help"]));
    for cmd in [
        "get",
        "stat",
        "put",
        "delete",
        "namespaces",
        "save",
        "restore",
        "invalidate",
        "stats",
        "serve",
    ] {
        assert!(out.contains(cmd), "--help should list {cmd}");
    }
    let (_, out, _) = run(cachew(&dead_url()).args(["save", "--help"]));
    assert!(out.contains("Example"), "{out}");
    assert!(out.contains("CACHEW_URL"), "{out}");
}

#[test]
fn object_commands_and_go_compatible_keys() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("blob.txt"), "hello blob\n").unwrap();
    let (code, _, err) = cachew_in(
        &server,
        tmp.path(),
        &[
            "--platform",
            "put",
            "ns",
            "hello",
            "blob.txt",
            "-H",
            "x-build=7",
            "--ttl",
            "1h30m",
        ],
    );
    assert_eq!(code, 0, "{err}");
    // --platform gives the Go CLI's key for linux-amd64 (PROTOCOL.md §1).
    let go_key = if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        "43c8a4c4f77d5de2ff906c5c2faf91cd2632c1970b9d491f2e27f70df3ddfbee".to_owned()
    } else {
        cachew_client::Key::new(format!(
            "{}-hello",
            cachew_proto::prefix::Platform::current()
        ))
        .to_hex()
    };
    let (code, out, err) = cachew_in(&server, tmp.path(), &["stat", "ns", &go_key]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("X-Build: 7"), "{out}");
    assert!(
        out.contains("Content-Disposition: attachment; filename=\"blob.txt\""),
        "{out}"
    );

    let (code, out, err) = cachew_in(&server, tmp.path(), &["--platform", "get", "ns", "hello"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello blob\n");
    assert!(err.contains("X-Build: 7"), "headers go to stderr: {err}");

    let (code, _, err) = cachew_in(
        &server,
        tmp.path(),
        &["get", "ns", &go_key, "-o", "copy.txt"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fs::read_to_string(tmp.path().join("copy.txt")).unwrap(),
        "hello blob\n"
    );

    // CACHEW_PLATFORM=true is the flag; =false is not.
    let (code, _, _) = run(cachew(&server.url())
        .env("CACHEW_PLATFORM", "true")
        .args(["stat", "ns", "hello"]));
    assert_eq!(code, 0);
    let (code, _, _) = run(cachew(&server.url())
        .env("CACHEW_PLATFORM", "false")
        .args(["stat", "ns", "hello"]));
    assert_eq!(code, 1);

    let (code, out, _) = cachew_in(&server, tmp.path(), &["namespaces"]);
    assert_eq!((code, out.as_str()), (0, "ns\n"));
    let (code, out, _) = cachew_in(&server, tmp.path(), &["stats"]);
    assert_eq!(code, 0);
    assert!(out.contains("objects: 1"), "{out}");

    let (code, _, _) = cachew_in(&server, tmp.path(), &["invalidate", "ns", "never-stored"]);
    assert_eq!(code, 0, "invalidating an absent key is fine");
    let (code, _, _) = cachew_in(&server, tmp.path(), &["delete", "ns", &go_key]);
    assert_eq!(code, 0);
    let (code, _, err) = cachew_in(&server, tmp.path(), &["delete", "ns", &go_key]);
    assert_eq!(code, 1, "deleting an absent key is an error");
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = cachew_in(&server, tmp.path(), &["get", "ns", "absent"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(server.objects(), 0);

    // put from stdin.
    let mut child = cachew(&server.url())
        .args(["--quiet", "put", "ns", "piped"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let (_, out, _) = cachew_in(&server, tmp.path(), &["get", "ns", "piped"]);
    assert_eq!(out, "from stdin");
}

#[test]
fn skip_unchanged_says_so_and_uploads_once() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path());
    let args = ["save", "ns", "tree", "--key", "k", "--skip-unchanged"];
    let (code, _, err) = cachew_in(&server, tmp.path(), &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("saved"), "{err}");
    let (code, _, err) = cachew_in(&server, tmp.path(), &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("unchanged"), "{err}");
    assert!(err.contains("nothing uploaded"), "{err}");
    fs::write(tmp.path().join("tree/src/lib.rs"), "changed").unwrap();
    let (code, _, err) = cachew_in(&server, tmp.path(), &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("saved"), "{err}");
}

#[test]
fn a_refused_upload_is_1_with_the_server_status_and_stores_nothing() {
    // A server whose policy refuses writes answers 403 while the archive
    // streams; the status must survive the aborted upload (LESSONS 8).
    let server = TestServer::start_with(|b| b.deny_writes());
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path());
    let (code, _, err) = cachew_in(&server, tmp.path(), &["save", "ns", "tree", "--key", "k"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("403"), "{err}");
    assert!(err.contains("writes are not allowed"), "{err}");
    assert_eq!(server.objects(), 0);
    // Reads still work: a restore is a plain miss.
    let (code, _, err) = cachew_in(&server, tmp.path(), &["restore", "ns", "out", "--key", "k"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn an_error_chain_prints_each_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = format!("file://{}/cache", tmp.path().display());
    let (code, _, err) = run(cachew(&cache).args(["save", "ns", "/no/such/dir", "--key", "k"]));
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let (code, _, err) = run(cachew(&dead_url()).args(["restore", "ns", "out", "--key", "k"]));
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
}

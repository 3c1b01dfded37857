//! Command lines written for the Go `cachew` CLI (its `--help`, its README
//! and `cmd/cachew/main.go`), run unchanged against our binary, on both the
//! embedded `file://` backend and the in-process reference server: exit
//! codes, the words on stderr that scripts grep for, and the keys.

mod support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use support::{cachew, run, TestServer};

/// Runs `args` with `--url` from `url`, in `cwd`, with extra variables.
fn go_cli(url: &str, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = cachew(url);
    cmd.current_dir(cwd).env("HOME", cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd.args(args))
}

fn project(root: &Path) {
    fs::create_dir_all(root.join("proj/node_modules/dep")).unwrap();
    fs::write(root.join("proj/node_modules/dep/index.js"), "x").unwrap();
    fs::write(root.join("proj/node_modules/dep/debug.log"), "noise").unwrap();
    fs::write(root.join("proj/go.sum"), "y\n").unwrap();
    fs::create_dir_all(root.join("proj/a")).unwrap();
    fs::write(root.join("proj/a/go.sum"), "x\n").unwrap();
}

fn each_backend(check: impl Fn(&str, &Path)) {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    project(tmp.path());
    check(&server.url(), tmp.path());
    let tmp = tempfile::tempdir().unwrap();
    project(tmp.path());
    let url = format!("file://{}/cache", tmp.path().display());
    check(&url, tmp.path());
}

#[test]
fn save_and_restore_say_what_go_says() {
    each_backend(|url, root| {
        let proj = root.join("proj");
        let (code, _, err) = go_cli(url, root, &[], &["save", "deps", "proj", "--key", "npm-v1"]);
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains(&format!("Archiving {}...", proj.display())),
            "{err}"
        );
        assert!(err.lines().any(|l| l == "Saved: npm-v1"), "{err}");

        let (code, _, err) = go_cli(
            url,
            root,
            &[],
            &["restore", "deps", "out", "--key", "npm-v1"],
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains(&format!("Restoring to {}...", root.join("out").display())),
            "{err}"
        );
        assert!(err.lines().any(|l| l == "Restored: npm-v1"), "{err}");
        assert!(root.join("out/node_modules/dep/index.js").exists());

        // A miss is exit 2 and says so, Go's words.
        let (code, _, err) = go_cli(
            url,
            root,
            &[],
            &["restore", "deps", "out2", "--key", "npm-v2"],
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.lines().any(|l| l == "Cache miss: npm-v2"), "{err}");
    });
}

#[test]
fn keys_print_as_go_prints_them() {
    each_backend(|url, root| {
        // -H: the files' digest (PROTOCOL.md §1 vector), no prefixes.
        let digest = "9e49419119676ac6fdc8ad5e3aac5edc4d28fb194bef8fc7ef736a0622caeda0";
        let (code, _, err) = go_cli(
            url,
            &root.join("proj"),
            &[],
            &["save", "ns", ".", "-H", "**/go.sum"],
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            err.lines().any(|l| l == format!("Saved: {digest}")),
            "{err}"
        );
        // --hash-files, comma-separated, finds the same files.
        let (code, _, err) = go_cli(
            url,
            &root.join("proj"),
            &[],
            &["restore", "ns", "../r1", "--hash-files", "go.sum,a/go.sum"],
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            err.lines().any(|l| l == format!("Restored: {digest}")),
            "{err}"
        );

        // --platform: "{goos}-{goarch}-KEY".
        let platform = cachew_proto::prefix::Platform::current();
        let (code, _, err) = go_cli(
            url,
            root,
            &[],
            &["--platform", "save", "ns", "proj", "--key", "k"],
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            err.lines().any(|l| l == format!("Saved: {platform}-k")),
            "{err}"
        );

        // Every flag from the environment.
        let (code, _, err) = go_cli(
            url,
            root,
            &[("CACHEW_KEY", "from-env"), ("CACHEW_PLATFORM", "true")],
            &["restore", "ns", "r2"],
        );
        assert_eq!(code, 2, "{err}");
        assert!(
            err.lines()
                .any(|l| l == format!("Cache miss: {platform}-from-env")),
            "{err}"
        );
    });
}

#[test]
fn excludes_split_on_commas() {
    each_backend(|url, root| {
        let (code, _, err) = go_cli(
            url,
            root,
            &[],
            &[
                "save",
                "ns",
                "proj",
                "--key",
                "x",
                "--exclude",
                "*.log,*.tmp",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = go_cli(url, root, &[], &["restore", "ns", "x", "--key", "x"]);
        assert_eq!(code, 0, "{err}");
        assert!(root.join("x/node_modules/dep/index.js").exists());
        assert!(!root.join("x/node_modules/dep/debug.log").exists());
    });
}

#[test]
fn objects_put_stat_get_delete_namespaces() {
    each_backend(|url, root| {
        let (code, out, err) = go_cli(url, root, &[], &["namespaces"]);
        assert_eq!((code, out.as_str()), (0, "No namespaces found\n"), "{err}");

        fs::write(root.join("artifact.bin"), "payload").unwrap();
        let (code, _, err) = go_cli(
            url,
            root,
            &[],
            &[
                "put",
                "ns",
                "art",
                "artifact.bin",
                "--ttl",
                "1h",
                "-H",
                "x-build=42;x-arch=amd64",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = go_cli(url, root, &[], &["stat", "ns", "art"]);
        assert_eq!(code, 0, "{err}");
        for line in [
            "X-Build: 42",
            "X-Arch: amd64",
            "Content-Disposition: attachment; filename=\"artifact.bin\"",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in {out}");
        }
        let (code, out, err) = go_cli(url, root, &[], &["get", "ns", "art", "-o", "-"]);
        assert_eq!((code, out.as_str()), (0, "payload"), "{err}");
        assert!(err.contains("X-Build: 42"), "headers on stderr: {err}");

        // `-` is stdin for put.
        let mut child = cachew(url)
            .current_dir(root)
            .args(["put", "ns", "piped", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"from stdin")
            .unwrap();
        assert!(child.wait().unwrap().success());
        let (_, out, _) = go_cli(url, root, &[], &["get", "ns", "piped"]);
        assert_eq!(out, "from stdin");

        let (code, out, _) = go_cli(url, root, &[], &["namespaces"]);
        assert_eq!((code, out.as_str()), (0, "ns\n"));
        let (code, _, err) = go_cli(url, root, &[], &["delete", "ns", "art"]);
        assert_eq!(code, 0, "{err}");
        let (code, _, _) = go_cli(url, root, &[], &["stat", "ns", "art"]);
        assert_eq!(code, 1);
    });
}

#[test]
fn our_help_examples_work() {
    each_backend(|url, root| {
        // `cachew save rust . target -H '**/Cargo.lock' --exclude '*.rlib,*.rmeta'`
        let rust = root.join("rust");
        fs::create_dir_all(rust.join("target/debug")).unwrap();
        fs::write(rust.join("Cargo.lock"), "lock").unwrap();
        fs::write(rust.join("target/debug/libx.rlib"), "rlib").unwrap();
        fs::write(rust.join("target/debug/x"), "bin").unwrap();
        let (code, _, err) = go_cli(
            url,
            &rust,
            &[],
            &[
                "save",
                "rust",
                ".",
                "target",
                "-H",
                "**/Cargo.lock",
                "--exclude",
                "*.rlib,*.rmeta",
            ],
        );
        assert_eq!(code, 0, "{err}");
        // `cachew save cargo ~/.cargo registry/index registry/cache -H Cargo.lock`
        // (the shell expands `~`; HOME is the test directory here).
        let cargo = root.join(".cargo");
        fs::create_dir_all(cargo.join("registry/index")).unwrap();
        fs::create_dir_all(cargo.join("registry/cache")).unwrap();
        let (code, _, err) = go_cli(
            url,
            &rust,
            &[],
            &[
                "save",
                "cargo",
                cargo.to_str().unwrap(),
                "registry/index",
                "registry/cache",
                "-H",
                "Cargo.lock",
            ],
        );
        assert_eq!(code, 0, "{err}");
        // `cachew --platform --daily save deps node_modules --key npm --ttl 72h`
        let (code, _, err) = go_cli(
            url,
            &root.join("proj"),
            &[],
            &[
                "--platform",
                "--daily",
                "save",
                "deps",
                "node_modules",
                "--key",
                "npm",
                "--ttl",
                "72h",
            ],
        );
        assert_eq!(code, 0, "{err}");
        // `cachew restore rust . -H '**/Cargo.lock' --fallback-key rust-main || cargo build`
        let (code, _, err) = go_cli(
            url,
            &rust,
            &[],
            &[
                "restore",
                "rust",
                "../rust-copy",
                "-H",
                "**/Cargo.lock",
                "--fallback-key",
                "rust-main",
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(root.join("rust-copy/target/debug/x").exists());
        assert!(!root.join("rust-copy/target/debug/libx.rlib").exists());
        // Include paths that leave DIR are refused, naming the path and why.
        let (code, _, err) = go_cli(
            url,
            &rust,
            &[],
            &["save", "x", ".", "../proj", "--key", "k"],
        );
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("../proj") && err.contains("inside"), "{err}");
    });
}

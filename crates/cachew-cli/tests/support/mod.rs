//! Shared helpers: an in-process reference server, running the `cachew`
//! binary, sample trees and tree comparison.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use cachew_client::{Cache, MemoryCache};
use cachew_server::RunningServer;

/// A reference server over a `MemoryCache`, on its own runtime.
pub struct TestServer {
    pub cache: Arc<dyn Cache>,
    server: Option<RunningServer>,
    runtime: tokio::runtime::Runtime,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(|b| b)
    }

    /// A server whose builder is adjusted by `f` (e.g. `deny_writes`).
    pub fn start_with(
        f: impl FnOnce(cachew_server::ServerBuilder) -> cachew_server::ServerBuilder,
    ) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(0));
        let server = runtime
            .block_on(f(cachew_server::Server::builder(cache.clone())).bind("127.0.0.1:0"))
            .unwrap();
        TestServer {
            cache,
            server: Some(server),
            runtime,
        }
    }

    pub fn url(&self) -> String {
        self.server.as_ref().unwrap().url()
    }

    /// The object URL of `key_text` (parsed as `Key::parse` does) in `ns`.
    pub fn object_url(&self, ns: &str, key_text: &str) -> String {
        format!(
            "{}/api/v1/object/{ns}/{}",
            self.url(),
            cachew_client::Key::parse(key_text)
        )
    }

    /// Number of objects stored, over every namespace.
    pub fn objects(&self) -> i64 {
        self.runtime
            .block_on(self.cache.stats())
            .map(|s| s.objects)
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

/// A URL nobody listens on.
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// `cachew` with `CACHEW_*` cleared, so the caller's environment cannot leak in.
pub fn cachew(url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cachew"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CACHEW_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("CACHEW_URL", url).stdin(Stdio::null());
    cmd
}

/// Runs and captures.
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Runs a shell pipeline, asserting success.
pub fn sh(script: &str) {
    let out = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Incompressible bytes from `seed` (cachew_testkit::random_bytes).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    cachew_testkit::random_bytes(len, seed)
}

/// A small tree with files, modes, a symlink, a hard link, an empty
/// directory and fixed mtimes, at `{root}/tree`.
pub fn sample_tree(root: &Path) -> PathBuf {
    let p = root.join("tree");
    fs::create_dir_all(p.join("src/deep/er")).unwrap();
    fs::create_dir_all(p.join("empty")).unwrap();
    fs::create_dir_all(p.join("target/debug")).unwrap();
    fs::write(p.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    fs::write(p.join("src/deep/er/blob.bin"), noise(200_000, 7)).unwrap();
    fs::write(p.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(p.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(p.join("secret"), "s").unwrap();
    fs::set_permissions(p.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(p.join("target/debug/app"), noise(10_000, 9)).unwrap();
    std::os::unix::fs::symlink("src/lib.rs", p.join("link")).unwrap();
    std::os::unix::fs::symlink("missing/target", p.join("dangling")).unwrap();
    fs::hard_link(p.join("run.sh"), p.join("run-again.sh")).unwrap();
    for (i, f) in [
        "src/lib.rs",
        "src/deep/er/blob.bin",
        "run.sh",
        "secret",
        "target/debug/app",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&p.join(f), 1_600_000_000 + i as i64 * 77);
    }
    for (i, d) in [
        "src/deep/er",
        "src/deep",
        "src",
        "empty",
        "target/debug",
        "target",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&p.join(d), 1_500_000_000 + i as i64 * 77);
    }
    p
}

pub use cachew_testkit::{assert_same_tree, set_mtime};

//! Shared fixture of the git tests: an upstream repository under a server
//! root, the reference server with `/git/` endpoints, and `git` helpers.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cachew_client::git::GitClient;
use cachew_client::{Body, MemoryCache};
use cachew_server::{RunningServer, Server};
use cachew_transport::HttpClient;

/// The repository URL the tests use; served from `{root}/example.test/org/repo`.
pub const REPO_URL: &str = "https://example.test/org/repo";

/// Runs git in `dir` with a fixed identity and returns its trimmed stdout;
/// panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir).args(args).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A `git -C dir` command with a fixed identity and no user configuration.
pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.test")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.test")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    cmd
}

/// An upstream repository served by a reference server.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub upstream: PathBuf,
    pub server: RunningServer,
}

impl Fixture {
    /// An empty upstream repository (branch `main`) and a server for it.
    pub async fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let upstream = root.join("example.test/org/repo");
        std::fs::create_dir_all(&upstream).unwrap();
        git(&upstream, &["init", "-q", "-b", "main"]);
        let cache = Arc::new(MemoryCache::new(1 << 20));
        let server = Server::builder(cache)
            .git_root(&root)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        Fixture {
            tmp,
            upstream,
            server,
        }
    }

    /// Commits `content` to `file` upstream; returns the new HEAD.
    pub fn commit(&self, file: &str, content: &str) -> String {
        std::fs::write(self.upstream.join(file), content).unwrap();
        git(&self.upstream, &["add", file]);
        git(
            &self.upstream,
            &["commit", "-q", "-m", &format!("add {file}")],
        );
        git(&self.upstream, &["rev-parse", "HEAD"])
    }

    /// A git client for the server.
    pub fn client(&self) -> GitClient {
        let http = HttpClient::builder().build().unwrap();
        GitClient::new(http, self.server.url())
    }

    /// Extracts a snapshot body into a new directory `name`.
    pub async fn extract(&self, body: Body, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        cachew_archive::extract_async(body, dir.clone(), Default::default())
            .await
            .unwrap();
        dir
    }

    /// The status of a plain GET of `path` on the server.
    pub async fn raw_get(&self, path: &str) -> u16 {
        self.raw(http::Method::GET, path).await
    }

    /// The status of a bodiless `method` request of `path` on the server.
    pub async fn raw(&self, method: http::Method, path: &str) -> u16 {
        let http = HttpClient::builder().build().unwrap();
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.server.url()))
            .body(cachew_transport::RequestBody::empty())
            .unwrap();
        http.send(req).await.unwrap().status().as_u16()
    }
}

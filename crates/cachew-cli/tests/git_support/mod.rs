//! The git fixture of the `git restore` tests: an upstream repository
//! under a reference server's git root, and `cachew git restore` run with
//! git isolated from the user's configuration.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use cachew_client::MemoryCache;
use cachew_server::{RunningServer, Server};

pub const REPO: &str = "https://example.test/org/repo";

/// An upstream repository under a server root, served by a reference server
/// on its own runtime.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub upstream: PathBuf,
    server: Option<RunningServer>,
    runtime: tokio::runtime::Runtime,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_rate(None)
    }

    /// A fixture whose server sends at most `rate` bytes/s per connection.
    pub fn with_rate(rate: Option<u64>) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let upstream = root.join("example.test/org/repo");
        std::fs::create_dir_all(&upstream).unwrap();
        git(&upstream, &["init", "-q", "-b", "main"]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut builder = Server::builder(Arc::new(MemoryCache::new(0))).git_root(&root);
        if let Some(rate) = rate {
            builder = builder.rate_limit_per_connection(rate);
        }
        let server = runtime.block_on(builder.bind("127.0.0.1:0")).unwrap();
        Fixture {
            tmp,
            root,
            upstream,
            server: Some(server),
            runtime,
        }
    }

    pub fn url(&self) -> String {
        self.server.as_ref().unwrap().url()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Commits `content` to `file` upstream; returns the new HEAD.
    pub fn commit(&self, file: &str, content: &[u8]) -> String {
        std::fs::write(self.upstream.join(file), content).unwrap();
        git(&self.upstream, &["add", file]);
        git(
            &self.upstream,
            &["commit", "-q", "-m", &format!("add {file}")],
        );
        git(&self.upstream, &["rev-parse", "HEAD"])
    }

    /// The `cachew git restore` command, not started.
    pub fn command(&self, url: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cachew"));
        for (k, _) in std::env::vars() {
            if k.starts_with("CACHEW_") {
                cmd.env_remove(k);
            }
        }
        isolate_git(&mut cmd);
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env(
                "GIT_CONFIG_KEY_0",
                format!("url.file://{}/example.test/.insteadOf", self.root.display()),
            )
            .env("GIT_CONFIG_VALUE_0", "https://example.test/")
            .args(["--url", url, "git", "restore"])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// `cachew --url URL git restore ARGS…`, with git isolated from the
    /// user's configuration and the repository URL mapped to the upstream
    /// directory (as a CI machine's git would reach the real origin).
    pub fn restore(&self, url: &str, args: &[&str]) -> (i32, String) {
        let out = self.command(url, args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A raw `Range: bytes=0-0` GET of the snapshot (which makes the server
    /// take it), over plain HTTP/1.1.
    pub fn snapshot_first_byte(&self) {
        use std::io::{Read, Write};
        let addr = self.server.as_ref().unwrap().addr();
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        write!(
            conn,
            "GET /git/example.test/org/repo/snapshot.tar.zst HTTP/1.1\r\n\
             Host: {addr}\r\nRange: bytes=0-0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 206"), "{answer}");
    }

    /// Names in the temporary directory (to spot staging leftovers).
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

pub fn isolate_git(cmd: &mut Command) {
    cmd.env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.test")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.test")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args);
    isolate_git(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn head(dir: &Path) -> String {
    git(dir, &["rev-parse", "HEAD"])
}

/// Incompressible bytes, so that the snapshot spans several chunks.
pub fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// An HTTP/1.1 front for a server that answers `POST …/ensure-refs` itself
/// with a canned JSON body and forwards every other request (one per
/// connection, `Connection: close`), to see how the client takes answers
/// the reference server never gives. Its URL is [`EnsureRefsFront::url`].
pub struct EnsureRefsFront {
    addr: std::net::SocketAddr,
}

impl EnsureRefsFront {
    /// Fronts the server at `backend` (`http://HOST:PORT`), answering
    /// ensure-refs with `answer`.
    pub fn start(backend: &str, answer: &'static str) -> EnsureRefsFront {
        let backend = backend
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let backend = backend.clone();
                std::thread::spawn(move || {
                    let _ = front_one(conn, &backend, answer);
                });
            }
        });
        EnsureRefsFront { addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn front_one(mut conn: std::net::TcpStream, backend: &str, answer: &str) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.push(line);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    if head[0].contains("/ensure-refs ") {
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        )?;
        return Ok(());
    }
    let mut up = std::net::TcpStream::connect(backend)?;
    for line in &head {
        up.write_all(line.as_bytes())?;
    }
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    std::io::copy(&mut up, &mut conn)?;
    Ok(())
}

//! A real S3 server for tests: SeaweedFS (`weed server -s3`) on free
//! loopback ports in a temporary directory, with one access key and one
//! bucket, checked ready with `curl --aws-sigv4` (an S3 client that is not
//! ours) before a test uses it.
//!
//! [`S3Server::start`] returns `None` when no `weed` binary is found (and
//! prints `SKIPPED: weed not found`), unless `CACHEW_REQUIRE_S3=1`, when
//! it panics: CI builds `weed` and sets that, so the tests cannot skip
//! there silently. `weed` is looked up as `$CACHEW_WEED`, then on `PATH`,
//! then in `$HOME/.cache/cachew-s3/bin` (where `.ci/run` installs it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key every test server accepts.
pub const ACCESS_KEY: &str = "cachewtest";
/// Its secret.
pub const SECRET_KEY: &str = "cachewtestsecret";
/// The region the tests sign for.
pub const REGION: &str = "us-east-1";

/// A running SeaweedFS with its S3 gateway; killed on drop.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    endpoint: String,
    bucket: String,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

/// The `weed` binary, if there is one.
pub fn weed() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CACHEW_WEED").filter(|p| !p.is_empty()) {
        // Named but missing is "not found", not a different error.
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("weed"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let cached = Path::new(&home).join(".cache/cachew-s3/bin/weed");
        cached.is_file().then_some(cached)
    })
}

/// Whether CI demands the S3 tests (`CACHEW_REQUIRE_S3=1`).
pub fn s3_required() -> bool {
    std::env::var("CACHEW_REQUIRE_S3").is_ok_and(|v| v == "1")
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so that they differ, then released for weed to take.
    let listeners: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

impl S3Server {
    /// Starts a server with bucket `bucket`, or says why not: `None` with
    /// `SKIPPED: weed not found` on stderr when there is no `weed` (a
    /// panic instead under `CACHEW_REQUIRE_S3=1`). Panics if `weed` is
    /// there but does not come up.
    pub fn start(bucket: &str) -> Option<S3Server> {
        let Some(weed) = weed() else {
            assert!(
                !s3_required(),
                "CACHEW_REQUIRE_S3=1 but no weed binary: set CACHEW_WEED, put weed on PATH \
                 or run .ci/run's install step"
            );
            eprintln!("SKIPPED: weed not found (set CACHEW_WEED or see .ci/run)");
            return None;
        };
        let mut last = String::new();
        // A port taken between our probe and weed's bind: try again.
        for _ in 0..3 {
            match S3Server::try_start(&weed, bucket) {
                Ok(server) => return Some(server),
                Err(e) => last = e,
            }
        }
        panic!("SeaweedFS did not start: {last}");
    }

    fn try_start(weed: &Path, bucket: &str) -> Result<S3Server, String> {
        let dir = tempfile::Builder::new()
            .prefix("cachew-weed-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"cachew","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .map_err(|e| e.to_string())?;
        let p = free_ports(8);
        let log = dir.path().join("weed.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(weed)
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg("-filer")
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg("-s3")
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", config.display()))
            .args([
                "-master.telemetry=false",
                "-master.volumeSizeLimitMB=256",
                "-volume.max=16",
            ])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", weed.display()))?;
        let mut server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{}", p[6]),
            bucket: bucket.to_owned(),
            _dir: dir,
            log,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Creates the bucket and writes, reads and deletes one object with
    /// curl, retrying until the volume server has joined (or 90 s pass).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let probe = format!("{}/{}/cachew-probe", self.endpoint, self.bucket);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("weed exited with {status}: {}", self.log_tail()));
            }
            let steps = [
                vec!["-X", "PUT", &format!("{}/{}", self.endpoint, self.bucket)],
                // curl signs a --data-binary body only with this header.
                vec![
                    "-X",
                    "PUT",
                    "-H",
                    "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                    "--data-binary",
                    "ready",
                    &probe,
                ],
                vec![&probe],
                vec!["-X", "DELETE", &probe],
            ]
            .map(|args| args.into_iter().map(str::to_owned).collect::<Vec<_>>());
            match steps.iter().try_for_each(|args| self.curl(args).map(drop)) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(format!(
            "not ready after 90 s ({last}); log: {}",
            self.log_tail()
        ))
    }

    /// Runs `curl` signed with SigV4 against this server and returns the
    /// body; fails on a non-2xx status (the bucket's "already owned" on a
    /// second PUT counts as success).
    pub fn curl(&self, args: &[String]) -> Result<String, String> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--aws-sigv4"])
            .arg(format!("aws:amz:{REGION}:s3"))
            .args(["--user", &format!("{ACCESS_KEY}:{SECRET_KEY}")])
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .map_err(|e| format!("running curl: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let ok = code.starts_with('2') || body.contains("BucketAlreadyOwnedByYou");
        if out.status.success() && ok {
            Ok(body.to_owned())
        } else {
            Err(format!(
                "curl {args:?}: HTTP {code} {body} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The environment an S3 client needs for this server (credentials,
    /// region, endpoint), as `(name, value)` pairs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
        ]
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = text.lines().rev().take(20).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

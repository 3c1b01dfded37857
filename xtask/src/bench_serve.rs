//! `cargo xtask bench serve [--seconds N] [--no-write]`: requests/s and
//! MB/s of `cachew serve` for small (4 KiB) and large (64 MiB) objects at
//! 1, 8 and 64 concurrent connections, side by side with nginx serving the
//! same bytes as static files, under the same load.
//!
//! It builds the `cachew` binary in release mode, starts `cachew serve` on
//! a fresh directory (access log off) and uploads the two objects with
//! curl; it writes the same bytes as two files and starts Debian's
//! `nginx` on them as a non-daemon child with its own configuration on a
//! free loopback port (`daemon off`, `worker_processes auto`, `sendfile
//! on`, no access log). The load generator is Debian's `wrk` (`-t` =
//! min(connections, cores), `-c` = connections, `-d` = `--seconds`,
//! default 3), run once per cell, servers alternating. MB/s is requests/s
//! × body size (decimal MB), so headers do not count. Results go to
//! stdout and, unless `--no-write`, to the "## Server" section of
//! `docs/benchmarks.md` (other sections are left alone).
//!
//! Needs `nginx`, `wrk` and `curl` on `PATH` (`apt-get install -y nginx
//! wrk curl`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::bench_http::{command_output, load_average, target_dir};

const SECTION: &str = "## Server";
const COMMAND: &str = "cargo xtask bench serve";
const SMALL: u64 = 4 << 10;
const LARGE: u64 = 64 << 20;
const CONCURRENCY: [usize; 3] = [1, 8, 64];

/// A child process stopped with SIGTERM (then SIGKILL after 5 s) and
/// reaped when dropped. SIGTERM matters for nginx: a SIGKILLed master
/// leaves its workers running, still listening.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..250 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One wrk run's result.
#[derive(Clone, Copy)]
struct Cell {
    requests_s: f64,
    mb_s: f64,
}

/// Bytes that neither compress nor repeat within a page.
fn object_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Waits until something accepts connections on `port`.
fn wait_for_port(port: u16) -> Result<(), String> {
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listens on 127.0.0.1:{port}"))
}

fn start_cachew(bin: &Path, dir: &Path) -> Result<(Killed, String), String> {
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--access-log=false",
            "--dir",
        ])
        .arg(dir)
        .env_remove("CACHEW_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let child = Killed(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line
                .strip_prefix("cachew: serving ")
                .and_then(|l| l.split(" at ").nth(1))
                .and_then(|l| l.split_whitespace().next())
            {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "cachew serve did not print its address".to_owned())?;
    Ok((child, url))
}

fn start_nginx(work: &Path, www: &Path) -> Result<(Killed, String), String> {
    let port = free_port()?;
    let conf = work.join("nginx.conf");
    let w = work.display();
    fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes auto;\npid {w}/nginx.pid;\n\
             error_log {w}/nginx-error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  \
             keepalive_requests 1000000;\n  \
             client_body_temp_path {w}/nginx-body;\n  proxy_temp_path {w}/nginx-proxy;\n  \
             fastcgi_temp_path {w}/nginx-fastcgi;\n  uwsgi_temp_path {w}/nginx-uwsgi;\n  \
             scgi_temp_path {w}/nginx-scgi;\n  \
             default_type application/octet-stream;\n  \
             server {{\n    listen 127.0.0.1:{port};\n    root {www};\n  }}\n}}\n",
            www = www.display()
        ),
    )
    .map_err(|e| format!("write {}: {e}", conf.display()))?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start nginx (apt-get install -y nginx): {e}"))?;
    let child = Killed(child);
    wait_for_port(port)?;
    Ok((child, format!("http://127.0.0.1:{port}")))
}

/// Runs wrk against `url` and reads its requests/s.
fn wrk(url: &str, connections: usize, seconds: u64, size: u64) -> Result<Cell, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = connections.min(cores).max(1);
    let out = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--timeout",
            "30s",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("start wrk (apt-get install -y wrk): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") {
        return Err(format!("wrk {url} failed: {text}"));
    }
    let requests_s: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output: {text}"))?;
    Ok(Cell {
        requests_s,
        mb_s: requests_s * size as f64 / 1e6,
    })
}

fn curl_upload(url: &str, file: &Path) -> Result<(), String> {
    crate::run(
        Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "-o",
                "/dev/null",
                "-H",
                "Expect:",
                "-X",
                "POST",
            ])
            .arg("--upload-file")
            .arg(file)
            .arg(url),
    )
}

fn replace_section(old: &str, section: &str) -> String {
    let section = section.trim_end_matches('\n');
    let heading = format!("\n{SECTION}\n");
    let Some(at) = old.find(&heading) else {
        return format!("{}\n\n{section}\n", old.trim_end_matches('\n'));
    };
    let after_heading = at + heading.len();
    let rest = old[after_heading..]
        .find("\n## ")
        .map_or("", |i| &old[after_heading + i + 1..]);
    if rest.is_empty() {
        format!("{}{section}\n", &old[..at + 1])
    } else {
        format!("{}{section}\n\n{rest}", &old[..at + 1])
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let (mut seconds, mut write) = (3u64, true);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or("--seconds needs a positive number")?;
            }
            "--no-write" => write = false,
            other => return Err(format!("bench serve: unknown argument {other:?}")),
        }
    }
    let root = crate::root();
    crate::run(crate::cargo().args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "cachew-cli",
        "--bin",
        "cachew",
    ]))?;
    let target = target_dir(&root);
    let bin = target.join("release").join("cachew");
    let work: PathBuf = target.join("bench-serve");
    let _ = fs::remove_dir_all(&work);
    let www = work.join("www");
    fs::create_dir_all(&www).map_err(|e| format!("create {}: {e}", www.display()))?;
    let objects = [("small", SMALL), ("large", LARGE)];
    // Hex keys are used verbatim in object URLs.
    let key = |name: &str| {
        if name == "small" {
            "5".repeat(64)
        } else {
            "6".repeat(64)
        }
    };
    for (i, (name, size)) in objects.iter().enumerate() {
        let path = www.join(name);
        fs::write(&path, object_bytes(*size, i as u64 + 1))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }

    let (cachew, cachew_url) = start_cachew(&bin, &work.join("cache"))?;
    for (name, _) in objects {
        let url = format!("{cachew_url}/api/v1/object/bench/{}", key(name));
        curl_upload(&url, &www.join(name))?;
    }
    let (nginx, nginx_url) = start_nginx(&work, &www)?;
    let load_before = load_average();
    let mut rows = Vec::new();
    for (name, size) in objects {
        for c in CONCURRENCY {
            let ours_url = format!("{cachew_url}/api/v1/object/bench/{}", key(name));
            let theirs_url = format!("{nginx_url}/{name}");
            // Alternate who goes first, so neither always gets a cold start.
            let (ours, theirs) = if c == 8 {
                let theirs = wrk(&theirs_url, c, seconds, size)?;
                (wrk(&ours_url, c, seconds, size)?, theirs)
            } else {
                let ours = wrk(&ours_url, c, seconds, size)?;
                (ours, wrk(&theirs_url, c, seconds, size)?)
            };
            let label = if size == SMALL { "4 KiB" } else { "64 MiB" };
            println!(
                "{label} c={c}: cachew {:.0} req/s {:.1} MB/s; nginx {:.0} req/s {:.1} MB/s",
                ours.requests_s, ours.mb_s, theirs.requests_s, theirs.mb_s
            );
            rows.push((label, c, ours, theirs));
        }
    }
    let load_after = load_average();
    drop(nginx);
    drop(cachew);
    if !write {
        return Ok(());
    }
    let mut table = String::from(
        "| object | connections | cachew serve req/s | MB/s | nginx req/s | MB/s | cachew / nginx |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (label, c, ours, theirs) in &rows {
        table.push_str(&format!(
            "| {label} | {c} | {:.0} | {:.1} | {:.0} | {:.1} | {:.2} |\n",
            ours.requests_s,
            ours.mb_s,
            theirs.requests_s,
            theirs.mb_s,
            ours.requests_s / theirs.requests_s
        ));
    }
    let section = format!(
        "{SECTION}\n\n\
Command: `{COMMAND}` ({seconds} s per cell; measured {date}).\n\n\
`cachew serve` (release build, disk backend, access log off) against\n\
Debian's nginx {nginx} serving the same bytes as static files (`sendfile on`,\n\
`worker_processes auto`, no access log), both on loopback. Load: Debian's\n\
`wrk` {wrk}, `-t min(connections, cores) -c connections`, plain `GET` of one\n\
object over keep-alive connections; MB/s is requests/s × body size (10⁶\n\
bytes).\n\n\
{table}\n\
Machine: {cores} cores, Linux {kernel}; load average before / after:\n\
{load_before} / {load_after}. wrk, the server and other work on a shared\n\
build machine compete for the same cores, so compare the two servers within\n\
a row, not across runs. wrk counts only completed requests: at 64 MiB and\n\
64 connections a {seconds} s cell completes a handful, so that row is noisy\n\
(`--seconds 20` steadies it).\n",
        date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        nginx = nginx_version(),
        wrk = command_output("sh", &["-c", "wrk -v 2>&1 | head -1 | cut -d' ' -f2"]),
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel = command_output("uname", &["-r"]),
    );
    let docs = root.join("docs/benchmarks.md");
    let old = fs::read_to_string(&docs).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    fs::write(&docs, replace_section(&old, &section))
        .map_err(|e| format!("write {}: {e}", docs.display()))?;
    eprintln!("xtask: wrote the {SECTION:?} section of {}", docs.display());
    Ok(())
}

/// nginx prints its version on stderr.
fn nginx_version() -> String {
    Command::new("nginx")
        .arg("-v")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .and_then(|v| v.rsplit('/').next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

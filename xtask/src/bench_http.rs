//! `cargo xtask bench http [--runs N] [--size BYTES] [--no-write]`: times
//! this project's HTTP client against `curl` on the same URL, in the same run.
//!
//! It builds the `http-bench` binary of `cachew-tests` in release mode,
//! starts the reference server from it (a memory backend) on loopback, and
//! then, alternating the order on each run:
//! - downloads one object with `http-bench get` and with
//!   `curl -o /dev/null`, and
//! - uploads one file with `http-bench put` and with
//!   `curl -X POST --upload-file FILE` (with `Expect:` cleared so curl does
//!   not wait for `100 Continue`). `curl --data-binary @FILE` would load the
//!   file into memory first, and curl 7.88 refuses that for a 1 GiB file
//!   ("out of memory"); `--upload-file` streams it, the fairer comparison.
//!
//! Each transfer is timed from process start to exit for both tools, so
//! both pay the same start-up cost. After one untimed warm-up of each, the
//! medians of `--runs` runs (default 3) give the ratio
//! `curl time / our time` (our throughput relative to curl's; the target is
//! at least 0.9). Results go to stdout and, unless `--no-write`, to the
//! "## HTTP transfer" section of `docs/benchmarks.md` (other sections are
//! left alone).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Hex keys are used verbatim in object URLs, so curl and our client address
/// the same object without hashing here.
const DOWNLOAD_KEY: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
const UPLOAD_KEY: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
const SECTION: &str = "## HTTP transfer";

struct Options {
    runs: usize,
    size: u64,
    write: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        runs: 3,
        size: 1 << 30,
        write: true,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => {
                o.runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or("--runs needs a positive number")?;
            }
            "--size" => {
                o.size = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or("--size needs a positive number of bytes")?;
            }
            "--no-write" => o.write = false,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (expected --runs N, --size BYTES, --no-write)"
                ))
            }
        }
    }
    Ok(o)
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// Runs `cmd` to completion, returning its wall time; fails with its stderr.
fn timed(cmd: &mut Command) -> Result<Duration, String> {
    let started = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(elapsed)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    let mid = times.len() / 2;
    if times.len() % 2 == 1 {
        times[mid]
    } else {
        (times[mid - 1] + times[mid]) / 2
    }
}

/// The server process; stopped (stdin closed, then killed) when dropped.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Row {
    what: String,
    ours: Duration,
    curl: Duration,
    ours_runs: Vec<Duration>,
    curl_runs: Vec<Duration>,
}

fn mib_s(size: u64, t: Duration) -> f64 {
    size as f64 / (1 << 20) as f64 / t.as_secs_f64()
}

/// Times `ours` and `curl` alternately: one warm-up each, then `runs` each.
fn compare(
    what: &str,
    runs: usize,
    ours: &dyn Fn() -> Command,
    curl: &dyn Fn() -> Command,
) -> Result<Row, String> {
    eprintln!("xtask: {what}: warm-up");
    timed(&mut ours())?;
    timed(&mut curl())?;
    let (mut o, mut c) = (Vec::new(), Vec::new());
    for i in 0..runs {
        if i % 2 == 0 {
            c.push(timed(&mut curl())?);
            o.push(timed(&mut ours())?);
        } else {
            o.push(timed(&mut ours())?);
            c.push(timed(&mut curl())?);
        }
        eprintln!(
            "xtask: {what}: run {}: cachew-rs {:.3} s, curl {:.3} s",
            i + 1,
            o[i].as_secs_f64(),
            c[i].as_secs_f64()
        );
    }
    Ok(Row {
        what: what.to_owned(),
        ours: median(o.clone()),
        curl: median(c.clone()),
        ours_runs: o,
        curl_runs: c,
    })
}

fn fmt_runs(runs: &[Duration]) -> String {
    runs.iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The 1-minute load average, as `/proc/loadavg` reports it.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

pub(crate) fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Replaces (or appends) the `## HTTP transfer` section of `file`, leaving
/// the other sections (owned by other benchmarks) as they are.
fn write_section(file: &Path, section: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(file).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    std::fs::write(file, replace_section(&old, section))
        .map_err(|e| format!("write {}: {e}", file.display()))
}

fn replace_section(old: &str, section: &str) -> String {
    let section = section.trim_end_matches('\n');
    let heading = format!("\n{SECTION}\n");
    let Some(at) = old.find(&heading) else {
        return format!("{}\n\n{section}\n", old.trim_end_matches('\n'));
    };
    let before = &old[..at + 1];
    let after_heading = at + heading.len();
    let rest = old[after_heading..]
        .find("\n## ")
        .map_or("", |i| &old[after_heading + i + 1..]);
    if rest.is_empty() {
        format!("{before}{section}\n")
    } else {
        format!("{before}{section}\n\n{rest}")
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    let root = crate::root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    crate::run(Command::new(&cargo).args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "cachew-tests",
        "--bin",
        "http-bench",
    ]))?;
    let target = target_dir(&root);
    let bench = target.join("release").join("http-bench");
    let work = target.join("bench-http");
    std::fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
    let file = work.join(format!("object-{}.bin", opts.size));
    if std::fs::metadata(&file).map(|m| m.len()).ok() != Some(opts.size) {
        eprintln!("xtask: writing {} bytes to {}", opts.size, file.display());
        timed(
            Command::new(&bench)
                .arg("gen")
                .arg(&file)
                .arg(opts.size.to_string()),
        )?;
    }
    let file_arg = file.to_string_lossy().into_owned();

    let mut child = Command::new(&bench)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start {}: {e}", bench.display()))?;
    let stdout = child.stdout.take().ok_or("no server stdout")?;
    let server = ServerProcess(child);
    let mut url = String::new();
    BufReader::new(stdout)
        .read_line(&mut url)
        .map_err(|e| format!("read the server URL: {e}"))?;
    let url = url.trim().to_owned();
    if !url.starts_with("http://") {
        return Err(format!("the server did not print its URL (got {url:?})"));
    }
    eprintln!("xtask: reference server at {url}");
    let download_url = format!("{url}/api/v1/object/default/{DOWNLOAD_KEY}");
    let upload_url = format!("{url}/api/v1/object/default/{UPLOAD_KEY}");
    timed(Command::new(&bench).args(["put", &url, DOWNLOAD_KEY, &file_arg]))?;

    let load_before = load_average();
    let download = compare(
        "download",
        opts.runs,
        &|| {
            let mut c = Command::new(&bench);
            c.args(["get", &url, DOWNLOAD_KEY]).stdout(Stdio::null());
            c
        },
        &|| {
            let mut c = Command::new("curl");
            c.args(["-sS", "--fail", "-o", "/dev/null", &download_url]);
            c
        },
    )?;
    let upload = compare(
        "upload",
        opts.runs,
        &|| {
            let mut c = Command::new(&bench);
            c.args(["put", &url, UPLOAD_KEY, &file_arg])
                .stdout(Stdio::null());
            c
        },
        &|| {
            let mut c = Command::new("curl");
            c.args([
                "-sS",
                "--fail",
                "-o",
                "/dev/null",
                "-H",
                "Expect:",
                "-X",
                "POST",
                "--upload-file",
                &file_arg,
                &upload_url,
            ]);
            c
        },
    )?;
    drop(server);

    let size = opts.size;
    let size_text = if size % (1 << 30) == 0 {
        format!("{} GiB", size >> 30)
    } else {
        format!("{size} bytes")
    };
    let mut table = String::new();
    table.push_str("| transfer | cachew-rs (median) | curl (median) | ratio (cachew-rs throughput / curl's) |\n");
    table.push_str("|---|---|---|---|\n");
    for row in [&download, &upload] {
        let ratio = row.curl.as_secs_f64() / row.ours.as_secs_f64();
        println!(
            "{} {size_text}: cachew-rs {:.3} s ({:.0} MiB/s), curl {:.3} s ({:.0} MiB/s), ratio {ratio:.2}",
            row.what,
            row.ours.as_secs_f64(),
            mib_s(size, row.ours),
            row.curl.as_secs_f64(),
            mib_s(size, row.curl),
        );
        table.push_str(&format!(
            "| {} {size_text} | {:.3} s ({:.0} MiB/s) | {:.3} s ({:.0} MiB/s) | **{ratio:.2}** |\n",
            row.what,
            row.ours.as_secs_f64(),
            mib_s(size, row.ours),
            row.curl.as_secs_f64(),
            mib_s(size, row.curl),
        ));
    }
    if !opts.write {
        return Ok(());
    }
    let mut runs_text = String::new();
    for row in [&download, &upload] {
        runs_text.push_str(&format!(
            "- {}: cachew-rs {} s; curl {} s\n",
            row.what,
            fmt_runs(&row.ours_runs),
            fmt_runs(&row.curl_runs)
        ));
    }
    let section = format!(
        "{SECTION}\n\n\
Command: `cargo xtask bench http --runs {runs}` (object of {size_text}, over loopback).\n\n\
It builds `cachew-tests`' `http-bench` binary in release mode, serves the object from\n\
the reference server (`cachew-server`, memory backend) in its own process, and times\n\
each transfer from process start to exit, alternating the order of the tools:\n\n\
- download: `http-bench get URL KEY` (the remote `Cache`, 64 KiB reads into nowhere)\n  \
against `curl -sS --fail -o /dev/null URL/api/v1/object/default/KEY`;\n\
- upload: `http-bench put URL KEY FILE` (the remote `Cache` writer, 64 KiB writes from a plain file read)\n  \
against `curl -sS --fail -o /dev/null -H 'Expect:' -X POST --upload-file FILE URL/api/v1/object/default/KEY`\n  \
(curl's `--data-binary @FILE` reads the whole file into memory first and curl 7.88\n  \
refuses that for 1 GiB with \"out of memory\"; `--upload-file` streams it).\n\n\
One untimed warm-up of each, then the median of {runs} runs. Target: ratio ≥ 0.9.\n\n\
{table}\n\
Runs (seconds):\n\n{runs_text}\n\
Machine: {cores} cores, Linux {kernel}, {curl}; measured {date}, load average\n\
before / after the runs: {load_before} / {load_after}. The server, the client and\n\
curl share the machine's cores, and other work on a shared build machine adds\n\
noise (single runs vary by 2x or more under load); compare the ratio of\n\
medians, not the absolute times.\n",
        runs = opts.runs,
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel = command_output("uname", &["-r"]),
        curl = command_output("curl", &["--version"])
            .lines()
            .next()
            .unwrap_or("curl")
            .split(" (")
            .next()
            .unwrap_or("curl")
            .to_owned(),
        date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        load_after = load_average(),
    );
    let docs = root.join("docs").join("benchmarks.md");
    write_section(&docs, &section)?;
    let _ = std::io::stdout().flush();
    eprintln!("xtask: wrote the {SECTION:?} section of {}", docs.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_http_section_changes() {
        let doc = "# Benchmarks\n\n## Archive\n\na\n\n## HTTP transfer\n\nold\n## Other\n\nb\n";
        let new = replace_section(doc, "## HTTP transfer\n\nnew\n");
        assert_eq!(
            new,
            "# Benchmarks\n\n## Archive\n\na\n\n## HTTP transfer\n\nnew\n\n## Other\n\nb\n"
        );
        let appended = replace_section(
            "# Benchmarks\n\n## Archive\n\na\n",
            "## HTTP transfer\n\nx\n",
        );
        assert_eq!(
            appended,
            "# Benchmarks\n\n## Archive\n\na\n\n## HTTP transfer\n\nx\n"
        );
        let last = replace_section(&appended, "## HTTP transfer\n\ny\n");
        assert_eq!(
            last,
            "# Benchmarks\n\n## Archive\n\na\n\n## HTTP transfer\n\ny\n"
        );
    }
}

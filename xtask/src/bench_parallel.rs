//! `cargo xtask bench parallel [--no-write]`: parallel ranged downloads
//! (`PROTOCOL.md` §6) against the reference server with a per-connection
//! rate limit of 20 MB/s: a 256 MiB object read as one plain GET and then
//! 8-way in 16 MiB chunks. It asserts at least 6x the single-stream rate
//! and a peak RSS within 2 x 8 x chunk + 32 MiB.
//!
//! The benchmark itself is the test `git_parallel_bench` of `cachew-tests`
//! (which runs a small, quick version in every `cargo test`); this command
//! runs it in release mode with `CACHEW_PARALLEL_BENCH=full`, prints its
//! report and, unless `--no-write`, puts it into the "## Parallel ranged
//! download" section of `docs/benchmarks.md` (other sections are left
//! alone).

use std::path::Path;
use std::process::Command;

const SECTION: &str = "## Parallel ranged download";
const COMMAND: &str = "cargo xtask bench parallel";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut write = true;
    for arg in args {
        match arg.as_str() {
            "--no-write" => write = false,
            other => return Err(format!("bench parallel: unknown argument {other:?}")),
        }
    }
    let root = crate::root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .env("CACHEW_PARALLEL_BENCH", "full")
        .args([
            "test",
            "--quiet",
            "--release",
            "--package",
            "cachew-tests",
            "--test",
            "git_parallel_bench",
            "--",
            "--nocapture",
            "--test-threads=1",
        ]);
    eprintln!("xtask: running {cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        return Err(format!("the parallel benchmark failed ({})", out.status));
    }
    let report: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("parallel bench:"))
        .take_while(|l| !l.starts_with("test "))
        .filter(|l| !l.trim().is_empty() && l.trim() != ".")
        .collect();
    if report.is_empty() {
        return Err("the benchmark printed no report".into());
    }
    if write {
        let section = format!(
            "{SECTION}\n\n\
             Command: `{COMMAND}` (release build; the test `git_parallel_bench` of \
             `cachew-tests` with `CACHEW_PARALLEL_BENCH=full`). The reference server \
             (a `DiskCache` behind it) limits what it sends on each connection with \
             `rate_limit_per_connection(20_000_000)`; the client reads through \
             `RemoteCache` with `parallel_reader` (the restore path) and hashes the \
             stream, then with `parallel_get` into a file. The peak RSS is the \
             whole test process (client, server and runtime), reset just before \
             the parallel read. The run asserts a speed-up of at least 6x and a \
             peak RSS within 2 x 8 x chunk + 32 MiB.\n\n\
             ```text\n{}\n```\n\n\
             Machine: {} cores; measured {}.\n\n",
            report.join("\n"),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            utc_now()
        );
        let file = root.join("docs/benchmarks.md");
        write_section(&file, &section)?;
        eprintln!("xtask: wrote the {SECTION:?} section of {}", file.display());
    }
    Ok(())
}

/// The current UTC time as `date -u` prints it (xtask has no date crate).
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "(unknown date)".to_owned())
}

/// Replaces this benchmark's section of `file` (or appends it), leaving the
/// other sections alone.
fn write_section(file: &Path, section: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(file).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let new = match old.find(&format!("\n{SECTION}\n")) {
        Some(at) => {
            let start = at + 1;
            let rest = &old[start + SECTION.len()..];
            let end = rest
                .find("\n## ")
                .map_or(old.len(), |i| start + SECTION.len() + i + 1);
            format!("{}{section}{}", &old[..start], &old[end..])
        }
        None => format!("{}\n{section}", old.trim_end_matches('\n')),
    };
    std::fs::write(file, new).map_err(|e| format!("write {}: {e}", file.display()))
}

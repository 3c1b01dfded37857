//! Project automation for cachew-rs: `cargo xtask <command>`.
//!
//! - `ci`: everything CI checks — formatting, clippy with `-D warnings`, the
//!   whole test suite (each crate alone, as `cargo test -p X`), docs with
//!   `-Dwarnings`, the layering check, tidy rules and the unused-dependency
//!   check. This is the project's one test command.
//! - `layering`: the dependency rules between crates (see `docs/ARCHITECTURE.md`).
//! - `tidy`: repository rules (crate docs, no `dbg!`/`todo!`).
//! - `udeps`: no declared dependency that no source uses.
//!
//! xtask has no dependencies beyond std so that it builds in seconds.

mod bench_archive;
mod bench_e2e;
mod bench_http;
mod bench_inplace;
mod bench_parallel;
mod bench_s3;
mod bench_serve;
mod conformance;
mod demo;
mod release;
mod tidy;
mod udeps;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("layering") => tidy::layering(&root()),
        Some("tidy") => tidy::tidy(&root()),
        Some("udeps") => udeps::check(&root()),
        Some("demo") => demo::run_demo(),
        Some("release") => release::release(),
        Some("bench") if args.get(1).map(String::as_str) == Some("e2e") => {
            bench_e2e::run_bench(&args[2..])
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("inplace") => {
            bench_inplace::run_bench(&args[2..])
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("archive") => {
            bench_archive::run(&args[2..])
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("http") => {
            bench_http::run(&args[2..])
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("serve") => {
            bench_serve::run(&args[2..])
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("s3") => bench_s3::run(&args[2..]),
        Some("bench") if args.get(1).map(String::as_str) == Some("parallel") => {
            bench_parallel::run(&args[2..])
        }
        Some("conformance") => conformance::run(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci          fmt, layering, tidy, udeps, clippy -D warnings, docs -Dwarnings,
              every crate's tests alone (cargo test -p X)
  layering    check the crate dependency rules (e.g. cachew-proto has no I/O crates)
  tidy        check repository rules (crate docs, no dbg!/todo!)
  udeps       fail on a dependency that a crate declares but no source names
  demo        build cachew, save and restore a directory on the embedded backend
  release     optimised, stripped cachew binary + SHA256SUMS under dist/
  conformance [--url URL] [--authorization V] [--backend memory|disk] [--filter TEXT]
              the shared Cache conformance suite through the remote client,
              against the reference server (default) or a live server
  bench http [--runs N] [--size BYTES] [--no-write]
              1 GiB download/upload, our client vs curl; writes docs/benchmarks.md
  bench serve [--seconds N] [--no-write]
              cachew serve vs nginx, 4 KiB and 64 MiB GETs at 1/8/64 connections
              (wrk); writes docs/benchmarks.md
  bench e2e [--runs N] [--level L] [--sets doc,lib] [--no-disk] [--no-rt] [--no-write]
              cachew save/restore vs the Go pipelines; writes docs/benchmarks.md
  bench inplace [--runs N] [--other DIR] [--no-rt] [--no-write]
              restore into a new vs an existing share/doc; writes docs/benchmarks.md
  bench archive [--runs N] [--no-write] [--frames]
              our tar+zstd against GNU tar/pzstd; writes docs/benchmarks.md
              (--frames: our zstd frame writer/reader against zstd and pzstd, printed only)
  bench s3 [--runs N] [--sets doc,lib] [--no-write]
              save/restore through S3 (SeaweedFS) vs the disk backend, and
              parallel ranged restores from S3; writes docs/benchmarks.md
  bench parallel [--no-write]
              256 MiB, 8-way ranged download vs one rate-limited stream; writes docs/benchmarks.md
";

/// The workspace root, found from this crate's manifest directory.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Runs a command in the workspace root, failing with its command line.
pub(crate) fn run(cmd: &mut Command) -> Result<(), String> {
    cmd.current_dir(root());
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// A command for `program`, run at real-time priority (`chrt -f 10`, SCHED_FIFO)
/// when `rt` is set, so that other work sharing the machine cannot preempt a
/// benchmark; the kernel's RT throttling still leaves 5% of the CPU to the rest.
pub(crate) fn maybe_realtime(program: impl AsRef<std::ffi::OsStr>, rt: bool) -> Command {
    if rt {
        let mut c = Command::new("chrt");
        c.args(["-f", "10"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Every workspace member with tests, in layer order; `ci` tests each alone.
const TESTED_CRATES: &[&str] = &[
    "cachew-proto",
    "cachew-archive",
    "cachew-transport",
    "cachew-client",
    "cachew-server",
    "cachew-cli",
    "cachew-objstore",
    "cachew-testkit",
    "cachew-tests",
    "xtask",
];

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn ci() -> Result<(), String> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    tidy::layering(&root())?;
    tidy::tidy(&root())?;
    udeps::check(&root())?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo()
        .args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-Dwarnings"))?;
    // Each crate alone, with its default features, as a user who depends
    // on one layer gets it: a test that only passes because another
    // crate's features were unified in would fail here.
    for krate in TESTED_CRATES {
        run_tests(cargo().args(["test", "--package", krate]))?;
    }
    // The portable directory reader (readdir, as on macOS and the BSDs)
    // on Linux, where the default build takes getdents64.
    run_tests(cargo().args([
        "test",
        "--package",
        "cachew-archive",
        "--features",
        "portable-dirs",
    ]))?;
    // What only the optional features compile (the transport's otel test,
    // the server's bench-only throttle).
    run_tests(cargo().args(["test", "--package", "cachew-transport", "--all-features"]))?;
    run_tests(cargo().args([
        "test",
        "--package",
        "cachew-server",
        "--features",
        "bench",
        "--lib",
        "throttle",
    ]))?;
    eprintln!("xtask: ci passed");
    Ok(())
}

/// Runs one `cargo test` and then checks that `/dev/null` is still the
/// character device: the suite runs as root, and a test that unlinks or
/// renames over it (once seen on this machine, culprit unknown) breaks
/// every later test that runs git with `GIT_CONFIG_GLOBAL=/dev/null`, far
/// from the cause. Failing here names the test run that did it.
fn run_tests(cmd: &mut Command) -> Result<(), String> {
    let what = format!("{cmd:?}");
    run(cmd)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        let ok = std::fs::symlink_metadata("/dev/null")
            .map(|m| m.file_type().is_char_device())
            .unwrap_or(false);
        if !ok {
            return Err(format!(
                "/dev/null is no longer a character device after {what}: one of its tests \
                 removed or replaced it (restore it with `mknod -m 666 /dev/null c 1 3`)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ci` tests every workspace member: a new crate must be added to
    /// [`TESTED_CRATES`].
    #[test]
    fn every_member_is_tested() {
        let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
        let start = manifest.find("members = [").unwrap();
        let end = start + manifest[start..].find(']').unwrap();
        let mut members: Vec<String> = manifest[start..end]
            .split('"')
            .skip(1)
            .step_by(2)
            .map(|dir| {
                let m = std::fs::read_to_string(root().join(dir).join("Cargo.toml")).unwrap();
                let line = m.lines().find(|l| l.starts_with("name = ")).unwrap();
                line.trim_start_matches("name = ")
                    .trim_matches('"')
                    .to_owned()
            })
            .collect();
        members.sort();
        let mut tested: Vec<String> = TESTED_CRATES.iter().map(|s| s.to_string()).collect();
        tested.sort();
        assert_eq!(members, tested);
    }
}

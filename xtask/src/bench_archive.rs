//! `cargo xtask bench archive [--runs N]`: our in-process tar+zstd against
//! the GNU pipelines, side by side in one run, on the toolchain's
//! `share/doc` (many small files) and `lib` (few large files).
//!
//! Writes the results into the `## Archive` section of `docs/benchmarks.md`.
//! Needs GNU `tar`, `zstd`, `pzstd` and `/usr/bin/time` on the machine.
//!
//! `--frames` runs the frame-level comparison instead (the `bench-frames`
//! example: `FrameWriter`/`FrameReader` against the zstd crate's
//! multithreading, `pzstd` and `zstd`) on tars of the same two trees, and
//! only prints it.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::root;

struct Sample {
    secs: f64,
    /// User plus system CPU time of all processes involved.
    cpu: f64,
    max_rss_kib: u64,
}

fn sh(script: &str) -> Result<String, String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .map_err(|e| format!("could not run `{script}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{script}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `script` under `/usr/bin/time`, returning wall time and the largest
/// resident set of any single process involved.
fn timed(script: &str, scratch: &Path, rt: bool) -> Result<Sample, String> {
    let out = scratch.join("time.out");
    // With `rt`, both sides run at real-time priority (see `maybe_realtime`).
    let mut cmd = crate::maybe_realtime("/usr/bin/time", rt);
    let status = cmd
        .arg("-f")
        .arg("%e %M %U %S")
        .arg("-o")
        .arg(&out)
        .arg("sh")
        .arg("-c")
        .arg(script)
        .status()
        .map_err(|e| format!("could not run /usr/bin/time: {e}"))?;
    if !status.success() {
        return Err(format!("`{script}` failed with {status}"));
    }
    let text = fs::read_to_string(&out).map_err(|e| e.to_string())?;
    let last = text.lines().last().unwrap_or("");
    let mut it = last.split_whitespace();
    let secs = it
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("bad time output")?;
    let max_rss_kib = it
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("bad time output")?;
    let mut cpu = 0.0;
    for _ in 0..2 {
        cpu += it
            .next()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or("bad time output")?;
    }
    Ok(Sample {
        secs,
        cpu,
        max_rss_kib,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct Row {
    what: String,
    ours: Vec<Sample>,
    gnu: Vec<Sample>,
}

impl Row {
    fn line(&self) -> String {
        let o = median(self.ours.iter().map(|s| s.secs).collect());
        let g = median(self.gnu.iter().map(|s| s.secs).collect());
        let ocpu = median(self.ours.iter().map(|s| s.cpu).collect());
        let gcpu = median(self.gnu.iter().map(|s| s.cpu).collect());
        let orss = self.ours.iter().map(|s| s.max_rss_kib).max().unwrap_or(0);
        let grss = self.gnu.iter().map(|s| s.max_rss_kib).max().unwrap_or(0);
        let all = |v: &[Sample]| {
            v.iter()
                .map(|s| format!("{:.2}", s.secs))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "| {} | {o:.2} s | {g:.2} s | **{:.2}×** | {ocpu:.2} s | {gcpu:.2} s | {:.1} MiB | {:.1} MiB | {} / {} |",
            self.what,
            g / o,
            orss as f64 / 1024.0,
            grss as f64 / 1024.0,
            all(&self.ours),
            all(&self.gnu),
        )
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut runs = 5usize;
    let mut write_doc = true;
    let mut rt = sh("id -u")? == "0" && sh("command -v chrt").is_ok();
    let mut frames = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                runs = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--runs needs a number")?
            }
            "--no-write" => write_doc = false,
            "--no-rt" => rt = false,
            "--frames" => frames = true,
            other => return Err(format!("unknown bench archive option {other:?}")),
        }
    }
    if frames {
        return bench_frames();
    }
    let root = root();
    crate::run(crate::cargo().args([
        "build",
        "--release",
        "-p",
        "cachew-archive",
        "--example",
        "cachew-tar",
    ]))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let ours = target_dir.join("release/examples/cachew-tar");
    let ours = ours.display();
    let sysroot = sh("rustc --print sysroot")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let scratch = PathBuf::from("/dev/shm/cachew-bench-archive");
    let disk_scratch = target_dir.join("bench-archive");
    for d in [&scratch, &disk_scratch] {
        let _ = fs::remove_dir_all(d);
        fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    let s = scratch.display();
    let load_before = loadavg();
    let mut rows: Vec<(String, Row)> = Vec::new();
    let mut sizes = String::new();

    for (label, base, include) in [
        ("share/doc", format!("{sysroot}/share"), "doc"),
        ("lib", sysroot.clone(), "lib"),
    ] {
        let files = sh(&format!("find '{base}/{include}' -type f | wc -l"))?;
        let bytes = sh(&format!("du -sb '{base}/{include}' | cut -f1"))?;
        // Warm the page cache so both sides read from memory.
        sh(&format!(
            "tar -cf - -C '{base}' {include} | cat > /dev/null"
        ))?;

        // Sizes at the same level.
        sh(&format!(
            "'{ours}' c '{base}' {s}/ours.tzst --level 3 -- {include} 2>/dev/null"
        ))?;
        sh(&format!(
            "tar -cpf - -C '{base}' {include} | pzstd -p {cores} -3 -q -c > {s}/gnu.tzst"
        ))?;
        let osize: u64 = sh(&format!("stat -c %s {s}/ours.tzst"))?
            .parse()
            .map_err(|_| "stat")?;
        let gsize: u64 = sh(&format!("stat -c %s {s}/gnu.tzst"))?
            .parse()
            .map_err(|_| "stat")?;
        let _ = writeln!(
            sizes,
            "| {label} | {files} files, {:.0} MiB | {osize} | {gsize} | {:+.2}% |",
            bytes.parse::<f64>().unwrap_or(0.0) / 1048576.0,
            (osize as f64 / gsize as f64 - 1.0) * 100.0
        );

        let mut arch = Row {
            what: format!("archive {label} → /dev/null"),
            ours: vec![],
            gnu: vec![],
        };
        let mut ext = Row {
            what: format!("extract {label} → /dev/shm"),
            ours: vec![],
            gnu: vec![],
        };
        let mut disk = Row {
            what: format!("extract {label} → disk"),
            ours: vec![],
            gnu: vec![],
        };
        let xdir = format!("{s}/x");
        let ddir = format!("{}/x", disk_scratch.display());
        for i in 0..runs {
            eprintln!("xtask: bench archive {label}: run {}/{runs}", i + 1);
            // Alternate which side goes first so drifting load hits both alike.
            let order = if i % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for ours_turn in order {
                if ours_turn {
                    arch.ours.push(timed(
                        &format!("'{ours}' c '{base}' /dev/null -- {include} 2>/dev/null"),
                        &scratch,
                        rt,
                    )?);
                } else {
                    arch.gnu.push(timed(
                        &format!("tar -cpf - -C '{base}' {include} | pzstd -p {cores} -3 -q -c > /dev/null"),
                        &scratch,
                        rt,
                    )?);
                }
            }
            for (row, dir) in [(&mut ext, &xdir), (&mut disk, &ddir)] {
                if dir == &ddir && i >= runs.min(2) {
                    continue; // Fewer disk runs: they are slow and noisy anyway.
                }
                for ours_turn in order {
                    sh(&format!("rm -rf '{dir}' && mkdir -p '{dir}' && sync"))?;
                    if ours_turn {
                        row.ours.push(timed(
                            &format!("'{ours}' x {s}/gnu.tzst '{dir}' 2>/dev/null"),
                            &scratch,
                            rt,
                        )?);
                    } else {
                        row.gnu.push(timed(
                            &format!("zstd -dc {s}/gnu.tzst | tar -xpf - -C '{dir}'"),
                            &scratch,
                            rt,
                        )?);
                    }
                }
            }
        }
        sh(&format!("rm -rf '{xdir}' '{ddir}'"))?;
        rows.push((label.to_string(), arch));
        rows.push((label.to_string(), ext));
        rows.push((label.to_string(), disk));
    }
    let load_after = loadavg();
    let _ = fs::remove_dir_all(&scratch);
    let _ = fs::remove_dir_all(&disk_scratch);

    let disk_runs = runs.min(2);
    let priority = if rt {
        "both sides ran at real-time priority (`chrt -f 10`) so that the other builds could not \
         preempt them (`--no-rt` turns this off)"
    } else {
        "both sides ran at normal priority, so the other load shows in the times"
    };
    let mut md = String::new();
    let _ = writeln!(md, "## Archive\n");
    let _ = writeln!(
        md,
        "Reproduce with `cargo xtask bench archive --runs {runs}` \
         (builds `cachew-archive`'s `cachew-tar` example in release mode). Ours is that example \
         (`cachew_archive::archive` / `extract`, level 3, all cores); GNU is \
         `tar -cpf - | pzstd -p {cores} -3` and `zstd -dc | tar -xpf -`. Both extract the same \
         pzstd-written archive. Times are medians of {runs} runs (the disk rows of {disk_runs}), \
         sides alternating; CPU is the median user + system time of all processes; RSS is the \
         largest single process (GNU pipelines have two). \
         Machine: {cores} cores; load average {load_before} before and {load_after} after the run \
         (other builds share the machine); {priority}.\n"
    );
    let _ = writeln!(
        md,
        "| case | ours | GNU | speed-up (GNU time / ours) | ours CPU | GNU CPU | ours max RSS | GNU max RSS | all runs, s (ours / GNU) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for (_, r) in &rows {
        let _ = writeln!(md, "{}", r.line());
    }
    let _ = writeln!(md, "\nCompressed size at level 3:\n");
    let _ = writeln!(
        md,
        "| tree | input | ours (bytes) | pzstd (bytes) | ours vs pzstd |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    md.push_str(&sizes);
    println!("{md}");
    if write_doc {
        write_section(&root.join("docs/benchmarks.md"), &md)?;
        eprintln!("xtask: wrote the Archive section of docs/benchmarks.md");
    }
    Ok(())
}

/// `--frames`: tars the toolchain's `share/doc` and `lib` into `/dev/shm`
/// and runs the `bench-frames` example (release, `bench` feature) on them.
fn bench_frames() -> Result<(), String> {
    let sysroot = sh("rustc --print sysroot")?;
    let scratch = PathBuf::from("/dev/shm/cachew-bench-frames");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| format!("create {}: {e}", scratch.display()))?;
    let s = scratch.display();
    sh(&format!("tar -cf {s}/doc.tar -C '{sysroot}/share' doc"))?;
    sh(&format!("tar -cf {s}/lib.tar -C '{sysroot}' lib"))?;
    let result = crate::run(crate::cargo().args([
        "run",
        "--release",
        "-p",
        "cachew-archive",
        "--features",
        "bench",
        "--example",
        "bench-frames",
        "--",
        &s.to_string(),
        &format!("{s}/doc.tar"),
        &format!("{s}/lib.tar"),
    ]));
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// Replaces (or appends) the generated part of the `## Archive` section,
/// keeping any hand-written notes after the `<!-- notes -->` marker.
fn write_section(path: &Path, generated: &str) -> Result<(), String> {
    let old = fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    let (before, section, after) = match old.find("\n## Archive\n") {
        Some(start) => {
            let body_start = start + 1;
            let end = old[body_start + 3..]
                .find("\n## ")
                .map_or(old.len(), |e| body_start + 3 + e + 1);
            (&old[..body_start], &old[body_start..end], &old[end..])
        }
        None => (old.as_str(), "", ""),
    };
    let notes = section
        .find("<!-- notes -->")
        .map_or("<!-- notes -->\n", |i| &section[i..]);
    let mut new = before.to_string();
    if !new.ends_with("\n\n") {
        new.push('\n');
    }
    new.push_str(generated);
    new.push('\n');
    new.push_str(notes);
    if !after.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(after);
    fs::write(path, new).map_err(|e| format!("write {}: {e}", path.display()))
}

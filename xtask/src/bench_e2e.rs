//! `cargo xtask bench e2e`: `cachew save` / `cachew restore` against the
//! reference server over loopback, side by side with the Go client's
//! pipelines at the same zstd level:
//!
//! - save: `tar -cpf - -C DIR . | pzstd -p2 -3 | curl --data-binary @- URL`
//! - restore: `curl URL | zstd -dc | tar -xpf - -C DEST`
//!
//! on two real data sets: `$(rustc --print sysroot)/share/doc` (tens of
//! thousands of small files) and `$(rustc --print sysroot)/lib` (few large
//! files). The server (`cachew serve`, disk backend) keeps its objects in
//! `/dev/shm`; restores go to `/dev/shm` for the ratios (the disk here is
//! too noisy) and, as a side note, to the disk (one run after a warm-up). Each measurement is the
//! median of `--runs` runs after a warm-up; peak RSS is GNU time's maximum
//! resident set size (for a pipeline: its largest process).
//!
//! Writes the `## End to end (save/restore)` section of `docs/benchmarks.md`
//! unless `--no-write`.

use std::fmt::Write as _;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::demo::target_dir;
use crate::{cargo, root, run};

const SECTION: &str = "## End to end (save/restore)";

struct Opts {
    runs: usize,
    level: i32,
    write: bool,
    sets: Vec<String>,
    disk: bool,
    rt: bool,
    load_before: String,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        runs: 3,
        level: 3,
        write: true,
        sets: vec!["doc".into(), "lib".into()],
        disk: true,
        rt: true,
        load_before: loadavg(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => o.runs = next_num(&mut it, "--runs")?,
            "--level" => o.level = next_num(&mut it, "--level")?,
            "--no-write" => o.write = false,
            "--no-disk" => o.disk = false,
            "--no-rt" => o.rt = false,
            "--sets" => {
                let v = it.next().ok_or("--sets needs a value (doc,lib)")?;
                o.sets = v.split(',').map(str::to_owned).collect();
            }
            other => return Err(format!("bench e2e: unknown argument {other:?}")),
        }
    }
    if o.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(o)
}

fn next_num<T: std::str::FromStr>(
    it: &mut std::slice::Iter<'_, String>,
    flag: &str,
) -> Result<T, String> {
    it.next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{flag} needs a number"))
}

/// One timed command: wall time and peak RSS in KiB.
#[derive(Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) secs: f64,
    /// User + system CPU seconds (for a pipeline: all its processes).
    pub(crate) cpu: f64,
    pub(crate) rss_kib: u64,
}

/// Median wall time, median CPU time, maximum peak RSS.
pub(crate) fn median(samples: &mut [Sample]) -> Sample {
    samples.sort_by(|a, b| a.cpu.total_cmp(&b.cpu));
    let cpu = samples[samples.len() / 2].cpu;
    samples.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    Sample {
        secs: samples[samples.len() / 2].secs,
        cpu,
        rss_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
    }
}

/// Runs `argv` under GNU time, returning wall time and peak RSS.
pub(crate) fn timed(argv: &[&str], scratch: &Path, rt: bool) -> Result<Sample, String> {
    let rss_file = scratch.join("rss.txt");
    let start = Instant::now();
    let mut cmd = crate::maybe_realtime("/usr/bin/time", rt);
    let status = cmd
        .args(["-f", "%M %U %S", "-o"])
        .arg(&rss_file)
        .args(argv)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("run {argv:?}: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("{argv:?} failed with {status}"));
    }
    let text = fs::read_to_string(&rss_file).unwrap_or_default();
    let fields: Vec<&str> = text
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(Sample {
        secs,
        cpu: num(1) + num(2),
        rss_kib: num(0) as u64,
    })
}

pub(crate) fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub(crate) fn sh(script: &str) -> Vec<String> {
    vec![
        "bash".into(),
        "-e".into(),
        "-o".into(),
        "pipefail".into(),
        "-c".into(),
        script.into(),
    ]
}

pub(crate) fn remove(path: &Path) -> Result<(), String> {
    if path.exists() {
        fs::remove_dir_all(path).map_err(|e| format!("remove {}: {e}", path.display()))?;
    }
    Ok(())
}

pub(crate) struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_server(bin: &Path, dir: &Path, rt: bool) -> Result<(Server, String), String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("pick a port: {e}"))?
        .port();
    let bind = format!("127.0.0.1:{port}");
    let mut cmd = crate::maybe_realtime(bin, rt);
    let child = cmd
        .args(["serve", "--dir"])
        .arg(dir)
        .args(["--bind", &bind])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start cachew serve: {e}"))?;
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&bind).is_err() {
        if Instant::now() > deadline {
            return Err("cachew serve did not start listening".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((server, format!("http://{bind}")))
}

fn tree_stats(dir: &Path) -> (u64, u64) {
    fn walk(dir: &Path, acc: &mut (u64, u64)) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for ent in rd.flatten() {
            let Ok(meta) = ent.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                walk(&ent.path(), acc);
            } else {
                acc.0 += 1;
                acc.1 += meta.len();
            }
        }
    }
    let mut acc = (0, 0);
    walk(dir, &mut acc);
    acc
}

struct Row {
    set: String,
    op: &'static str,
    target: &'static str,
    go: Sample,
    rs: Sample,
}

pub(crate) fn run_bench(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    run(cargo().args(["build", "--release", "-p", "cachew-cli", "--bin", "cachew"]))?;
    let bin = target_dir().join("release/cachew");
    let bin_s = bin.to_str().ok_or("non-UTF-8 target dir")?.to_owned();
    let mut tools = vec!["tar", "pzstd", "zstd", "curl", "/usr/bin/time"];
    if opts.rt {
        tools.push("chrt");
    }
    for tool in tools {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("bench e2e needs {tool}"));
        }
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustc --print sysroot: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());

    let shm = PathBuf::from(format!("/dev/shm/cachew-bench-e2e-{}", std::process::id()));
    let disk = target_dir().join(format!("bench-e2e-{}", std::process::id()));
    remove(&shm)?;
    fs::create_dir_all(shm.join("srv")).map_err(|e| format!("create {}: {e}", shm.display()))?;
    fs::create_dir_all(&disk).map_err(|e| format!("create {}: {e}", disk.display()))?;
    let result = bench(&opts, &bin_s, &sysroot, &shm, &disk);
    let _ = remove(&shm);
    // Deleting the disk trees takes minutes on this disk: leave it to a
    // background `rm` rather than keep the user waiting.
    eprintln!("xtask: removing {} in the background", disk.display());
    let _ = Command::new("rm")
        .arg("-rf")
        .arg(&disk)
        .stdin(Stdio::null())
        .spawn();
    let (rows, sets) = result?;

    let md = render(&opts, &rows, &sets);
    print!("{md}");
    if opts.write {
        write_section(&root().join("docs/benchmarks.md"), &md)?;
        eprintln!("xtask: wrote the end-to-end section of docs/benchmarks.md");
    }
    Ok(())
}

type SetInfo = (String, PathBuf, u64, u64);

fn bench(
    opts: &Opts,
    bin: &str,
    sysroot: &Path,
    shm: &Path,
    disk: &Path,
) -> Result<(Vec<Row>, Vec<SetInfo>), String> {
    let (_server, url) = start_server(Path::new(bin), &shm.join("srv"), opts.rt)?;
    let level = opts.level.to_string();
    let mut rows = Vec::new();
    let mut sets = Vec::new();
    for set in &opts.sets {
        let src = match set.as_str() {
            "doc" => sysroot.join("share/doc"),
            "lib" => sysroot.join("lib"),
            other => return Err(format!("unknown data set {other:?} (doc, lib)")),
        };
        let (files, bytes) = tree_stats(&src);
        sets.push((set.clone(), src.clone(), files, bytes));
        let src_s = src.to_str().ok_or("non-UTF-8 sysroot")?;
        let go_key = format!("go-{set}");
        let rs_key = format!("rs-{set}");
        let go_url = format!("{url}/api/v1/object/bench/{}", key_hex(&go_key));
        let go_save = sh(&format!(
            "tar -cpf - -C '{src_s}' . | pzstd -q -p2 -{level} | \
             curl -sSf -X POST -H 'Content-Type: application/zstd' --data-binary @- '{go_url}'"
        ));
        let rs_save: Vec<String> = [
            bin,
            "--url",
            &url,
            "--quiet",
            "save",
            "bench",
            src_s,
            "--key",
            &rs_key,
            "--zstd-level",
            &level,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut rs_fast = rs_save.clone();
        rs_fast.push("--no-digest".into());

        eprintln!(
            "xtask: {set}: {files} files, {:.0} MiB; warming up",
            bytes as f64 / 1048576.0
        );
        timed(&refs(&go_save), shm, opts.rt)?;
        timed(&refs(&rs_save), shm, opts.rt)?;
        let (mut go, mut rs, mut fast) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..opts.runs {
            // Alternate the order so neither side always runs second.
            if i % 2 == 0 {
                go.push(timed(&refs(&go_save), shm, opts.rt)?);
                rs.push(timed(&refs(&rs_save), shm, opts.rt)?);
                fast.push(timed(&refs(&rs_fast), shm, opts.rt)?);
            } else {
                fast.push(timed(&refs(&rs_fast), shm, opts.rt)?);
                rs.push(timed(&refs(&rs_save), shm, opts.rt)?);
                go.push(timed(&refs(&go_save), shm, opts.rt)?);
            }
        }
        let go = median(&mut go);
        rows.push(Row {
            set: set.clone(),
            op: "save",
            target: "-",
            go,
            rs: median(&mut rs),
        });
        rows.push(Row {
            set: set.clone(),
            op: "save --no-digest",
            target: "-",
            go,
            rs: median(&mut fast),
        });
        eprintln!(
            "xtask: {set} save: go {:.2}s, cachew {:.2}s",
            rows.last().map_or(0.0, |r| r.go.secs),
            rows.last().map_or(0.0, |r| r.rs.secs)
        );

        let mut targets: Vec<(&'static str, PathBuf)> = vec![("/dev/shm", shm.to_path_buf())];
        if opts.disk {
            targets.push(("disk", disk.to_path_buf()));
        }
        for (label, base) in targets {
            let (mut go, mut rs) = (Vec::new(), Vec::new());
            // The disk run is a side note (one run after a warm-up): each
            // run leaves two trees that are slow to delete on this disk.
            let runs = if label == "disk" { 1 } else { opts.runs };
            for i in 0..runs + 1 {
                // A fresh directory per run: deleting tens of thousands of
                // files between runs is very slow on this disk (mounted
                // with `discard`), so disk trees are removed once at the end.
                let go_dest = base.join(format!("go-{set}-{i}"));
                let rs_dest = base.join(format!("rs-{set}-{i}"));
                let go_dest_s = go_dest.to_str().ok_or("non-UTF-8 path")?.to_owned();
                let go_restore = sh(&format!(
                    "mkdir -p '{go_dest_s}' && curl -sSf '{go_url}' | zstd -q -dc | tar -xpf - -C '{go_dest_s}'"
                ));
                let rs_restore: Vec<String> = [
                    bin,
                    "--url",
                    &url,
                    "--quiet",
                    "restore",
                    "bench",
                    rs_dest.to_str().ok_or("non-UTF-8 path")?,
                    "--key",
                    &rs_key,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if label == "disk" {
                    let _ = Command::new("sync").status();
                } else if i > 0 {
                    // On tmpfs every restored tree stays in memory: keeping
                    // them all (16 × share/doc) put the machine under memory
                    // pressure and made later runs of either side slow at
                    // random. Removing a tree from tmpfs is fast; untimed.
                    remove(&base.join(format!("go-{set}-{}", i - 1)))?;
                    remove(&base.join(format!("rs-{set}-{}", i - 1)))?;
                }
                let (g, r) = if i % 2 == 0 {
                    let g = timed(&refs(&go_restore), shm, opts.rt)?;
                    if label == "disk" {
                        let _ = Command::new("sync").status();
                    }
                    (g, timed(&refs(&rs_restore), shm, opts.rt)?)
                } else {
                    let r = timed(&refs(&rs_restore), shm, opts.rt)?;
                    if label == "disk" {
                        let _ = Command::new("sync").status();
                    }
                    (timed(&refs(&go_restore), shm, opts.rt)?, r)
                };
                // The first run is the warm-up.
                if i > 0 {
                    go.push(g);
                    rs.push(r);
                }
            }
            if label == "/dev/shm" {
                for i in 0..runs + 1 {
                    remove(&base.join(format!("go-{set}-{i}")))?;
                    remove(&base.join(format!("rs-{set}-{i}")))?;
                }
            }
            rows.push(Row {
                set: set.clone(),
                op: "restore",
                target: label,
                go: median(&mut go),
                rs: median(&mut rs),
            });
            eprintln!(
                "xtask: {set} restore ({label}): go {:.2}s, cachew {:.2}s",
                rows.last().map_or(0.0, |r| r.go.secs),
                rows.last().map_or(0.0, |r| r.rs.secs)
            );
        }
    }
    Ok((rows, sets))
}

/// Key text to hex, as `Key::parse` does for non-hex text (SHA-256): uses
/// `sha256sum` so xtask stays dependency-free.
pub(crate) fn key_hex(text: &str) -> String {
    let out = Command::new("bash")
        .args(["-c", &format!("printf %s '{text}' | sha256sum")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace().next().unwrap_or_default().to_owned()
}

fn render(opts: &Opts, rows: &[Row], sets: &[SetInfo]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{SECTION}\n");
    let _ = writeln!(
        md,
        "`cachew save` / `cachew restore` (release build) against `cachew serve` \
         (disk backend in `/dev/shm`) over loopback, next to the Go client's \
         pipelines, zstd level {} on both sides, median of {} runs after a warm-up \
         (restores into the disk: one run after a warm-up). \
         Ratio = Go pipeline time / cachew time (higher is better for cachew); \
         CPU = user + system seconds of the client side (for a pipeline, all of \
         its processes; the server is not counted), a steadier measure when \
         the machine is shared. {} \
         Peak RSS is GNU time's maximum resident set size (for a pipeline, its \
         largest process; `curl --data-binary @-` holds the whole upload in memory).\n",
        opts.level,
        opts.runs,
        if opts.rt {
            "Every timed command and the server ran at real-time priority \
             (`chrt -f 10`) so that other builds on the machine could not preempt \
             them (`--no-rt` turns this off)."
        } else {
            "Normal scheduling priority (`--no-rt`)."
        }
    );
    let _ = writeln!(
        md,
        "Command: `cargo xtask bench e2e --runs {}{}`\n",
        opts.runs,
        if opts.rt { "" } else { " --no-rt" }
    );
    let _ = writeln!(
        md,
        "Machine: {} cores, {}; load average before/after: {} / {} (other jobs \
         share this machine, so wall times are noisy).\n",
        cores(),
        uname(),
        opts.load_before,
        loadavg()
    );
    let _ = writeln!(md, "| data set | files | size |");
    let _ = writeln!(md, "|---|---:|---:|");
    for (name, path, files, bytes) in sets {
        let _ = writeln!(
            md,
            "| {name} (`{}`) | {files} | {:.0} MiB |",
            path.display(),
            *bytes as f64 / 1048576.0
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| data set | operation | restore into | Go pipeline | cachew | ratio | Go CPU | cachew CPU | CPU ratio | Go peak RSS | cachew peak RSS |"
    );
    let _ = writeln!(md, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} s | {:.2} s | **{:.2}×** | {:.2} s | {:.2} s | {:.2}× | {:.0} MiB | {:.0} MiB |",
            r.set,
            r.op,
            r.target,
            r.go.secs,
            r.rs.secs,
            r.go.secs / r.rs.secs.max(1e-9),
            r.go.cpu,
            r.rs.cpu,
            r.go.cpu / r.rs.cpu.max(1e-9),
            r.go.rss_kib as f64 / 1024.0,
            r.rs.rss_kib as f64 / 1024.0,
        );
    }
    let _ = writeln!(
        md,
        "\nSave pipelines: `tar -cpf - -C DIR . | pzstd -p2 -{lvl} | curl --data-binary @- URL` \
         vs `cachew save NS DIR --key K --zstd-level {lvl}`, which also computes the blake3 \
         tree digest in the same pass (file contents are hashed as they are read; the digest \
         travels as a trailer frame at the end of the archive); \
         `save --no-digest` skips it. Restore pipelines: `curl URL | zstd -dc | tar -xpf - -C DEST` vs \
         `cachew restore NS DEST --key K` (staged beside DEST, renamed into place).\n",
        lvl = opts.level
    );
    let _ = writeln!(
        md,
        "Where the time goes (`perf record -e cpu-clock` of `cachew save` of share/doc, \
         1.86 CPU-s): half is zstd compression on the two worker threads (with each \
         frame's checksum, as pzstd writes), 29% is the kernel (`openat`, `fstat`, \
         `read`, `close` per file, and the copy out of the page cache), 13% is the \
         digest's blake3 hashing of the 705 MB of file contents (about 0.24 CPU-s), \
         and 4% the copy of small files from the readers' buffers into the \
         compressor's chunks. On 2 cores the save is CPU-bound, so the hashing is \
         what `save --no-digest` gains (the object then cannot serve \
         `--skip-unchanged` or `restore --verify`).\n"
    );
    md
}

pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn uname() -> String {
    Command::new("uname")
        .args(["-srm"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown OS".into())
}

/// Replaces (or appends) this bench's section of `docs/benchmarks.md`,
/// leaving every other section alone.
fn write_section(path: &Path, generated: &str) -> Result<(), String> {
    let old = fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let new = match old.find(&format!("\n{SECTION}\n")) {
        Some(start) => {
            let start = start + 1;
            let rest = &old[start + SECTION.len()..];
            let end = rest
                .find("\n## ")
                .map_or(old.len(), |i| start + SECTION.len() + i + 1);
            format!("{}{}{}", &old[..start], generated, &old[end..])
        }
        None => format!(
            "{}\n{}",
            old.trim_end_matches('\n').to_owned() + "\n",
            generated
        ),
    };
    fs::write(path, new).map_err(|e| format!("write {}: {e}", path.display()))
}

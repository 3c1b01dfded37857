//! `cargo xtask bench s3`: `cachew save` / `cachew restore` of
//! `$(rustc --print sysroot)/share/doc` and `.../lib` through the
//! object-store backend (`--url s3://…`, SeaweedFS's `weed server -s3` on
//! loopback, started by the `s3-server` helper of `cachew-tests`) against
//! the disk backend (`--url /dev/shm/…`), and restores from S3 with one
//! stream against parallel ranged downloads (`--download-concurrency`).
//! Everything (the S3 server's volumes, the disk cache, the restores) is in
//! `/dev/shm`. Each figure is the median of `--runs` runs after one
//! warm-up.
//!
//! Writes the `## Object storage (S3)` section of `docs/benchmarks.md`
//! unless `--no-write`.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::demo::target_dir;
use crate::{cargo, root};

const SECTION: &str = "## Object storage (S3)";

/// Environment variables for a child.
type Env = Vec<(String, String)>;

struct Opts {
    runs: usize,
    write: bool,
    sets: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        runs: 3,
        write: true,
        sets: vec!["doc".into(), "lib".into()],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                o.runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--runs needs a number of at least 1")?
            }
            "--no-write" => o.write = false,
            "--sets" => {
                let v = it.next().ok_or("--sets needs a value (doc,lib)")?;
                o.sets = v.split(',').map(str::to_owned).collect();
            }
            other => return Err(format!("bench s3: unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// The S3 server helper; killed (its stdin closed) on drop.
struct S3 {
    child: Child,
    env: Vec<(String, String)>,
    bucket: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn start_s3(helper: &Path, shm: &Path) -> Result<S3, String> {
    let mut child = Command::new(helper)
        .env("TMPDIR", shm)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start {}: {e}", helper.display()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("read the S3 server's address: {e}"))?;
    let (endpoint, bucket) = line
        .trim()
        .split_once(' ')
        .ok_or_else(|| format!("the S3 server did not start (said {line:?})"))?;
    let env = vec![
        ("AWS_ACCESS_KEY_ID".into(), "cachewtest".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "cachewtestsecret".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_ENDPOINT_URL".into(), endpoint.to_owned()),
    ];
    Ok(S3 {
        bucket: bucket.to_owned(),
        env,
        child,
    })
}

/// Runs `cachew ARGS` with `env`, returning the wall time in seconds.
fn timed(bin: &Path, url: &str, env: &[(String, String)], args: &[&str]) -> Result<f64, String> {
    let start = Instant::now();
    let out = Command::new(bin)
        .env("CACHEW_URL", url)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("run cachew {args:?}: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "cachew {args:?} on {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(secs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn tree_bytes(dir: &Path) -> (u64, u64) {
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
    files: u64,
    bytes: u64,
    cells: Vec<(String, f64)>,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    run_cargo()?;
    let bin = target_dir().join("release/cachew");
    let helper = target_dir().join("release/s3-server");
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustc --print sysroot: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let shm = PathBuf::from(format!("/dev/shm/cachew-bench-s3-{}", std::process::id()));
    fs::create_dir_all(&shm).map_err(|e| format!("create {}: {e}", shm.display()))?;
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let result = bench(&opts, &bin, &helper, &sysroot, &shm);
    let _ = fs::remove_dir_all(&shm);
    let rows = result?;
    let md = render(&opts, &rows, &load);
    print!("{md}");
    if opts.write {
        write_section(&root().join("docs/benchmarks.md"), &md)?;
        eprintln!("xtask: wrote the S3 section of docs/benchmarks.md");
    }
    Ok(())
}

fn run_cargo() -> Result<(), String> {
    crate::run(cargo().args(["build", "--release", "-p", "cachew-cli", "--bin", "cachew"]))?;
    crate::run(cargo().args([
        "build",
        "--release",
        "-p",
        "cachew-tests",
        "--bin",
        "s3-server",
    ]))
}

fn bench(
    opts: &Opts,
    bin: &Path,
    helper: &Path,
    sysroot: &Path,
    shm: &Path,
) -> Result<Vec<Row>, String> {
    let s3 = start_s3(helper, shm)?;
    let none: Env = Vec::new();
    let disk_url = shm.join("disk-cache").display().to_string();
    let s3_url = format!("s3://{}/bench", s3.bucket);
    let mut rows = Vec::new();
    for set in &opts.sets {
        let src = match set.as_str() {
            "doc" => sysroot.join("share/doc"),
            "lib" => sysroot.join("lib"),
            other => return Err(format!("unknown data set {other:?} (doc, lib)")),
        };
        let (files, bytes) = tree_bytes(&src);
        let src_s = src.to_str().ok_or("non-UTF-8 sysroot")?;
        let out = shm.join("out");
        let out_s = out.to_str().ok_or("non-UTF-8 /dev/shm path")?.to_owned();
        let key = format!("bench-{set}");
        let mut cells = Vec::new();
        let targets: [(&str, &str, &Env); 2] =
            [("disk", &disk_url, &none), ("S3", &s3_url, &s3.env)];
        for (name, url, env) in targets {
            let save = ["save", "bench", src_s, "--key", &key];
            let mut times = Vec::new();
            for i in 0..=opts.runs {
                let t = timed(bin, url, env, &save)?;
                if i > 0 {
                    times.push(t);
                }
            }
            cells.push((format!("save, {name}"), median(times)));
            let restores: Vec<(String, Vec<&str>)> = if name == "S3" {
                vec![
                    (
                        "restore, S3, 1 stream".into(),
                        vec!["--download-concurrency", "1"],
                    ),
                    (
                        "restore, S3, 4 × 2 MiB ranges".into(),
                        vec!["--download-concurrency", "4"],
                    ),
                ]
            } else {
                vec![(format!("restore, {name}"), vec![])]
            };
            for (label, extra) in restores {
                let mut times = Vec::new();
                for i in 0..=opts.runs {
                    let _ = fs::remove_dir_all(&out);
                    let mut args = vec!["restore", "bench", &out_s, "--key", &key];
                    args.extend(extra.iter().copied());
                    let t = timed(bin, url, env, &args)?;
                    if i > 0 {
                        times.push(t);
                    }
                }
                cells.push((label, median(times)));
            }
            let _ = fs::remove_dir_all(&out);
        }
        rows.push(Row {
            set: set.clone(),
            files,
            bytes,
            cells,
        });
    }
    Ok(rows)
}

fn render(opts: &Opts, rows: &[Row], load: &str) -> String {
    let mut md = format!("{SECTION}\n\n");
    let _ = writeln!(
        md,
        "`cargo xtask bench s3` (median of {} runs after a warm-up; release build). \
         The S3 server is SeaweedFS (`weed server -s3`, Go module \
         `github.com/seaweedfs/seaweedfs` at `v0.0.0-20261109003541-7506e5f91cd6`) \
         on loopback with its volumes in `/dev/shm`; the disk backend is \
         `--url /dev/shm/…`; restores go to `/dev/shm`. Restores from S3 with one \
         stream (`--download-concurrency 1`) and with 4 ranged streams (objects of \
         64 MiB and more; each range is a HEAD and a GET pinned with If-Match). \
         Seconds, lower is better. Load average before the run: {load} (on a \
         shared 2-core machine, differences under ~20% are noise).\n",
        opts.runs
    );
    let Some(first) = rows.first() else {
        return md;
    };
    md.push_str("| data set | files | MiB |");
    for (label, _) in &first.cells {
        let _ = write!(md, " {label} |");
    }
    md.push_str("\n|---|---:|---:|");
    for _ in &first.cells {
        md.push_str("---:|");
    }
    md.push('\n');
    for row in rows {
        let _ = write!(
            md,
            "| {} | {} | {:.0} |",
            row.set,
            row.files,
            row.bytes as f64 / f64::from(1u32 << 20)
        );
        for (_, secs) in &row.cells {
            let _ = write!(md, " {secs:.2} |");
        }
        md.push('\n');
    }
    md.push('\n');
    md
}

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
        None => format!("{}\n{}", old.trim_end_matches('\n'), generated),
    };
    fs::write(path, new).map_err(|e| format!("write {}: {e}", path.display()))
}

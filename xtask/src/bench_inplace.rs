//! `cargo xtask bench inplace`: what an in-place restore costs next to a
//! fresh one, on `$(rustc --print sysroot)/share/doc` in `/dev/shm`,
//! against `cachew serve` over loopback (release build):
//!
//! - fresh: `cachew restore` into a directory that does not exist;
//! - in place, same tree: into a directory that already holds the same
//!   restored tree (every directory pair is covered: one exchange);
//! - in place, other tree: into a directory holding a different version
//!   of the doc tree (another toolchain's `share/doc`, restored untimed
//!   from its own key), so directories must be merged;
//! - GNU `tar -x` fresh, over the same tree and over the other version,
//!   as the reference for what
//!   overwriting costs; and `rm -rf` of one restored tree, the removal of
//!   the displaced old tree that an in-place restore includes.
//!
//! A `cachew restore` is timed as a user waits for it: until its process
//! exits. An in-place one leaves the removal of the displaced old tree to
//! a detached child (`cachew __remove-staging`); the bench then waits for
//! that staging directory to disappear before the next run, so the removal
//! never competes with it, and reports that total too ("until removed").
//! Median of `--runs` runs after a warm-up, the cases alternating. Writes
//! the `## In-place restore` section of `docs/benchmarks.md` unless
//! `--no-write`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bench_e2e::{
    cores, key_hex, loadavg, median, refs, remove, sh, start_server, timed, uname, Sample,
};
use crate::demo::target_dir;
use crate::{cargo, root, run};

const SECTION: &str = "## In-place restore";

struct Opts {
    runs: usize,
    write: bool,
    rt: bool,
    other: Option<PathBuf>,
    load_before: String,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        runs: 5,
        write: true,
        rt: true,
        other: None,
        load_before: loadavg(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                o.runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--runs needs a number")?
            }
            "--other" => o.other = Some(it.next().ok_or("--other needs a directory")?.into()),
            "--no-write" => o.write = false,
            "--no-rt" => o.rt = false,
            other => return Err(format!("bench inplace: unknown argument {other:?}")),
        }
    }
    if o.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(o)
}

/// Another version of the doc tree: the first other toolchain whose
/// `share/doc` has another number of entries and directories.
fn other_doc(sysroot: &Path) -> Option<PathBuf> {
    let toolchains = sysroot.parent()?;
    let mut names: Vec<_> = fs::read_dir(toolchains)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    let ours = fs::canonicalize(sysroot).ok()?;
    let size = count(&sysroot.join("share/doc"));
    names.into_iter().find_map(|p| {
        let doc = p.join("share/doc");
        // Another toolchain of the same version has the same tree.
        let same = fs::canonicalize(&p).ok()? == ours || count(&doc) == size;
        (!same && doc.is_dir()).then_some(doc)
    })
}

fn count(dir: &Path) -> (u64, u64) {
    let mut acc = (0, 0);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    acc.1 += 1;
                    todo.push(e.path());
                }
                _ => acc.0 += 1,
            }
        }
    }
    acc
}

pub(crate) fn run_bench(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    run(cargo().args(["build", "--release", "-p", "cachew-cli", "--bin", "cachew"]))?;
    let bin = target_dir().join("release/cachew");
    let bin = bin.to_str().ok_or("non-UTF-8 target dir")?.to_owned();
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustc --print sysroot: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let doc = sysroot.join("share/doc");
    let other = match &opts.other {
        Some(o) => o.clone(),
        None => other_doc(&sysroot).ok_or(
            "bench inplace: no other toolchain with a different share/doc; pass --other DIR",
        )?,
    };
    let shm = PathBuf::from(format!(
        "/dev/shm/cachew-bench-inplace-{}",
        std::process::id()
    ));
    remove(&shm)?;
    fs::create_dir_all(shm.join("srv")).map_err(|e| format!("create {}: {e}", shm.display()))?;
    let result = bench(&opts, &bin, &doc, &other, &shm);
    let _ = remove(&shm);
    let md = render(&opts, &result?, &doc, &other);
    print!("{md}");
    if opts.write {
        write_section(&root().join("docs/benchmarks.md"), &md)?;
        eprintln!("xtask: wrote the in-place section of docs/benchmarks.md");
    }
    Ok(())
}

/// Waits until no staging directory of `name` is left in `dir` (the
/// detached removal of an in-place restore has finished).
fn wait_for_cleanup(dir: &Path, name: &str) -> Result<(), String> {
    let prefix = format!(".{name}.cachew-");
    let start = Instant::now();
    loop {
        let left = fs::read_dir(dir)
            .map_err(|e| format!("read {}: {e}", dir.display()))?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&prefix));
        if !left {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "a staging directory of {name} is still in {} after 120 s",
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Results {
    fresh: Sample,
    same: Sample,
    other: Sample,
    /// Wall time until the detached removal finished.
    same_total: f64,
    other_total: f64,
    tar_fresh: Sample,
    tar_same: Sample,
    tar_other: Sample,
    rm: Sample,
}

fn bench(opts: &Opts, bin: &str, doc: &Path, other: &Path, shm: &Path) -> Result<Results, String> {
    let (_server, url) = start_server(Path::new(bin), &shm.join("srv"), opts.rt)?;
    let s = |p: &Path| p.to_str().map(str::to_owned).ok_or("non-UTF-8 path");
    let cachew = |args: &[&str]| -> Vec<String> {
        [bin, "--url", &url, "--quiet"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect()
    };
    for (key, src) in [("doc", doc), ("other", other)] {
        eprintln!("xtask: saving {} as {key}", src.display());
        run(Command::new(bin)
            .args(["--url", &url, "--quiet", "save", "bench"])
            .arg(src)
            .args(["--key", key]))?;
    }
    let tarball = shm.join("doc.tar.zst");
    run(Command::new("bash").args([
        "-c",
        &format!(
            "curl -sSf '{url}/api/v1/object/bench/{}' > '{}'",
            key_hex("doc"),
            s(&tarball)?
        ),
    ]))?;
    let dest = shm.join("dest");
    let dest_s = s(&dest)?;
    let restore = cachew(&["restore", "bench", &dest_s, "--key", "doc"]);
    let restore_other = cachew(&["restore", "bench", &dest_s, "--key", "other"]);
    let tar = sh(&format!(
        "mkdir -p '{dest_s}' && zstd -q -dc '{}' | tar -xpf - -C '{dest_s}'",
        s(&tarball)?
    ));
    // Every cachew run is followed by waiting for its detached removal.
    let untimed = |argv: &[String]| -> Result<(), String> {
        timed(&refs(argv), shm, false)?;
        wait_for_cleanup(shm, "dest")
    };
    let totals: std::cell::RefCell<[Vec<f64>; 2]> = Default::default();
    let timed_restore = |case: usize| -> Result<Sample, String> {
        let sample = timed(&refs(&restore), shm, opts.rt)?;
        let exited = Instant::now();
        wait_for_cleanup(shm, "dest")?;
        if case > 0 {
            totals.borrow_mut()[case - 1].push(sample.secs + exited.elapsed().as_secs_f64());
        }
        Ok(sample)
    };
    let mut all: [Vec<Sample>; 7] = Default::default();
    for i in 0..=opts.runs {
        let one = |case: usize| -> Result<Sample, String> {
            remove(&dest)?;
            match case {
                0 => timed_restore(0),
                1 => {
                    untimed(&restore)?;
                    timed_restore(1)
                }
                2 => {
                    untimed(&restore_other)?;
                    timed_restore(2)
                }
                3 => timed(&refs(&tar), shm, opts.rt),
                4 => {
                    untimed(&tar)?;
                    timed(&refs(&tar), shm, opts.rt)
                }
                5 => {
                    untimed(&restore)?;
                    timed(&["rm", "-rf", &dest_s], shm, opts.rt)
                }
                _ => {
                    untimed(&restore_other)?;
                    timed(&refs(&tar), shm, opts.rt)
                }
            }
        };
        // Alternate the order so no case always runs first.
        let order: Vec<usize> = if i % 2 == 0 {
            (0..7).collect()
        } else {
            (0..7).rev().collect()
        };
        for case in order {
            let sample = one(case)?;
            if i > 0 {
                all[case].push(sample);
            }
        }
        if i == 0 {
            // The warm-up's totals are not kept.
            for t in totals.borrow_mut().iter_mut() {
                t.clear();
            }
        }
        if i > 0 {
            let totals = totals.borrow();
            eprintln!(
                "xtask: run {i}: fresh {:.2}s, same {:.2}s (removed at {:.2}s), other {:.2}s \
                 (removed at {:.2}s), tar {:.2}s / {:.2}s / {:.2}s, rm {:.2}s",
                all[0][i - 1].secs,
                all[1][i - 1].secs,
                totals[0][i - 1],
                all[2][i - 1].secs,
                totals[1][i - 1],
                all[3][i - 1].secs,
                all[4][i - 1].secs,
                all[6][i - 1].secs,
                all[5][i - 1].secs
            );
        }
    }
    remove(&dest)?;
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g] = all;
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [mut same_total, mut other_total] = totals.into_inner();
    Ok(Results {
        fresh: median(&mut a),
        same: median(&mut b),
        other: median(&mut c),
        same_total: mid(&mut same_total),
        other_total: mid(&mut other_total),
        tar_fresh: median(&mut d),
        tar_same: median(&mut e),
        rm: median(&mut f),
        tar_other: median(&mut g),
    })
}

fn render(opts: &Opts, r: &Results, doc: &Path, other: &Path) -> String {
    let mut md = String::new();
    let (files, dirs) = count(doc);
    let (ofiles, odirs) = count(other);
    let _ = writeln!(md, "{SECTION}\n");
    let _ = writeln!(
        md,
        "Command: `cargo xtask bench inplace --runs {}{}`\n",
        opts.runs,
        if opts.rt { "" } else { " --no-rt" }
    );
    let _ = writeln!(
        md,
        "`cachew restore` (release build) of `{}` ({files} entries, {dirs} directories) \
         from `cachew serve` (disk backend in `/dev/shm`) over loopback into `/dev/shm`: \
         into a new directory, into the same tree restored before, and into another \
         version of it (`{}`, {ofiles} entries, {odirs} directories, restored untimed from \
         its own key). Every restore is verified against the digest trailer before it is \
         published. A restore is timed until its process exits, as a user waits for it: \
         the removal of the old tree an in-place restore displaced runs after that in a \
         detached `cachew __remove-staging` process, whose CPU time is not counted; \
         \"until removed\" is the wall time until that removal finished (the bench waits for \
         it before the next run). Next to it GNU `zstd -dc | tar -xpf -` of the same archive into a new \
         directory, over the same tree and over the other version, and `rm -rf` of one \
         restored tree (\"vs fresh\": against cachew's fresh restore). Median of {} \
         runs after a warm-up, the cases alternating{}. Machine: {} cores, {}; load average \
         before/after: {} / {}.\n",
        doc.display(),
        other.display(),
        opts.runs,
        if opts.rt {
            ", at real-time priority (`chrt -f 10`)"
        } else {
            ""
        },
        cores(),
        uname(),
        opts.load_before,
        loadavg()
    );
    let _ = writeln!(md, "| case | wall | CPU | peak RSS | vs fresh |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    let row = |md: &mut String, name: &str, s: &Sample, base: &Sample| {
        let _ = writeln!(
            md,
            "| {name} | {:.2} s | {:.2} s | {:.0} MiB | {:.2}× |",
            s.secs,
            s.cpu,
            s.rss_kib as f64 / 1024.0,
            s.secs / base.secs.max(1e-9)
        );
    };
    row(&mut md, "cachew, fresh", &r.fresh, &r.fresh);
    row(
        &mut md,
        "cachew, in place over the same tree",
        &r.same,
        &r.fresh,
    );
    row(
        &mut md,
        "cachew, in place over the other version",
        &r.other,
        &r.fresh,
    );
    for (name, total) in [
        ("same tree", r.same_total),
        ("other version", r.other_total),
    ] {
        let _ = writeln!(
            md,
            "| cachew, in place over the {name}, until removed | {total:.2} s | | | {:.2}× |",
            total / r.fresh.secs.max(1e-9)
        );
    }
    row(&mut md, "GNU tar, fresh", &r.tar_fresh, &r.tar_fresh);
    row(
        &mut md,
        "GNU tar, over the same tree",
        &r.tar_same,
        &r.tar_fresh,
    );
    row(
        &mut md,
        "GNU tar, over the other version",
        &r.tar_other,
        &r.tar_fresh,
    );
    row(&mut md, "`rm -rf` of one restored tree", &r.rm, &r.fresh);
    let _ = writeln!(md);
    md
}

/// Replaces (or appends) this bench's section of `docs/benchmarks.md`.
fn write_section(path: &Path, generated: &str) -> Result<(), String> {
    let old = fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let new = match old.find(&format!("\n{SECTION}\n")) {
        Some(start) => {
            let start = start + 1;
            let rest = &old[start + SECTION.len()..];
            // The section ends where the next one or the notes begin,
            // whichever comes first.
            let end = [rest.find("\n## "), rest.find("\n<!-- notes -->")]
                .into_iter()
                .flatten()
                .min()
                .map_or(old.len(), |i| start + SECTION.len() + i + 1);
            format!("{}{}{}", &old[..start], generated, &old[end..])
        }
        None => match old.find("\n<!-- notes -->") {
            Some(at) => format!("{}\n{}{}", &old[..at + 1], generated, &old[at + 1..]),
            None => format!("{}\n{}", old.trim_end_matches('\n'), generated),
        },
    };
    fs::write(path, new).map_err(|e| format!("write {}: {e}", path.display()))
}

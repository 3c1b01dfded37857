//! The frame-level benchmark behind `cargo xtask bench archive --frames`:
//! our `FrameWriter`/`FrameReader` against the zstd crate's own
//! multithreading, `pzstd` and `zstd`, on tar files, in release mode.
//!
//! ```text
//! bench-frames SCRATCH TAR...
//! ```
//! Compressed files go to the directory `SCRATCH` (best on tmpfs) and are
//! removed afterwards. Needs the `bench` feature (it reaches the frame
//! writer and reader through `cachew_archive::frames_bench`) and `zstd` and
//! `pzstd` on the `PATH`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::process::Command;

use cachew_archive::frames_bench;

/// CPU (user + system) and wall seconds of `f`, best of 3 (by CPU);
/// `who` is `RUSAGE_SELF` or `RUSAGE_CHILDREN`.
fn measure(who: i32, mut f: impl FnMut()) -> (f64, f64) {
    let cpu = || {
        // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `getrusage` fills the struct it is given.
        unsafe { libc::getrusage(who, &mut ru) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    };
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let (c0, w0) = (cpu(), std::time::Instant::now());
        f();
        let r = (cpu() - c0, w0.elapsed().as_secs_f64());
        if r.0 < best.0 {
            best = r;
        }
    }
    best
}

fn run(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// Copies `path` into `w` in 1 MiB reads.
fn copy_file(path: &str, w: &mut impl Write) {
    let mut f = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n]).unwrap();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench-frames SCRATCH TAR...";
    let scratch = args.next().expect(usage);
    let paths: Vec<String> = args.collect();
    assert!(!paths.is_empty(), "{usage}");
    let (ours, pz, zst) = (
        format!("{scratch}/bench.fw"),
        format!("{scratch}/bench.pz"),
        format!("{scratch}/bench.zst"),
    );
    let (ours, pz, zst) = (ours.as_str(), pz.as_str(), zst.as_str());
    let (me, kids) = (libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN);
    let show = |what: &str, (cpu, wall): (f64, f64)| {
        println!("  {what:<44} {cpu:6.2} CPU-s {wall:6.2} s wall");
    };
    for path in &paths {
        let len = std::fs::metadata(path).unwrap().len();
        println!("{path}: {len} bytes");
        for threads in [1, 2] {
            let r = measure(me, || {
                let input = File::open(path).unwrap();
                let out = File::create(ours).unwrap();
                frames_bench::compress(input, out, 3, threads).unwrap();
            });
            show(&format!("FrameWriter level 3, threads {threads}"), r);
        }
        let r = measure(me, || {
            let out = File::create(zst).unwrap();
            let mut w = zstd::stream::write::Encoder::new(out, 3).unwrap();
            w.include_checksum(true).unwrap();
            w.multithread(2).unwrap();
            copy_file(path, &mut w);
            w.finish().unwrap();
        });
        show("zstd crate Encoder, 2 workers (zstdmt)", r);
        show(
            "pzstd -3 -p2 -c",
            measure(kids, || run(&format!("pzstd -3 -p2 -q -c {path} > {pz}"))),
        );
        show(
            "zstd -3 -T2 -c (zstdmt)",
            measure(kids, || run(&format!("zstd -3 -T2 -q -c {path} > {zst}"))),
        );
        for f in [ours, pz, zst] {
            println!("  size of {f}: {}", std::fs::metadata(f).unwrap().len());
        }
        for (name, f) in [("ours", ours), ("pzstd's", pz), ("zstd -T2's", zst)] {
            for threads in [1, 2] {
                let r = measure(me, || {
                    let input = File::open(f).unwrap();
                    let n = frames_bench::decompress(input, &mut io::sink(), threads).unwrap();
                    assert_eq!(n, len);
                });
                show(&format!("FrameReader threads {threads} on {name}"), r);
            }
            show(
                &format!("zstd -dc on {name}"),
                measure(kids, || run(&format!("zstd -dc -q {f} > /dev/null"))),
            );
            show(
                &format!("pzstd -dc -p2 on {name}"),
                measure(kids, || run(&format!("pzstd -dc -p2 -q {f} > /dev/null"))),
            );
        }
        for f in [ours, pz, zst] {
            let _ = std::fs::remove_file(f);
        }
    }
}

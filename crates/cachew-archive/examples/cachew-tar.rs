//! A tiny command-line front end, used by `cargo xtask bench archive` and
//! for manual compatibility checks.
//!
//! ```text
//! cachew-tar c BASE OUT [--threads N] [--level L] [--digest] [--exclude PAT]... -- PATH...
//! cachew-tar x IN TARGET [--threads N]
//! ```
//! `OUT`/`IN` may be `-` for stdout/stdin.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use cachew_archive::{archive, extract, ArchiveOptions, ExtractOptions};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cachew-tar: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("usage: cachew-tar c|x ...")?;
    let a = args.next().ok_or("missing argument")?;
    let b = args.next().ok_or("missing argument")?;
    let mut threads = 0;
    let mut level = 3;
    let mut digest = false;
    let mut excludes = Vec::new();
    let mut paths = Vec::new();
    let mut rest = false;
    while let Some(arg) = args.next() {
        if rest {
            paths.push(PathBuf::from(arg));
            continue;
        }
        match arg.as_str() {
            "--threads" => threads = args.next().ok_or("--threads needs a value")?.parse()?,
            "--level" => level = args.next().ok_or("--level needs a value")?.parse()?,
            "--digest" => digest = true,
            "--exclude" => excludes.push(args.next().ok_or("--exclude needs a value")?),
            "--" => rest = true,
            other => paths.push(PathBuf::from(other)),
        }
    }
    match mode.as_str() {
        "c" => {
            let out: Box<dyn Write> = if b == "-" {
                Box::new(BufWriter::new(io::stdout().lock()))
            } else {
                Box::new(File::create(&b)?)
            };
            let opts = ArchiveOptions::default()
                .with_level(level)
                .with_threads(threads)
                .with_digest(digest);
            let s = archive(out, &PathBuf::from(a), &paths, &excludes, &opts)?;
            eprintln!("{s:?}");
        }
        "x" => {
            let input: Box<dyn Read> = if a == "-" {
                Box::new(io::stdin().lock())
            } else {
                Box::new(File::open(&a)?)
            };
            let s = extract(
                input,
                &PathBuf::from(b),
                &ExtractOptions::default().with_threads(threads),
            )?;
            eprintln!("{s:?}");
        }
        _ => return Err("mode must be c or x".into()),
    }
    Ok(())
}

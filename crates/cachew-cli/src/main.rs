//! The `cachew` command line: save and restore directories, get and put
//! objects, against a Cachew server or the embedded on-disk cache.
//!
//! Compatible with the Go `cachew` CLI (`PROTOCOL.md` §7): same commands,
//! flags, `CACHEW_*` environment variables, key prefixes and exit codes —
//! 0 success, 1 error, 2 restore miss. Usage errors exit 1, never 2, because
//! CI scripts read 2 as "miss, go build it". Status lines go to stderr.

mod backend;
mod cli;
mod commands;
mod gc;
mod git_restore;
mod keys;
mod progress;
mod signals;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use crate::cli::Cli;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Exit 0.
    Success,
    /// A restore (or lookup) found none of its keys: exit 2.
    Miss,
}

/// Exit code of errors, usage errors included.
const EXIT_ERROR: u8 = 1;
/// Exit code of a restore miss.
const EXIT_MISS: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 on usage errors; 2 means "miss" to CI scripts.
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_ERROR),
            };
        }
    };
    init_logging(&cli.global.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cachew: error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Blocking archive threads stop on their own once their futures are
    // gone (e.g. after Ctrl-C); give them time to clean up a staging
    // directory. Normally nothing is left running and this returns at once.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    match result {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::Miss) => ExitCode::from(EXIT_MISS),
        Err(e) => {
            eprintln!("cachew: error: {}", commands::describe(&*e));
            ExitCode::from(signals::exit_code(&*e).unwrap_or(EXIT_ERROR))
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

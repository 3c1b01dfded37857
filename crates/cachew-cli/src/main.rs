//! The `cachew` command line: save and restore directories, get and put
//! objects, against a Cachew server or the embedded on-disk cache.
//!
//! Compatible with the Go `cachew` CLI (`PROTOCOL.md` §7): same commands,
//! flags, `CACHEW_*` environment variables, key prefixes, status lines and
//! exit codes — 0 success, 1 error, 2 restore miss, 80 usage error. Nothing
//! but a miss exits 2, because CI scripts read 2 as "miss, go build it".
//! Status lines go to stderr. Errors print as `cachew: error: ` and their
//! chain of causes (anyhow's `{:#}`).

mod backend;
mod cleanup;
mod cli;
mod commands;
mod completions;
mod download;
mod envars;
mod errors;
mod gc;
mod gha;
mod git_restore;
mod json;
mod keys;
mod kong;
#[cfg(test)]
mod kong_oracle;
mod net;
mod observe;
mod output;
mod progress;
mod read_only;
mod serve;
mod signals;
mod size;
mod url;

use std::process::ExitCode;

use clap::error::ErrorKind;

use crate::cli::ParseFailure;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Exit 0.
    Success,
    /// A restore (or lookup) found none of its keys: exit 2.
    Miss,
}

/// Exit code of runtime errors.
const EXIT_ERROR: u8 = 1;
/// Exit code of a restore miss.
const EXIT_MISS: u8 = 2;
/// Exit code of usage errors, kong's (and square/exit's) 80.
const EXIT_USAGE: u8 = 80;

/// A command line that cannot be run as given, found after parsing (an
/// unusable `--url`, a header that is not a header): exit 80.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == cleanup::SUBCOMMAND) {
        return cleanup::child_main(&args[2..]);
    }
    let parsed = cli::parse(args, &|name| std::env::var_os(name))
        .and_then(|cli| serve::check_usage(cli).map_err(ParseFailure::Clap));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(ParseFailure::Clap(e)) => {
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                // clap would exit 2; 2 means "miss" to CI scripts.
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
        Err(ParseFailure::Usage(message)) => {
            eprintln!("cachew: error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let _telemetry = observe::init_logging(
        &cli.global.log_level,
        serve::log_directive(&cli),
        &cli.global.observe,
    );
    net::install(&cli.global.net);
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
    let span = observe::command_span(&cli.command);
    let result = runtime.block_on(tracing::Instrument::instrument(commands::run(cli), span));
    // Blocking archive threads stop on their own once their futures are
    // gone (e.g. after Ctrl-C); give them time to clean up a staging
    // directory. Normally nothing is left running and this returns at once.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    match result {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::Miss) => ExitCode::from(EXIT_MISS),
        Err(e) => {
            let e = errors::explain(e);
            eprintln!("cachew: error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(signals::exit_code(e.as_ref()).unwrap_or(EXIT_ERROR))
            }
        }
    }
}

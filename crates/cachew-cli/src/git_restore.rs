//! `cachew git restore URL DIR` (`PROTOCOL.md` §5, §7): the arguments and
//! the status lines. The restore itself (snapshot, bundle, `--ref` /
//! `--commit` checks and the staging directory) is
//! [`cachew_client::git::restore_repo`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachew_client::git::{
    is_commit_sha_prefix, restore_repo, BundleOutcome, GitClient, LfsOutcome, RestoreRepoEvent,
    RestoreRepoOptions, RestoreRepoStatus, SnapshotSummary,
};
use cachew_client::parallel::{ParallelOptions, DEFAULT_CHUNK_SIZE, DEFAULT_CONCURRENCY};
use cachew_client::{Progress, RemoteCache};
use clap::{Args, Subcommand};

use crate::progress::{self, Mode};

/// A command's failure.
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// `cachew git …`.
#[derive(Debug, Subcommand)]
pub(crate) enum GitCommand {
    /// Clone a repository from the server's snapshot into DIR, bring it up
    /// to date with the delta bundle, and check requested refs and commits.
    ///
    /// DIR may be relative, absolute or `~/…`. A new (or empty) DIR gets the
    /// clone by one rename from a staging directory beside it. An existing
    /// DIR — a stale clone, a dirty one, or any directory — gets the
    /// snapshot merged in place, as the Go CLI extracts it: the snapshot's
    /// files win, DIR's other files (build outputs) stay; a failure rolls
    /// the merge back. With --ref/--commit, an existing clone that already
    /// has every SHA (all refs pinned) is left alone; otherwise the server
    /// ensures them and `git pull --ff-only` runs unless the clone already
    /// has every SHA the server resolved. A restore killed with SIGKILL
    /// leaves only a `.DIR.cachew-PID-….staging` directory beside DIR,
    /// which the next restore of DIR removes, as `cachew gc` does.
    #[command(after_help = "Examples:\n  \
        cachew git restore https://github.com/org/repo ./repo\n  \
        cachew git restore https://github.com/org/repo ./repo --ref refs/heads/main=$SHA\n  \
        cachew git restore https://github.com/org/repo ./repo --commit $SHA --no-bundle\n  \
        cachew git restore https://github.com/org/repo ~/ws/repo --ref main= --lfs")]
    Restore(GitRestoreArgs),
}

/// `git restore URL DIR [flags]`.
#[derive(Debug, Args)]
pub(crate) struct GitRestoreArgs {
    /// Repository URL, e.g. `https://github.com/org/repo`.
    pub(crate) repo: String,
    /// Directory of the clone: created when absent; an existing one gets
    /// the snapshot merged in place.
    pub(crate) dir: PathBuf,
    /// Require ref NAME at SHA, NAME=SHA; several are separated by ";"
    /// (repeatable); a NAME without `refs/` means `refs/heads/NAME`; an
    /// empty SHA means "any"; SHAs may be abbreviated (4+ hex digits).
    #[arg(long = "ref", value_name = "NAME=SHA", value_parser = crate::kong::map_occurrence)]
    pub(crate) refs: Vec<String>,
    /// Require commit SHA (full or abbreviated); several are separated by
    /// "," (repeatable).
    #[arg(long = "commit", value_name = "SHA")]
    pub(crate) commits: Vec<String>,
    /// Do not fetch and apply the delta bundle after the snapshot.
    #[arg(long)]
    pub(crate) no_bundle: bool,
    /// Also restore the server's LFS snapshot into DIR/.git/lfs (none on
    /// the server is not an error). An extension to the Go CLI.
    #[arg(long)]
    pub(crate) lfs: bool,
    /// Extraction threads; 0 = all cores.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) zstd_threads: usize,
    /// Concurrent ranged requests for the snapshot; 1 = one plain GET.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_name = "N")]
    pub(crate) download_concurrency: usize,
    /// Size of each ranged request, in MiB.
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE >> 20, value_parser = clap::value_parser!(u64).range(1..=4096), value_name = "MIB")]
    pub(crate) download_chunk_size_mb: u64,
}

fn parse_ref(s: &str) -> Result<(String, String), String> {
    let (name, sha) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=SHA, got {s:?}"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("empty ref name in {s:?}"));
    }
    let name = if name.starts_with("refs/") {
        name.to_owned()
    } else {
        format!("refs/heads/{name}")
    };
    // Passed to the server as given (abbreviations included).
    let sha = sha.trim().to_owned();
    if !sha.is_empty() && !is_commit_sha_prefix(&sha) {
        return Err(format!("{sha:?} is not a commit SHA (4 to 64 hex digits)"));
    }
    Ok((name, sha))
}

/// Global settings the command needs.
#[derive(Debug)]
pub(crate) struct GitContext<'a> {
    /// The server URL (`--url`).
    pub(crate) url: &'a str,
    /// `--authorization`.
    pub(crate) authorization: Option<&'a str>,
    /// `--quiet`.
    pub(crate) quiet: bool,
}

impl GitContext<'_> {
    fn status(&self, line: &str) {
        if !self.quiet {
            eprintln!("cachew: {line}");
        }
    }
}

/// Runs `cachew git …`.
pub(crate) async fn run(ctx: &GitContext<'_>, command: GitCommand) -> Result<(), Failure> {
    match command {
        // SIGINT, SIGTERM (how CI cancels a job) and SIGHUP drop the
        // restore; the library's staging guard then removes the staging
        // directory, and a move into place already under way finishes or
        // rolls back (main waits for it), so DIR never appears half-written.
        // The exit code is 128 + the signal's number.
        GitCommand::Restore(args) => {
            let ticker = Ticker::default();
            let mut signals = crate::signals::Signals::install()?;
            let result = tokio::select! {
                r = restore(ctx, args, &ticker) => r,
                signal = signals.recv() => Err(Box::new(crate::signals::Interrupted {
                    signal,
                    outcome: "its staging directory was removed",
                }) as Failure),
            };
            ticker.stop();
            result
        }
    }
}

async fn restore(
    ctx: &GitContext<'_>,
    args: GitRestoreArgs,
    ticker: &Ticker,
) -> Result<(), Failure> {
    let lower = ctx.url.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return Err(format!(
            "git restore needs a Cachew server (--url http(s)://…), not {:?}",
            ctx.url
        )
        .into());
    }
    // Refs and commits that do not parse are usage errors (exit 80).
    let usage = |m: String| -> Failure { Box::new(crate::UsageError(m)) };
    let mut refs = Vec::new();
    for (name, sha) in crate::kong::map(&args.refs).map_err(usage)? {
        refs.push(parse_ref(&format!("{name}={sha}")).map_err(|e| usage(format!("--ref: {e}")))?);
    }
    let commits = crate::kong::list(&args.commits);
    for commit in &commits {
        if !is_commit_sha_prefix(commit) {
            return Err(usage(format!(
                "--commit {commit:?} is not a commit SHA (4 to 64 hex digits)"
            )));
        }
    }
    let mut remote = crate::net::configure(RemoteCache::builder(ctx.url));
    if let Some(auth) = ctx.authorization {
        remote = remote.authorization(auth);
    }
    let git = GitClient::from_remote(&remote.build()?);

    let progress = Progress::new();
    let mut options = RestoreRepoOptions::new(args.repo.clone());
    options.refs = refs;
    options.commits = commits;
    options.skip_bundle = args.no_bundle;
    options.lfs = args.lfs;
    options.extract_threads = args.zstd_threads;
    options.download = ParallelOptions::default()
        .with_concurrency(args.download_concurrency.max(1))
        .with_chunk_size(args.download_chunk_size_mb << 20);
    options.progress = Some(progress.clone());
    let mode = Mode::detect(ctx.quiet);
    let repo = args.repo;
    let quiet = ctx.quiet;
    let ticker = ticker.clone();
    options.on_event = Some(Arc::new(move |event: &RestoreRepoEvent<'_>| match event {
        RestoreRepoEvent::SnapshotStarted { .. } if mode == Mode::Terminal => {
            ticker.start(progress.clone());
        }
        RestoreRepoEvent::SnapshotExtracted => ticker.stop(),
        RestoreRepoEvent::SnapshotRestored { dir, summary } => {
            for warning in warnings(summary) {
                eprintln!("cachew: warning: {warning}");
            }
            if !quiet {
                eprintln!(
                    "cachew: restored {repo} into {}{}: {}",
                    dir.display(),
                    if summary.in_place { " (in place)" } else { "" },
                    describe_snapshot(summary)
                );
            }
        }
        RestoreRepoEvent::Pulling {
            missing,
            server_fetched,
        } if !quiet => {
            eprintln!(
                "cachew: pulling {} (server {})",
                missing.join(", "),
                if *server_fetched {
                    "fetched from upstream"
                } else {
                    "already had them"
                }
            );
        }
        _ => {}
    }));

    let outcome = restore_repo(&git, &crate::cli::expand_dir(&args.dir), &options).await?;
    if outcome.status == RestoreRepoStatus::HadCommits {
        ctx.status(&format!(
            "{} already has the requested commits; nothing to do",
            outcome.dir.display()
        ));
    }
    if !outcome.still_missing.is_empty() {
        eprintln!(
            "cachew: warning: after git pull, {} still lacks {}",
            outcome.dir.display(),
            outcome.still_missing.join(", ")
        );
    }
    Ok(())
}

/// The warnings a restored snapshot deserves, in the order they are printed.
fn warnings(summary: &SnapshotSummary) -> Vec<String> {
    let mut out = Vec::new();
    if summary.commit.is_none() {
        out.push("the server sent a cold snapshot (no commit); the clone may be stale".to_owned());
    }
    if let BundleOutcome::Failed { error } = &summary.bundle {
        out.push(format!(
            "could not apply the delta bundle ({error}); the clone stays at the snapshot commit"
        ));
    }
    out
}

/// `snapshot abc123def456, 3.0 MiB in 1.2s (2.5 MiB/s, 8-way ranged
/// download), bundle applied: now at …`.
fn describe_snapshot(summary: &SnapshotSummary) -> String {
    let mut text = format!(
        "snapshot {}, {} in {} ({}{})",
        summary.commit.as_deref().map_or("(cold)", short),
        progress::bytes(summary.bytes),
        progress::duration(summary.elapsed),
        progress::rate(summary.bytes, summary.elapsed),
        match summary.ranged_concurrency {
            Some(n) => format!(", {n}-way ranged download"),
            None => String::new(),
        }
    );
    match &summary.bundle {
        BundleOutcome::Applied { head } => {
            text.push_str(&format!(", bundle applied: now at {}", short(head)));
        }
        BundleOutcome::UpToDate => text.push_str(", already up to date"),
        _ => {}
    }
    match &summary.lfs {
        LfsOutcome::Restored { bytes } => {
            text.push_str(&format!(", LFS objects {}", progress::bytes(*bytes)));
        }
        LfsOutcome::NotOffered => text.push_str(", no LFS snapshot on the server"),
        _ => {}
    }
    text
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The live progress line of the snapshot download, on a terminal only
/// (CI logs get the summary line only). Started and stopped from the
/// restore's events, which are synchronous: the line is drawn and cleared
/// under one lock, so nothing is drawn after [`Ticker::stop`].
#[derive(Debug, Clone, Default)]
struct Ticker {
    state: Arc<Mutex<TickerState>>,
}

#[derive(Debug, Default)]
struct TickerState {
    task: Option<tokio::task::JoinHandle<()>>,
    stopped: bool,
}

impl Ticker {
    fn start(&self, progress: Progress) {
        let state = self.state.clone();
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if guard.task.is_some() || guard.stopped {
            return;
        }
        guard.task = Some(tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let guard = state.lock().unwrap_or_else(|p| p.into_inner());
                if guard.stopped {
                    return;
                }
                let line = progress::render(
                    "git snapshot",
                    progress.transferred(),
                    progress.total(),
                    started.elapsed(),
                );
                eprint!("\r\x1b[2K{line}");
                drop(guard);
            }
        }));
    }

    /// Stops and clears the line, if it was drawn; idempotent.
    fn stop(&self) {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        guard.stopped = true;
        if let Some(task) = guard.task.take() {
            task.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_parse_and_normalise() {
        let sha = "a".repeat(40);
        assert_eq!(
            parse_ref(&format!("main={sha}")).unwrap(),
            ("refs/heads/main".to_owned(), sha.clone())
        );
        assert_eq!(
            parse_ref(&format!("refs/tags/v1={}", sha.to_uppercase())).unwrap(),
            ("refs/tags/v1".to_owned(), sha.to_uppercase())
        );
        assert_eq!(
            parse_ref("main=abc1234").unwrap(),
            ("refs/heads/main".to_owned(), "abc1234".to_owned())
        );
        assert_eq!(
            parse_ref("refs/heads/x=").unwrap(),
            ("refs/heads/x".to_owned(), String::new())
        );
        assert!(parse_ref("main").is_err());
        assert!(parse_ref("=abc").is_err());
        assert!(parse_ref("main=abc").is_err());
        assert!(parse_ref("main=xyz12345").is_err());
    }
}

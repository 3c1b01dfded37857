//! `cachew git restore URL DIR` (`PROTOCOL.md` §5, §7): a clone of a git
//! repository from the server's snapshot, brought up to date by its delta
//! bundle, with `--ref` / `--commit` checks.
//!
//! The flow, as the Go CLI does it:
//! 1. With `--ref`/`--commit`, when DIR already is a clone that has every
//!    requested SHA, nothing else happens (LESSONS 12).
//! 2. When DIR does not exist (or is an empty directory), the snapshot is
//!    downloaded with parallel ranged requests (`--download-concurrency`,
//!    `--download-chunk-size-mb`), extracted while it streams into a staging
//!    directory beside DIR (same file system, LESSONS 2), brought up to date
//!    by the delta bundle unless `--no-bundle` (`git pull --ff-only BUNDLE
//!    BRANCH`; a failure is only a warning, a 204 means already current,
//!    LESSONS 11), and renamed into place. On failure the staging directory
//!    (which this command created) is removed; DIR is never touched
//!    (LESSONS 13). An existing, non-empty DIR that is not a clone is an
//!    error.
//! 3. With `--ref`/`--commit`, requested SHAs still missing locally make the
//!    server ensure them on its mirror (ensure-refs; commits it still lacks
//!    are an error), then `git pull --ff-only` from the clone's `origin`, and
//!    every requested SHA must be present afterwards.

use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cachew_client::git::{GitClient, GitSnapshot};
use cachew_client::parallel::ParallelOptions;
use cachew_client::proto::EnsureGitRefsRequest;
use cachew_client::{Error, RemoteCache};
use clap::{Args, Subcommand};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::progress::{self, Mode};

/// A command's failure.
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// `cachew git …`.
#[derive(Debug, Subcommand)]
pub(crate) enum GitCommand {
    /// Clone a repository from the server's snapshot into DIR, bring it up
    /// to date with the delta bundle, and check requested refs and commits.
    #[command(after_help = "Examples:\n  \
        cachew git restore https://github.com/org/repo ./repo\n  \
        cachew git restore https://github.com/org/repo ./repo --ref refs/heads/main=$SHA\n  \
        cachew git restore https://github.com/org/repo ./repo --commit $SHA --no-bundle")]
    Restore(GitRestoreArgs),
}

/// `git restore URL DIR [flags]`.
#[derive(Debug, Args)]
pub(crate) struct GitRestoreArgs {
    /// Repository URL, e.g. `https://github.com/org/repo`.
    pub(crate) repo: String,
    /// Directory of the clone (created; staged beside it and renamed into place).
    pub(crate) dir: PathBuf,
    /// Require ref NAME at SHA, NAME=SHA (repeatable); a NAME without
    /// `refs/` means `refs/heads/NAME`; an empty SHA means "any".
    #[arg(long = "ref", value_name = "NAME=SHA", value_parser = parse_ref)]
    pub(crate) refs: Vec<(String, String)>,
    /// Require commit SHA (repeatable).
    #[arg(long = "commit", value_name = "SHA")]
    pub(crate) commits: Vec<String>,
    /// Do not fetch and apply the delta bundle after the snapshot.
    #[arg(long)]
    pub(crate) no_bundle: bool,
    /// Extraction threads; 0 = all cores.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) zstd_threads: usize,
    /// Concurrent ranged requests for the snapshot; 1 = one plain GET.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub(crate) download_concurrency: usize,
    /// Size of each ranged request, in MiB.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096), value_name = "MIB")]
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
    let sha = sha.trim().to_ascii_lowercase();
    if !sha.is_empty() && !is_sha(&sha) {
        return Err(format!("{sha:?} is not a full commit SHA"));
    }
    Ok((name, sha))
}

fn is_sha(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
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
        // Ctrl-C drops the restore; the staging guard then removes the
        // staging directory, so DIR never appears half-written.
        GitCommand::Restore(args) => tokio::select! {
            r = restore(ctx, args) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        },
    }
}

async fn restore(ctx: &GitContext<'_>, args: GitRestoreArgs) -> Result<(), Failure> {
    let lower = ctx.url.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return Err(format!(
            "git restore needs a Cachew server (--url http(s)://…), not {:?}",
            ctx.url
        )
        .into());
    }
    for commit in &args.commits {
        if !is_sha(commit) {
            return Err(format!("--commit {commit:?} is not a full commit SHA").into());
        }
    }
    let dir = clean(&args.dir)?;
    let mut remote = RemoteCache::builder(ctx.url);
    if let Some(auth) = ctx.authorization {
        remote = remote.authorization(auth);
    }
    let git = GitClient::from_remote(&remote.build()?);
    let wants_shas = !args.refs.is_empty() || !args.commits.is_empty();

    let state = inspect_dir(&dir).await?;
    if state == DirState::Clone {
        if wants_shas && missing_locally(&dir, &args).await?.is_empty() {
            ctx.status(&format!(
                "{} already has the requested commits; nothing to do",
                dir.display()
            ));
            return Ok(());
        }
        if !wants_shas {
            ctx.status(&format!(
                "{} is already a git clone; nothing to restore",
                dir.display()
            ));
            return Ok(());
        }
    } else {
        restore_snapshot(ctx, &git, &args, &dir).await?;
        if !wants_shas {
            return Ok(());
        }
    }

    // --ref / --commit: only what the clone still lacks goes to the server.
    let missing = missing_locally(&dir, &args).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let mut request = EnsureGitRefsRequest::default();
    for (name, sha) in &args.refs {
        request.refs.insert(name.clone(), sha.clone());
    }
    request.commits = args.commits.clone();
    let resp = git.ensure_refs(&args.repo, &request).await?;
    if !resp.missing_commits.is_empty() {
        return Err(format!(
            "the server cannot provide commit(s) {} of {}",
            resp.missing_commits.join(", "),
            args.repo
        )
        .into());
    }
    for (name, _) in &args.refs {
        if resp.refs.get(name).is_none_or(String::is_empty) {
            return Err(format!("the server has no ref {name} in {}", args.repo).into());
        }
    }
    ctx.status(&format!(
        "pulling {} (server {})",
        missing.join(", "),
        if resp.fetched {
            "fetched from upstream"
        } else {
            "already had them"
        }
    ));
    run_git(
        &dir,
        &["-c", "pull.rebase=false", "pull", "--ff-only", "--quiet"],
    )
    .await?;
    let still = missing_locally(&dir, &args).await?;
    if !still.is_empty() {
        return Err(format!("after git pull, the clone still lacks {}", still.join(", ")).into());
    }
    Ok(())
}

/// What DIR is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirState {
    Absent,
    Empty,
    Clone,
}

async fn inspect_dir(dir: &Path) -> Result<DirState, Failure> {
    match tokio::fs::symlink_metadata(dir).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DirState::Absent),
        Err(e) => return Err(Error::io("inspect", dir, e).into()),
        Ok(meta) if !meta.is_dir() => {
            return Err(format!("{} exists and is not a directory", dir.display()).into())
        }
        Ok(_) => {}
    }
    if dir.join(".git").exists() {
        return Ok(DirState::Clone);
    }
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| Error::io("read directory", dir, e))?;
    if entries
        .next_entry()
        .await
        .map_err(|e| Error::io("read directory", dir, e))?
        .is_none()
    {
        return Ok(DirState::Empty);
    }
    Err(format!(
        "{} exists, is not empty and is not a git clone; refusing to restore over it",
        dir.display()
    )
    .into())
}

/// The requested SHAs (refs' and commits') the clone at `dir` does not have.
async fn missing_locally(dir: &Path, args: &GitRestoreArgs) -> Result<Vec<String>, Failure> {
    let mut missing = Vec::new();
    for (name, sha) in &args.refs {
        if sha.is_empty() {
            // "Any SHA" cannot be checked without asking the server.
            missing.push(name.clone());
        } else if !has_commit(dir, sha).await? {
            missing.push(format!("{name}={sha}"));
        }
    }
    for commit in &args.commits {
        if !has_commit(dir, commit).await? {
            missing.push(commit.clone());
        }
    }
    Ok(missing)
}

async fn has_commit(dir: &Path, sha: &str) -> Result<bool, Failure> {
    let status = git_command(dir)
        .args(["cat-file", "-e", &format!("{sha}^{{commit}}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    Ok(status.success())
}

/// Cleans DIR lexically (`a/./b/` → `a/b`; `..` is kept) so that a trailing slash or `.`
/// never changes where the staging directory goes (LESSONS 3).
fn clean(dir: &Path) -> Result<PathBuf, Failure> {
    let mut out = PathBuf::new();
    for c in dir.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() || out.file_name().is_none() {
        return Err(format!("cannot restore into {:?}: name a new directory", dir).into());
    }
    Ok(out)
}

/// Downloads, extracts, freshens and moves the snapshot into `dir`.
async fn restore_snapshot(
    ctx: &GitContext<'_>,
    git: &GitClient,
    args: &GitRestoreArgs,
    dir: &Path,
) -> Result<(), Failure> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(|e| Error::io("create directory", &parent, e))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(
        ".{name}.cachew-git-{}-{:x}",
        std::process::id(),
        nanos()
    ));
    let mut guard = StagingGuard(Some(staging.clone()));
    let result = restore_into(git, args, &staging, Mode::detect(ctx.quiet)).await;
    let result = match result {
        Ok(summary) => {
            // An empty DIR is replaced by the rename itself: rename(2)
            // refuses anything but an empty directory, so nothing of the
            // user's is ever lost.
            match tokio::fs::rename(&staging, dir).await {
                Ok(()) => Ok(summary),
                Err(e) => Err(Error::io("move the clone into place at", dir, e).into()),
            }
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(summary) => {
            guard.0 = None;
            ctx.status(&format!(
                "restored {} into {}: {summary}",
                args.repo,
                dir.display()
            ));
            Ok(())
        }
        Err(e) => {
            // The staging directory is ours alone.
            let _ = tokio::fs::remove_dir_all(&staging).await;
            guard.0 = None;
            Err(e)
        }
    }
}

/// Removes the staging directory if the restore is dropped half-way (e.g.
/// on Ctrl-C); disarmed once the directory was renamed or cleaned up.
struct StagingGuard(Option<PathBuf>);

impl Drop for StagingGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // The extractor's threads may still be finishing a file for a
            // moment after the restore was dropped: retry briefly.
            for _ in 0..5 {
                match std::fs::remove_dir_all(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => return,
                }
            }
        }
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

async fn restore_into(
    git: &GitClient,
    args: &GitRestoreArgs,
    staging: &Path,
    mode: Mode,
) -> Result<String, Failure> {
    let started = Instant::now();
    let opts = ParallelOptions::default()
        .with_concurrency(args.download_concurrency.max(1))
        .with_chunk_size(args.download_chunk_size_mb << 20);
    let snapshot: GitSnapshot = match git.open_snapshot_parallel(&args.repo, &opts).await {
        Ok(s) => s,
        Err(Error::NotFound) => {
            return Err(format!(
                "the server at {} has no snapshot of {}",
                git.base_url(),
                args.repo
            )
            .into())
        }
        Err(e) => return Err(e.into()),
    };
    let commit = snapshot.commit.clone();
    let bundle_url = snapshot.bundle_url.clone();
    let size = snapshot.size;
    let counted = Arc::new(AtomicU64::new(0));
    let body = Counting {
        inner: snapshot.body,
        count: counted.clone(),
    };
    let ticker = live_progress(mode, counted.clone(), size.unwrap_or(0));
    let extract_opts = cachew_archive::ExtractOptions::default().with_threads(args.zstd_threads);
    let extracted = cachew_archive::extract_async(body, staging.to_path_buf(), extract_opts).await;
    if let Some(ticker) = ticker {
        ticker.abort();
        let _ = ticker.await;
        eprint!("\r\x1b[2K");
    }
    extracted.map_err(|e| format!("cannot extract the snapshot of {}: {e}", args.repo))?;
    let elapsed = started.elapsed();
    let received = counted.load(Ordering::Relaxed);
    let mut summary = format!(
        "snapshot {}, {} in {} ({}{})",
        commit.as_deref().map_or("(cold)", short),
        progress::bytes(received),
        progress::duration(elapsed),
        progress::rate(received, elapsed),
        if snapshot.parallel {
            format!(", {}-way ranged download", opts.concurrency)
        } else {
            String::new()
        }
    );
    if commit.is_none() {
        eprintln!(
            "cachew: warning: the server sent a cold snapshot (no commit); the clone may be stale"
        );
    }
    if args.no_bundle {
        return Ok(summary);
    }
    let Some(bundle_url) = bundle_url else {
        return Ok(summary);
    };
    match apply_bundle(git, &bundle_url, staging).await {
        Ok(Some(head)) => summary.push_str(&format!(", bundle applied: now at {}", short(&head))),
        Ok(None) => summary.push_str(", already up to date"),
        Err(e) => {
            eprintln!(
                "cachew: warning: could not apply the delta bundle ({e}); the clone stays at the snapshot commit"
            );
        }
    }
    Ok(summary)
}

/// A reader that counts the bytes it hands out.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        poll
    }
}

/// Draws a live progress line on a terminal until aborted; nothing
/// otherwise (CI logs get the summary line only).
fn live_progress(
    mode: Mode,
    count: Arc<AtomicU64>,
    total: u64,
) -> Option<tokio::task::JoinHandle<()>> {
    if mode != Mode::Terminal {
        return None;
    }
    Some(tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let line = progress::render(
                "git snapshot",
                count.load(Ordering::Relaxed),
                total,
                started.elapsed(),
            );
            eprint!("\r\x1b[2K{line}");
        }
    }))
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Fetches the bundle and `git pull --ff-only`s the current branch from it.
/// `Ok(None)`: the server said the snapshot is current (204).
async fn apply_bundle(
    git: &GitClient,
    bundle_url: &str,
    clone: &Path,
) -> Result<Option<String>, Failure> {
    let mut body = match git.open_bundle(bundle_url).await {
        Ok(body) => body,
        Err(Error::UpToDate) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut data = Vec::new();
    body.read_to_end(&mut data).await?;
    // Beside the staging directory, named after it (with_extension would
    // cut its name at the first dot).
    let mut bundle = clone.as_os_str().to_owned();
    bundle.push(".bundle");
    let bundle = PathBuf::from(bundle);
    tokio::fs::write(&bundle, &data)
        .await
        .map_err(|e| Error::io("write", &bundle, e))?;
    let result = async {
        let branch = run_git(clone, &["symbolic-ref", "--short", "HEAD"]).await?;
        let bundle_arg = bundle
            .to_str()
            .ok_or_else(|| format!("path is not UTF-8: {}", bundle.display()))?;
        run_git(
            clone,
            &[
                "-c",
                "pull.rebase=false",
                "pull",
                "--ff-only",
                "--quiet",
                bundle_arg,
                &branch,
            ],
        )
        .await?;
        run_git(clone, &["rev-parse", "HEAD"]).await
    }
    .await;
    let _ = tokio::fs::remove_file(&bundle).await;
    result.map(Some)
}

fn git_command(dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs git in `dir`; its trimmed stdout, or an error with its stderr.
async fn run_git(dir: &Path, args: &[&str]) -> Result<String, Failure> {
    let out = git_command(dir)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        let what = args
            .iter()
            .find(|a| !a.starts_with('-') && !a.contains('='))
            .copied();
        return Err(format!(
            "git {} failed: {}",
            what.unwrap_or("command"),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
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
            ("refs/tags/v1".to_owned(), sha.clone())
        );
        assert_eq!(
            parse_ref("refs/heads/x=").unwrap(),
            ("refs/heads/x".to_owned(), String::new())
        );
        assert!(parse_ref("main").is_err());
        assert!(parse_ref("=abc").is_err());
        assert!(parse_ref("main=abc").is_err());
    }

    #[test]
    fn trailing_slashes_and_dots_do_not_move_the_target() {
        assert_eq!(clean(Path::new("repo/")).unwrap(), PathBuf::from("repo"));
        assert_eq!(
            clean(Path::new("./a/./repo/")).unwrap(),
            PathBuf::from("a/repo")
        );
        assert_eq!(
            clean(Path::new("../repo/.")).unwrap(),
            PathBuf::from("../repo")
        );
        assert!(clean(Path::new(".")).is_err());
        assert!(clean(Path::new("/")).is_err());
    }
}

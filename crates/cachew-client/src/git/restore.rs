//! [`restore_repo`]: a git clone from the server's snapshot, brought up to
//! date by its delta bundle, with required refs and commits checked
//! (`PROTOCOL.md` §5, §7) — the work behind `cachew git restore`.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cachew_proto::EnsureGitRefsRequest;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::{GitClient, GitSnapshot};
use crate::error::{Error, Result};
use crate::parallel::ParallelOptions;
use crate::save::Progress;

/// A receiver of [`RestoreRepoEvent`]s; called on the restoring task, so it
/// should return quickly.
pub type EventSink = Arc<dyn Fn(&RestoreRepoEvent<'_>) + Send + Sync>;

/// What [`restore_repo`] restores, and how.
///
/// Start from [`RestoreRepoOptions::new`] and set the public fields.
#[derive(Clone)]
#[non_exhaustive]
pub struct RestoreRepoOptions {
    /// Repository URL, e.g. `https://github.com/org/repo`.
    pub repo: String,
    /// Required refs as (full name, SHA), e.g. `("refs/heads/main", sha)`;
    /// an empty SHA means "any".
    pub refs: Vec<(String, String)>,
    /// Required commits (full SHAs).
    pub commits: Vec<String>,
    /// Do not fetch and apply the delta bundle after the snapshot.
    pub skip_bundle: bool,
    /// Extraction threads; 0 means all cores.
    pub extract_threads: usize,
    /// How the snapshot is downloaded; concurrency 1 is one plain `GET`.
    pub download: ParallelOptions,
    /// Counters of the snapshot bytes received (and the snapshot's size,
    /// when known), for a live progress display.
    pub progress: Option<Progress>,
    /// Called, in order, as the restore goes (see [`RestoreRepoEvent`]).
    pub on_event: Option<EventSink>,
}

impl RestoreRepoOptions {
    /// A restore of `repo` with the defaults: no refs or commits required,
    /// the bundle applied, all cores, the default [`ParallelOptions`].
    pub fn new(repo: impl Into<String>) -> Self {
        RestoreRepoOptions {
            repo: repo.into(),
            refs: Vec::new(),
            commits: Vec::new(),
            skip_bundle: false,
            extract_threads: 0,
            download: ParallelOptions::default(),
            progress: None,
            on_event: None,
        }
    }

    fn wants_shas(&self) -> bool {
        !self.refs.is_empty() || !self.commits.is_empty()
    }

    fn emit(&self, event: RestoreRepoEvent<'_>) {
        if let Some(on_event) = &self.on_event {
            on_event(&event);
        }
    }
}

impl fmt::Debug for RestoreRepoOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestoreRepoOptions")
            .field("repo", &self.repo)
            .field("refs", &self.refs)
            .field("commits", &self.commits)
            .field("skip_bundle", &self.skip_bundle)
            .field("extract_threads", &self.extract_threads)
            .field("download", &self.download)
            .field("progress", &self.progress.is_some())
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

/// What a [`restore_repo`] reports while it works, through
/// [`RestoreRepoOptions::on_event`].
#[derive(Debug)]
#[non_exhaustive]
pub enum RestoreRepoEvent<'a> {
    /// The snapshot started to stream in; [`RestoreRepoOptions::progress`]
    /// counts its bytes from now on.
    SnapshotStarted {
        /// The snapshot's size, when known.
        size: Option<u64>,
    },
    /// The snapshot stream ended (extracted, or failed): a live progress
    /// display should stop.
    SnapshotExtracted,
    /// The snapshot is in place at `dir`; SHAs may still be pulled.
    SnapshotRestored {
        /// The clone's directory.
        dir: &'a Path,
        /// What was restored.
        summary: &'a SnapshotSummary,
    },
    /// Requested SHAs the clone lacked are being pulled from its `origin`.
    Pulling {
        /// The missing refs (`NAME=SHA`, or `NAME` for "any SHA") and commits.
        missing: &'a [String],
        /// Whether the server fetched them from upstream first (else it
        /// already had them).
        server_fetched: bool,
    },
}

/// How a [`restore_repo`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreRepoStatus {
    /// DIR already was a clone with every requested SHA: nothing was done.
    HadCommits,
    /// DIR already was a clone and no SHA was requested: nothing was done.
    AlreadyCloned,
    /// A snapshot was restored, or SHAs were pulled, or both.
    Done,
}

/// What the snapshot step did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotSummary {
    /// The snapshot's commit; `None` for a cold snapshot (the clone may be
    /// stale).
    pub commit: Option<String>,
    /// Compressed bytes received.
    pub bytes: u64,
    /// Time from the request to the end of extraction.
    pub elapsed: Duration,
    /// `Some(n)` when the snapshot came in `n` concurrent ranged requests.
    pub ranged_concurrency: Option<usize>,
    /// What became of the delta bundle.
    pub bundle: BundleOutcome,
}

/// What became of the delta bundle after a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleOutcome {
    /// Not asked for ([`RestoreRepoOptions::skip_bundle`]).
    Skipped,
    /// The server offered none.
    NotOffered,
    /// Applied; the clone's new HEAD.
    Applied {
        /// The commit the clone is at now.
        head: String,
    },
    /// The server said the snapshot is current (204).
    UpToDate,
    /// It could not be applied; the clone stays at the snapshot's commit.
    Failed {
        /// Why.
        error: String,
    },
}

/// What [`restore_repo`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreRepoOutcome {
    /// How it ended.
    pub status: RestoreRepoStatus,
    /// The clone's directory: DIR cleaned lexically (`a/./b/` is `a/b`).
    pub dir: PathBuf,
    /// The snapshot step, when DIR was absent or empty.
    pub snapshot: Option<SnapshotSummary>,
    /// The requested SHAs that were missing and then pulled.
    pub pulled: Vec<String>,
}

/// Whether `s` is a full commit SHA: 40 (SHA-1) or 64 (SHA-256) hex digits.
pub fn is_commit_sha(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Restores the clone of [`RestoreRepoOptions::repo`] at `dir` from the
/// server behind `git`.
///
/// The flow, as the Go CLI does it:
/// 1. With refs or commits requested, when DIR already is a clone that has
///    every requested SHA, nothing else happens (LESSONS 12).
/// 2. When DIR does not exist (or is an empty directory), the snapshot is
///    downloaded with parallel ranged requests, extracted while it streams
///    into a staging directory beside DIR (same file system, LESSONS 2),
///    brought up to date by the delta bundle unless skipped (`git pull
///    --ff-only BUNDLE BRANCH`; a failure is only a warning, a 204 means
///    already current, LESSONS 11), and renamed into place. On failure, or
///    when the future is dropped, the staging directory (which this function
///    created) is removed; DIR is never touched (LESSONS 13). An existing,
///    non-empty DIR that is not a clone is an error.
/// 3. With refs or commits requested, SHAs still missing locally make the
///    server ensure them on its mirror (ensure-refs; commits it still lacks
///    are an error), then `git pull --ff-only` from the clone's `origin`, and
///    every requested SHA must be present afterwards.
///
/// Dropping the future (e.g. on Ctrl-C) removes the staging directory, so
/// `dir` never appears half-written.
pub async fn restore_repo(
    git: &GitClient,
    dir: &Path,
    options: &RestoreRepoOptions,
) -> Result<RestoreRepoOutcome> {
    for commit in &options.commits {
        if !is_commit_sha(commit) {
            return Err(Error::InvalidInput(format!(
                "{commit:?} is not a full commit SHA"
            )));
        }
    }
    for (_, sha) in &options.refs {
        if !sha.is_empty() && !is_commit_sha(sha) {
            return Err(Error::InvalidInput(format!(
                "{sha:?} is not a full commit SHA"
            )));
        }
    }
    let dir = clean(dir)?;
    let wants_shas = options.wants_shas();
    let mut outcome = RestoreRepoOutcome {
        status: RestoreRepoStatus::Done,
        dir: dir.clone(),
        snapshot: None,
        pulled: Vec::new(),
    };

    let state = inspect_dir(&dir).await?;
    if state == DirState::Clone {
        if wants_shas && missing_locally(&dir, options).await?.is_empty() {
            outcome.status = RestoreRepoStatus::HadCommits;
            return Ok(outcome);
        }
        if !wants_shas {
            outcome.status = RestoreRepoStatus::AlreadyCloned;
            return Ok(outcome);
        }
    } else {
        outcome.snapshot = Some(restore_snapshot(git, options, &dir).await?);
        if !wants_shas {
            return Ok(outcome);
        }
    }

    // Refs and commits: only what the clone still lacks goes to the server.
    let missing = missing_locally(&dir, options).await?;
    if missing.is_empty() {
        return Ok(outcome);
    }
    let mut request = EnsureGitRefsRequest::default();
    for (name, sha) in &options.refs {
        request.refs.insert(name.clone(), sha.clone());
    }
    request.commits = options.commits.clone();
    let resp = git.ensure_refs(&options.repo, &request).await?;
    if !resp.missing_commits.is_empty() {
        return Err(Error::Backend(format!(
            "the server cannot provide commit(s) {} of {}",
            resp.missing_commits.join(", "),
            options.repo
        )));
    }
    for (name, _) in &options.refs {
        if resp.refs.get(name).is_none_or(String::is_empty) {
            return Err(Error::Backend(format!(
                "the server has no ref {name} in {}",
                options.repo
            )));
        }
    }
    options.emit(RestoreRepoEvent::Pulling {
        missing: &missing,
        server_fetched: resp.fetched,
    });
    run_git(
        &dir,
        &["-c", "pull.rebase=false", "pull", "--ff-only", "--quiet"],
    )
    .await?;
    let still = missing_locally(&dir, options).await?;
    if !still.is_empty() {
        return Err(Error::Backend(format!(
            "after git pull, the clone still lacks {}",
            still.join(", ")
        )));
    }
    outcome.pulled = missing;
    Ok(outcome)
}

/// What DIR is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirState {
    Absent,
    Empty,
    Clone,
}

async fn inspect_dir(dir: &Path) -> Result<DirState> {
    match tokio::fs::symlink_metadata(dir).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DirState::Absent),
        Err(e) => return Err(Error::io("inspect", dir, e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::InvalidInput(format!(
                "{} exists and is not a directory",
                dir.display()
            )))
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
    Err(Error::InvalidInput(format!(
        "{} exists, is not empty and is not a git clone; refusing to restore over it",
        dir.display()
    )))
}

/// The requested SHAs (refs' and commits') the clone at `dir` does not have.
async fn missing_locally(dir: &Path, options: &RestoreRepoOptions) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for (name, sha) in &options.refs {
        if sha.is_empty() {
            // "Any SHA" cannot be checked without asking the server.
            missing.push(name.clone());
        } else if !has_commit(dir, sha).await? {
            missing.push(format!("{name}={sha}"));
        }
    }
    for commit in &options.commits {
        if !has_commit(dir, commit).await? {
            missing.push(commit.clone());
        }
    }
    Ok(missing)
}

async fn has_commit(dir: &Path, sha: &str) -> Result<bool> {
    let status = git_command(dir)
        .args(["cat-file", "-e", &format!("{sha}^{{commit}}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| Error::Backend(format!("cannot run git: {e}")))?;
    Ok(status.success())
}

/// Cleans DIR lexically (`a/./b/` → `a/b`; `..` is kept) so that a trailing slash or `.`
/// never changes where the staging directory goes (LESSONS 3).
fn clean(dir: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in dir.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() || out.file_name().is_none() {
        return Err(Error::InvalidInput(format!(
            "cannot restore into {:?}: name a new directory",
            dir
        )));
    }
    Ok(out)
}

/// Downloads, extracts, freshens and moves the snapshot into `dir`.
async fn restore_snapshot(
    git: &GitClient,
    options: &RestoreRepoOptions,
    dir: &Path,
) -> Result<SnapshotSummary> {
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
    let result = restore_into(git, options, &staging).await;
    let result = match result {
        Ok(summary) => {
            // An empty DIR is replaced by the rename itself: rename(2)
            // refuses anything but an empty directory, so nothing of the
            // user's is ever lost.
            match tokio::fs::rename(&staging, dir).await {
                Ok(()) => Ok(summary),
                Err(e) => Err(Error::io("move the clone into place at", dir, e)),
            }
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(summary) => {
            guard.0 = None;
            options.emit(RestoreRepoEvent::SnapshotRestored {
                dir,
                summary: &summary,
            });
            Ok(summary)
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
    options: &RestoreRepoOptions,
    staging: &Path,
) -> Result<SnapshotSummary> {
    let started = Instant::now();
    let opts = &options.download;
    let snapshot: GitSnapshot = match git.open_snapshot_parallel(&options.repo, opts).await {
        Ok(s) => s,
        Err(Error::NotFound) => {
            return Err(Error::Backend(format!(
                "the server at {} has no snapshot of {}",
                git.base_url(),
                options.repo
            )))
        }
        Err(e) => return Err(e),
    };
    let commit = snapshot.commit.clone();
    let bundle_url = snapshot.bundle_url.clone();
    let size = snapshot.size;
    let counted = Arc::new(AtomicU64::new(0));
    if let Some(progress) = &options.progress {
        progress.set_total(size.unwrap_or(0));
    }
    let body = Counting {
        inner: snapshot.body,
        count: counted.clone(),
        progress: options.progress.clone(),
    };
    options.emit(RestoreRepoEvent::SnapshotStarted { size });
    let extract_opts =
        cachew_archive::ExtractOptions::default().with_threads(options.extract_threads);
    let extracted = cachew_archive::extract_async(body, staging.to_path_buf(), extract_opts).await;
    options.emit(RestoreRepoEvent::SnapshotExtracted);
    extracted.map_err(|e| {
        Error::Backend(format!(
            "cannot extract the snapshot of {}: {e}",
            options.repo
        ))
    })?;
    let mut summary = SnapshotSummary {
        commit,
        bytes: counted.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        ranged_concurrency: snapshot.parallel.then_some(opts.concurrency),
        bundle: BundleOutcome::Skipped,
    };
    if options.skip_bundle {
        return Ok(summary);
    }
    let Some(bundle_url) = bundle_url else {
        summary.bundle = BundleOutcome::NotOffered;
        return Ok(summary);
    };
    summary.bundle = match apply_bundle(git, &bundle_url, staging).await {
        Ok(Some(head)) => BundleOutcome::Applied { head },
        Ok(None) => BundleOutcome::UpToDate,
        Err(e) => BundleOutcome::Failed {
            error: e.to_string(),
        },
    };
    Ok(summary)
}

/// A reader that counts the bytes it hands out.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
    progress: Option<Progress>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.count.fetch_add(n, Ordering::Relaxed);
        if let Some(progress) = &self.progress {
            progress.add(n);
        }
        poll
    }
}

/// Fetches the bundle and `git pull --ff-only`s the current branch from it.
/// `Ok(None)`: the server said the snapshot is current (204).
async fn apply_bundle(git: &GitClient, bundle_url: &str, clone: &Path) -> Result<Option<String>> {
    let mut body = match git.open_bundle(bundle_url).await {
        Ok(body) => body,
        Err(Error::UpToDate) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut data = Vec::new();
    // The I/O error's own text, as the warning has always shown it.
    body.read_to_end(&mut data)
        .await
        .map_err(|e| Error::Backend(e.to_string()))?;
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
        let bundle_arg = bundle.to_str().ok_or_else(|| {
            Error::InvalidInput(format!("path is not UTF-8: {}", bundle.display()))
        })?;
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
async fn run_git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = git_command(dir)
        .args(args)
        .output()
        .await
        .map_err(|e| Error::Backend(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        let what = args
            .iter()
            .find(|a| !a.starts_with('-') && !a.contains('='))
            .copied();
        return Err(Error::Backend(format!(
            "git {} failed: {}",
            what.unwrap_or("command"),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn commit_shas_are_full_hex() {
        assert!(is_commit_sha(&"a".repeat(40)));
        assert!(is_commit_sha(&"F".repeat(64)));
        assert!(!is_commit_sha("abc"));
        assert!(!is_commit_sha(&"g".repeat(40)));
    }
}

//! [`restore_repo`]: a git clone from the server's snapshot, brought up to
//! date by its delta bundle, with required refs and commits checked
//! (`PROTOCOL.md` §5, §7) — the work behind `cachew git restore`: its
//! options, events and outcome, the snapshot, bundle and LFS steps. DIR
//! handling is in `dir.rs`, refs and commits in `refs.rs`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};

use super::dir::{self, DirState, TempPath};
use super::refs::{self, git_command, is_commit_sha_prefix, run_git};
use super::{GitClient, GitSnapshot};
use crate::error::{Error, Result};
use crate::parallel::ParallelOptions;
use crate::save::Progress;
use crate::staging::{self, Staging};

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
    /// an empty SHA means "any". SHAs may be abbreviated; they are sent to
    /// the server as given.
    pub refs: Vec<(String, String)>,
    /// Required commits (full or abbreviated SHAs, sent as given).
    pub commits: Vec<String>,
    /// Do not fetch and apply the delta bundle after the snapshot.
    pub skip_bundle: bool,
    /// Also restore the server's LFS snapshot into `.git/lfs` (an
    /// extension; none on the server is not an error).
    pub lfs: bool,
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
            lfs: false,
            extract_threads: 0,
            download: ParallelOptions::default(),
            progress: None,
            on_event: None,
        }
    }

    fn wants_shas(&self) -> bool {
        !self.refs.is_empty() || !self.commits.is_empty()
    }

    pub(super) fn emit(&self, event: RestoreRepoEvent<'_>) {
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
            .field("lfs", &self.lfs)
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
    /// What became of the LFS snapshot.
    pub lfs: LfsOutcome,
    /// Whether DIR existed, so the snapshot was merged into it in place
    /// (else the clone was renamed into place).
    pub in_place: bool,
}

/// What became of the LFS snapshot ([`RestoreRepoOptions::lfs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LfsOutcome {
    /// Not asked for.
    Skipped,
    /// The server has none (404).
    NotOffered,
    /// Extracted into `.git/lfs`.
    Restored {
        /// Compressed bytes received.
        bytes: u64,
    },
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
    /// The snapshot step; `None` when it was skipped
    /// ([`RestoreRepoStatus::HadCommits`]).
    pub snapshot: Option<SnapshotSummary>,
    /// The requested SHAs that were missing and then pulled.
    pub pulled: Vec<String>,
    /// Requested SHAs (pinned refs as `NAME=SHA`, commits) the clone still
    /// lacks after the pull: the Go CLI succeeds all the same, so this is
    /// for a warning.
    pub still_missing: Vec<String>,
}

/// Restores the clone of [`RestoreRepoOptions::repo`] at `dir` from the
/// server behind `git`.
///
/// The flow, as the Go CLI's (`PROTOCOL.md` §5), whatever form DIR takes
/// (relative paths are made absolute first, so `git` always gets absolute
/// paths):
/// 1. With refs or commits requested, when DIR already is a clone that has
///    every requested SHA (every ref pinned), nothing else happens
///    (LESSONS 12) — unless a merge into DIR was killed half-way.
/// 2. The snapshot is downloaded with parallel ranged requests and
///    extracted while it streams into a fresh staging directory beside DIR
///    (same file system, LESSONS 2; named for this process, so that what a
///    killed restore leaves is removed by the next restore of DIR and by
///    [`gc`](crate::gc)); with [`RestoreRepoOptions::lfs`], the LFS
///    snapshot goes into its `.git` (404: none); unless skipped, the delta
///    bundle is streamed to a file in the staging directory and applied
///    (`git pull --ff-only BUNDLE BRANCH`; a failure is only a warning, a
///    204 means already current, LESSONS 11).
/// 3. The finished clone is moved into place: renamed when DIR is absent or
///    empty; merged into DIR when it exists — a stale clone, a dirty one, or
///    a directory that is no clone — as extracting in place would (the
///    snapshot's files win, DIR's other files stay), through a journal that
///    is rolled back if a step fails or the result is not a working clone.
/// 4. With refs or commits requested: nothing more when the clone has them
///    all; else ensure-refs (commits the server lacks are an error), and
///    `git pull --ff-only` from `origin` unless the clone already has every
///    SHA the server resolved.
///
/// A failure (or dropping the future, e.g. on Ctrl-C) before step 3 leaves
/// DIR untouched and removes the staging directory and temporary files.
pub async fn restore_repo(
    git: &GitClient,
    dir: &Path,
    options: &RestoreRepoOptions,
) -> Result<RestoreRepoOutcome> {
    let shas = options
        .refs
        .iter()
        .map(|(_, sha)| sha)
        .filter(|s| !s.is_empty());
    for sha in shas.chain(&options.commits) {
        if !is_commit_sha_prefix(sha) {
            return Err(Error::InvalidInput(format!(
                "{sha:?} is not a commit SHA (4 to 64 hex digits)"
            )));
        }
    }
    let dir = dir::resolve(dir)?;
    let wants_shas = options.wants_shas();
    let mut outcome = RestoreRepoOutcome {
        status: RestoreRepoStatus::Done,
        dir: dir.clone(),
        snapshot: None,
        pulled: Vec::new(),
        still_missing: Vec::new(),
    };

    let state = dir::inspect(&dir).await?;
    // What killed restores of DIR left beside it (their owner is gone),
    // whether or not this one needs a snapshot.
    let real = dir::real_target(&dir, state)?;
    {
        let real = real.clone();
        let _ = tokio::task::spawn_blocking(move || staging::recover(&real)).await;
    }
    if state == DirState::Clone
        && wants_shas
        && !dir::merge_interrupted(&dir)
        && refs::has_everything(&dir, options).await?
    {
        outcome.status = RestoreRepoStatus::HadCommits;
        return Ok(outcome);
    }
    outcome.snapshot = Some(restore_snapshot(git, options, &dir, &real, state).await?);
    if wants_shas {
        let refs = refs::satisfy(git, &dir, options).await?;
        outcome.pulled = refs.pulled;
        outcome.still_missing = refs.still_missing;
    }
    Ok(outcome)
}

/// Restores the snapshot (with bundle and LFS objects) into a staging
/// directory beside `real` (DIR's real path), then moves it into place at
/// `dir`.
async fn restore_snapshot(
    git: &GitClient,
    options: &RestoreRepoOptions,
    dir: &Path,
    real: &Path,
    state: DirState,
) -> Result<SnapshotSummary> {
    // Removed on drop (a failure, or this future dropped), with the parents
    // of DIR it created.
    let staging = Staging::create(real)?;
    let mut summary = restore_into(git, options, &staging.path).await?;
    summary.in_place = !matches!(state, DirState::Absent | DirState::Empty);
    // From here the blocking task owns the staging directory: it runs to
    // its end (rolling back on failure) even if this future is dropped,
    // then removes it.
    let target = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let placed = dir::place(&staging.path, &target, state);
        drop(staging);
        placed
    })
    .await
    .map_err(|e| Error::Backend(format!("moving the clone into place panicked: {e}")))??;
    options.emit(RestoreRepoEvent::SnapshotRestored {
        dir,
        summary: &summary,
    });
    Ok(summary)
}

/// Builds the clone in `staging` ([`dir::clone_in`]): snapshot, LFS, bundle.
async fn restore_into(
    git: &GitClient,
    options: &RestoreRepoOptions,
    staging: &Path,
) -> Result<SnapshotSummary> {
    let clone = dir::clone_in(staging);
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
    let extracted = cachew_archive::extract_async(body, clone.clone(), extract_opts).await;
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
        lfs: LfsOutcome::Skipped,
        in_place: false,
    };
    // LFS objects first: they are those of the mirror's HEAD, where the
    // bundle leads, so a `git pull` that smudges finds them locally.
    if options.lfs {
        summary.lfs = restore_lfs(git, options, &clone).await?;
    }
    if !options.skip_bundle {
        summary.bundle = match bundle_url {
            None => BundleOutcome::NotOffered,
            Some(url) => match apply_bundle(git, &url, staging).await {
                Ok(Some(head)) => BundleOutcome::Applied { head },
                Ok(None) => BundleOutcome::UpToDate,
                Err(e) => BundleOutcome::Failed {
                    error: e.to_string(),
                },
            },
        };
    }
    summary.elapsed = started.elapsed();
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

/// Streams the bundle to a file in the staging directory (never into
/// memory), then `git pull --ff-only`s the clone's branch from it.
/// `Ok(None)`: the server said the snapshot is current (204).
async fn apply_bundle(git: &GitClient, bundle_url: &str, staging: &Path) -> Result<Option<String>> {
    let clone = &dir::clone_in(staging);
    let mut body = match git.open_bundle(bundle_url).await {
        Ok(body) => body,
        Err(Error::UpToDate) => return Ok(None),
        Err(e) => return Err(e),
    };
    let bundle = TempPath::new(dir::bundle_in(staging));
    let mut file = tokio::fs::File::create(bundle.path())
        .await
        .map_err(|e| Error::io("create", bundle.path(), e))?;
    // The I/O error's own text, as the warning has always shown it.
    tokio::io::copy(&mut body, &mut file)
        .await
        .map_err(|e| Error::Backend(e.to_string()))?;
    file.sync_all()
        .await
        .map_err(|e| Error::io("write", bundle.path(), e))?;
    drop(file);
    let branch = run_git(clone, &["symbolic-ref", "--short", "HEAD"]).await?;
    let args = ["-c", "pull.rebase=false", "pull", "--ff-only", "--quiet"];
    refs::output(
        git_command(clone)
            .args(args)
            .arg(bundle.path())
            .arg(&branch),
        &args,
    )
    .await?;
    run_git(clone, &["rev-parse", "HEAD"]).await.map(Some)
}

/// Extracts the server's LFS snapshot (paths relative to `.git`, e.g.
/// `./lfs/objects/…`) into the clone's `.git`.
async fn restore_lfs(
    git: &GitClient,
    options: &RestoreRepoOptions,
    clone: &Path,
) -> Result<LfsOutcome> {
    let snapshot = match git.open_lfs_snapshot(&options.repo).await {
        Ok(s) => s,
        Err(Error::NotFound) => return Ok(LfsOutcome::NotOffered),
        Err(e) => return Err(e),
    };
    let counted = Arc::new(AtomicU64::new(0));
    let body = Counting {
        inner: snapshot.body,
        count: counted.clone(),
        progress: None,
    };
    let extract_opts =
        cachew_archive::ExtractOptions::default().with_threads(options.extract_threads);
    cachew_archive::extract_async(body, clone.join(".git"), extract_opts)
        .await
        .map_err(|e| {
            Error::Backend(format!(
                "cannot extract the LFS snapshot of {}: {e}",
                options.repo
            ))
        })?;
    Ok(LfsOutcome::Restored {
        bytes: counted.load(Ordering::Relaxed),
    })
}

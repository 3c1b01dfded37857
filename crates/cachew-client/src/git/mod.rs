//! The git endpoints of a Cachew server (`PROTOCOL.md` §5), the Go client's
//! `OpenGitSnapshot`, `OpenGitLFSSnapshot`, `OpenGitBundle` and
//! `EnsureGitRefs`.
//!
//! [`GitClient`] talks to `{base}/git/{host}/{path}/…` with an
//! [`HttpClient`](cachew_transport::HttpClient) — usually the one of a
//! [`RemoteCache`](crate::RemoteCache) ([`GitClient::from_remote`]) — so
//! authorization, retries and the idle timeout of the remote cache apply.
//!
//! [`restore_repo`] is `cachew git restore` as a library call: a clone from
//! the server's snapshot, brought up to date by the delta bundle, with
//! required refs and commits checked (and fetched through ensure-refs).
//!
//! - `client.rs`: [`GitClient`] and [`GitSnapshot`].
//! - `restore.rs`: [`restore_repo`], its options, events and outcome; the
//!   snapshot, bundle and LFS steps.
//! - `dir.rs`: DIR resolution, staging, and moving the clone into place
//!   (rename, or a journaled merge into an existing DIR).
//! - `refs.rs`: `--ref` / `--commit`: local checks, ensure-refs, `git pull`.
//!
//! ```no_run
//! use cachew_client::git::GitClient;
//! use cachew_client::parallel::ParallelOptions;
//! use cachew_transport::HttpClient;
//!
//! # async fn example() -> cachew_client::Result<()> {
//! let http = HttpClient::builder().build().expect("client");
//! let git = GitClient::new(http, "http://127.0.0.1:8080");
//! let snapshot = git
//!     .open_snapshot_parallel("https://github.com/org/repo", &ParallelOptions::default())
//!     .await?;
//! println!("snapshot of {:?}, bundle {:?}", snapshot.commit, snapshot.bundle_url);
//! // Extract `snapshot.body` (tar + zstd), then apply the bundle if any.
//! # Ok(())
//! # }
//! ```

mod client;
mod dir;
mod refs;
mod restore;

pub use client::{GitClient, GitSnapshot, GIT_RESPONSE_HEADER_TIMEOUT};
pub use refs::{is_commit_sha, is_commit_sha_prefix};
pub use restore::{
    restore_repo, BundleOutcome, EventSink, LfsOutcome, RestoreRepoEvent, RestoreRepoOptions,
    RestoreRepoOutcome, RestoreRepoStatus, SnapshotSummary,
};

//! `--ref NAME=SHA` / `--commit SHA` of `git restore`: SHA syntax, which
//! requested SHAs the clone has, the ensure-refs round trip and the final
//! `git pull --ff-only` (`PROTOCOL.md` §5) — and the `git` runner the
//! restore shares.

use std::path::Path;
use std::process::Stdio;

use cachew_proto::EnsureGitRefsRequest;

use super::restore::{RestoreRepoEvent, RestoreRepoOptions};
use super::GitClient;
use crate::error::{Error, Result};

/// Whether `s` is a full commit SHA: 40 (SHA-1) or 64 (SHA-256) hex digits.
pub fn is_commit_sha(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` can name a commit by SHA: a full SHA, or an abbreviation of
/// at least 4 hex digits (git's shortest).
pub fn is_commit_sha_prefix(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What the ref step did.
#[derive(Debug, Default)]
pub(super) struct RefsOutcome {
    /// The requested SHAs that were missing before `git pull`.
    pub(super) pulled: Vec<String>,
    /// Requested SHAs (pinned refs, commits) still absent after the pull.
    pub(super) still_missing: Vec<String>,
    /// Whether ensure-refs was called.
    pub(super) asked_server: bool,
}

/// Whether every ref is pinned and the clone has every requested SHA: the
/// fast path that skips ensure-refs and `git pull` (LESSONS 12). A `NAME=`
/// ref cannot be checked locally.
pub(super) async fn has_everything(dir: &Path, options: &RestoreRepoOptions) -> Result<bool> {
    if options.refs.iter().any(|(_, sha)| sha.is_empty()) {
        return Ok(false);
    }
    Ok(missing_locally(dir, options).await?.is_empty())
}

/// Makes the clone at `dir` hold the requested refs and commits, as the
/// Go CLI's `satisfyRefs` does: nothing when the clone has them all; else
/// ensure-refs (commits the server still lacks are an error), then `git
/// pull --ff-only` from `origin` unless the clone already has every SHA the
/// server resolved. A ref the server leaves out of its answer (or answers
/// empty) gives no evidence, so the pull runs; what is still missing after
/// it is reported, not an error (the Go CLI does not check again).
pub(super) async fn satisfy(
    git: &GitClient,
    dir: &Path,
    options: &RestoreRepoOptions,
) -> Result<RefsOutcome> {
    let mut outcome = RefsOutcome::default();
    if has_everything(dir, options).await? {
        return Ok(outcome);
    }
    let mut request = EnsureGitRefsRequest::default();
    for (name, sha) in &options.refs {
        request.refs.insert(name.clone(), sha.clone());
    }
    request.commits = options.commits.clone();
    outcome.asked_server = true;
    let resp = git.ensure_refs(&options.repo, &request).await?;
    if !resp.missing_commits.is_empty() {
        return Err(Error::Backend(format!(
            "the server cannot provide commit(s) {} of {}",
            resp.missing_commits.join(", "),
            options.repo
        )));
    }
    let mut refs_satisfied = true;
    for (name, _) in &options.refs {
        match resp.refs.get(name).filter(|s| !s.is_empty()) {
            Some(resolved) if has_commit(dir, resolved).await? => {}
            _ => refs_satisfied = false,
        }
    }
    let mut commits_satisfied = true;
    for commit in &options.commits {
        if !has_commit(dir, commit).await? {
            commits_satisfied = false;
        }
    }
    if refs_satisfied && commits_satisfied {
        return Ok(outcome);
    }
    let missing = missing_locally(dir, options).await?;
    options.emit(RestoreRepoEvent::Pulling {
        missing: &missing,
        server_fetched: resp.fetched,
    });
    run_git(
        dir,
        &["-c", "pull.rebase=false", "pull", "--ff-only", "--quiet"],
    )
    .await?;
    outcome.still_missing = missing_locally(dir, options)
        .await?
        .into_iter()
        .filter(|m| m.contains('=') || !options.refs.iter().any(|(n, _)| n == m))
        .collect();
    outcome.pulled = missing;
    Ok(outcome)
}

/// The requested SHAs (refs' and commits') the clone at `dir` does not
/// have; a `NAME=` ref (any SHA) is listed as `NAME`.
async fn missing_locally(dir: &Path, options: &RestoreRepoOptions) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for (name, sha) in &options.refs {
        if sha.is_empty() {
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

/// Whether the clone has commit `sha` (full or abbreviated, unambiguous).
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

/// `git -C dir`, with no prompt and no stdin, killed when dropped.
pub(super) fn git_command(dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs git in `dir`; its trimmed stdout, or an error with its stderr.
pub(super) async fn run_git(dir: &Path, args: &[&str]) -> Result<String> {
    output(git_command(dir).args(args), args).await
}

/// Runs `cmd` (a [`git_command`] with `args` given); its trimmed stdout, or
/// an error naming git's subcommand, with its stderr.
pub(super) async fn output(cmd: &mut tokio::process::Command, args: &[&str]) -> Result<String> {
    let out = cmd
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
    fn commit_shas_are_hex() {
        assert!(is_commit_sha(&"a".repeat(40)));
        assert!(is_commit_sha(&"F".repeat(64)));
        assert!(!is_commit_sha("abc"));
        assert!(!is_commit_sha(&"g".repeat(40)));
        assert!(is_commit_sha_prefix("abcd"));
        assert!(is_commit_sha_prefix(&"a".repeat(40)));
        assert!(!is_commit_sha_prefix("abc"));
        assert!(!is_commit_sha_prefix("main"));
        assert!(!is_commit_sha_prefix(&"a".repeat(65)));
    }
}

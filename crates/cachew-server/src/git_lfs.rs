//! `GET …/lfs-snapshot.tar.zst`: the LFS objects the mirror's HEAD needs,
//! built as upstream's server builds them (`generateAndUploadLFSSnapshot`).
//!
//! When a `.gitattributes` at the mirror's HEAD declares `filter=lfs`
//! (`git grep`), a clone of the mirror is made without smudging, its
//! `origin` pointed back at the upstream repository, `git lfs install
//! --local` and `git lfs fetch origin HEAD` are run in it (only the objects
//! HEAD's tree references, not their history), and its `.git/lfs` is
//! archived with names relative to `.git` (`lfs/objects/…`, `*.lock`
//! excluded), so that a client extracts it straight into its clone's
//! `.git`.
//!
//! Differences from upstream, which builds the archive in a periodic job
//! and answers 404 until the first one is done: this server takes it on the
//! first request (under the repository's lock, like a snapshot) and keeps
//! it until the mirror's HEAD moves. It does not refresh the mirror: a
//! restore asks for the LFS snapshot right after the working-tree snapshot,
//! which did. 404 when HEAD tracks nothing with LFS, when `git-lfs` is not
//! installed here, or when the fetch brought no objects; 502 when the fetch
//! fails.

use std::path::Path;

use http::{HeaderMap, Response, StatusCode};

use crate::body::ResponseBody;
use crate::git::{ensure_mirror, git, path_str, serve_kept, unique, GitState, Repo, Snapshot};
use crate::handler::{open_options, text};

type Resp = Response<ResponseBody>;

/// What an attempt to take an LFS snapshot found.
enum Taken {
    /// The archive, kept on disk.
    Snapshot(Snapshot),
    /// Nothing to serve, and why (answered as 404).
    Nothing(String),
}

/// Answers `GET …/lfs-snapshot.tar.zst` for `repo`.
pub(crate) async fn lfs_snapshot(state: &GitState, repo: &Repo, headers: &HeaderMap) -> Resp {
    let options = match open_options(headers, true) {
        Ok(o) => o,
        Err(resp) => return *resp,
    };
    let lock = state.lock_for(&repo.name);
    let snap = {
        let mut kept = lock.lock().await;
        if let Err(e) = ensure_mirror(repo).await {
            return text(StatusCode::BAD_GATEWAY, &e);
        }
        let head = match git(Some(&repo.mirror()), &["rev-parse", "HEAD"]).await {
            Ok(h) => h,
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e),
        };
        match kept.lfs.as_ref() {
            Some(s) if s.commit == head => s.clone(),
            _ => match take(repo, &head).await {
                Ok(Taken::Snapshot(s)) => {
                    kept.lfs = Some(s.clone());
                    s
                }
                Ok(Taken::Nothing(why)) => {
                    kept.lfs = None;
                    return text(
                        StatusCode::NOT_FOUND,
                        &format!("no LFS snapshot of {}: {why}", repo.name),
                    );
                }
                Err(e) => return text(StatusCode::BAD_GATEWAY, &e),
            },
        }
    };
    let mut h = HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(cachew_proto::header::ARCHIVE_CONTENT_TYPE) {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    serve_kept(&snap, h, &options).await
}

/// Runs `program` (`git` or `git-lfs`) with `args` in `dir`; `Ok(true)` when
/// it exits 0, `Ok(false)` when it exits 1, an error with its standard
/// error otherwise. Killed if the request is dropped.
async fn run(program: &str, dir: &Path, args: &[&str]) -> Result<bool, String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_LFS_SKIP_SMUDGE", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(format!(
            "{program} {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Like [`run`], where exit 1 is a failure too.
async fn must(program: &str, dir: &Path, args: &[&str]) -> Result<(), String> {
    if run(program, dir, args).await? {
        return Ok(());
    }
    Err(format!(
        "{program} {} failed",
        args.first().copied().unwrap_or_default()
    ))
}

/// Takes the LFS snapshot of the mirror's HEAD (`head`).
async fn take(repo: &Repo, head: &str) -> Result<Taken, String> {
    let mirror = repo.mirror();
    // Exit 1: no .gitattributes anywhere in HEAD declares the LFS filter.
    let grep = ["grep", "-q", "filter=lfs", "HEAD", "--", "*.gitattributes"];
    if !run("git", &mirror, &grep).await? {
        return Ok(Taken::Nothing("its HEAD tracks no file with LFS".into()));
    }
    if run("git-lfs", &repo.dir, &["version"]).await.is_err() {
        return Ok(Taken::Nothing(
            "git-lfs is not installed on this server".into(),
        ));
    }
    let id = unique();
    let work = repo.dir.join(format!("lfs-checkout-{id}"));
    let result = async {
        let (mirror_s, work_s) = (path_str(&mirror)?, path_str(&work)?);
        let clone = ["clone", "--quiet", "--no-local", &mirror_s, &work_s];
        must("git", &repo.dir, &clone).await?;
        // Objects come from the upstream repository, as upstream's server
        // fetches them from the forge.
        let upstream = path_str(&repo.upstream)?;
        must("git", &work, &["remote", "set-url", "origin", &upstream]).await?;
        must("git-lfs", &work, &["install", "--local"]).await?;
        must("git-lfs", &work, &["fetch", "origin", "HEAD"]).await?;
        let git_dir = work.join(".git");
        if !git_dir.join("lfs/objects").is_dir() {
            return Ok(Taken::Nothing("no LFS objects at its HEAD".into()));
        }
        let final_path = repo.dir.join("lfs-snapshot.tar.zst");
        let tmp = repo.dir.join(format!("lfs-snapshot.tmp-{id}"));
        let tmp2 = tmp.clone();
        let archived = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let file = std::fs::File::create(&tmp2)
                .map_err(|e| format!("cannot create {}: {e}", tmp2.display()))?;
            let mut out = std::io::BufWriter::new(file);
            cachew_archive::archive(
                &mut out,
                &git_dir,
                &["lfs"],
                &["*.lock"],
                &cachew_archive::ArchiveOptions::default(),
            )
            .map_err(|e| format!("cannot archive the LFS objects: {e}"))?;
            std::io::Write::flush(&mut out).map_err(|e| format!("cannot write: {e}"))?;
            Ok(())
        })
        .await
        .map_err(|e| format!("archiving panicked: {e}"))
        .and_then(|r| r);
        if let Err(e) = archived {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tokio::fs::rename(&tmp, &final_path)
            .await
            .map_err(|e| format!("cannot move the LFS snapshot into place: {e}"))?;
        let etag = format!("lfs-{head}-{id}");
        Snapshot::kept(final_path, head.to_owned(), &etag)
            .await
            .map(Taken::Snapshot)
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    result
}

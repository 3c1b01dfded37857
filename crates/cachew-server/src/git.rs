//! The `/git/` endpoints (`PROTOCOL.md` §5), for tests and local use.
//!
//! Upstream repositories are plain local git repositories under a root
//! directory (made absolute at start, so a relative `--git-root` works): repository URL `http://example.test/org/repo` is served from
//! `{root}/example.test/org/repo` (or `…/repo.git`). The server keeps its
//! own state under `{root}/.cachew/{host}/{path}/`:
//!
//! - `mirror.git`, a `git clone --mirror` of the upstream, refreshed with
//!   `git fetch` by every snapshot request without `If-Match` (the first
//!   request of a download; the pinned chunk requests that follow must see
//!   the same snapshot) and by ensure-refs when something is missing;
//! - `snapshot.tar.zst`, a tar + zstd of a fresh clone of the mirror
//!   (working tree and `.git`), taken on the first request and kept until it
//!   is explicitly refreshed (`DELETE …/snapshot.tar.zst`), so that a
//!   repository that gains commits afterwards is brought up to date by a
//!   bundle;
//! - `lfs-snapshot.tar.zst`, the LFS objects of the mirror's HEAD
//!   (`git_lfs.rs`).
//!
//! Endpoints:
//! - `GET …/snapshot.tar.zst`: the snapshot, with ranges and `If-Match` /
//!   `If-None-Match` / `If-Range` applied by the object API's rules, an
//!   `ETag`, `X-Cachew-Snapshot-Commit: <sha>` and, once the mirror's HEAD
//!   moved past the snapshot, `X-Cachew-Bundle-Url:
//!   /git/{host}/{path}/snapshot.bundle?base=<sha>`. 404 without an upstream.
//! - `HEAD …/snapshot.tar.zst`: the same headers from the kept snapshot
//!   (taken first if there is none), no body, no mirror refresh — as the
//!   Go server answers it from its cache's metadata.
//! - `DELETE …/snapshot.tar.zst`: drops the kept snapshot (a server-local
//!   extension; the next request takes a fresh one).
//! - `GET …/lfs-snapshot.tar.zst`: the LFS objects the mirror's HEAD
//!   needs, as upstream's server builds them (`git_lfs.rs`); 404 when the
//!   HEAD tracks nothing with LFS or `git-lfs` is not installed.
//! - `GET …/snapshot.bundle?base=<sha>`: `git bundle create` of the HEAD
//!   branch from `base`; 204 when `base` is the mirror's HEAD.
//! - `POST …/ensure-refs`: checks the requested refs and commits in the
//!   mirror, runs `git fetch` if one is missing or stale, and answers with
//!   what the mirror holds afterwards (abbreviated SHAs, 4+ hex digits,
//!   are accepted: the Go CLI sends SHAs as given); 400 for an empty or
//!   invalid request,
//!   502 when the fetch fails.
//! - `GET …/info/refs?service=git-upload-pack` and `POST …/git-upload-pack`:
//!   git's smart HTTP protocol over the mirror (fetch and clone; pushes get
//!   403), in `git_http.rs`.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use cachew_client::EntityTag;
use cachew_proto::{
    header, EnsureGitRefsRequest, EnsureGitRefsResponse, OpenOptions, Precondition, RangeResolution,
};
use http::header::{
    HeaderName, HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    LAST_MODIFIED,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::body::ResponseBody;
use crate::handler::{open_options, text};
use crate::request_body::RequestBody;

type Resp = Response<ResponseBody>;

/// A status and a message, answered as `text/plain`.
pub(crate) type Failure = (StatusCode, String);

/// Largest ensure-refs request body accepted.
const MAX_REQUEST: usize = 1 << 20;

/// The git endpoints' configuration and per-repository state.
#[derive(Debug)]
pub(crate) struct GitState {
    root: PathBuf,
    state_dir: PathBuf,
    repos: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Kept>>>>,
}

/// What is kept for one repository, behind its lock.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// The working-tree snapshot.
    snapshot: Option<Snapshot>,
    /// The LFS snapshot (`git_lfs.rs`), of the HEAD in its `commit`.
    pub(crate) lfs: Option<Snapshot>,
}

/// A snapshot (or LFS snapshot) taken and kept on disk.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) path: PathBuf,
    pub(crate) commit: String,
    pub(crate) etag: EntityTag,
    pub(crate) size: u64,
    pub(crate) modified: SystemTime,
}

impl Snapshot {
    /// The kept file at `path`, of `commit`, with ETag `etag`.
    pub(crate) async fn kept(
        path: PathBuf,
        commit: String,
        etag: &str,
    ) -> Result<Snapshot, String> {
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
        let etag = EntityTag::new(etag).map_err(|e| e.to_string())?;
        Ok(Snapshot {
            path,
            commit,
            etag,
            size: meta.len(),
            modified: meta.modified().unwrap_or_else(|_| SystemTime::now()),
        })
    }
}

/// A repository addressed by a request.
pub(crate) struct Repo {
    /// `{host}/{path}`.
    pub(crate) name: String,
    /// The upstream repository.
    pub(crate) upstream: PathBuf,
    /// The server's state for it (`{root}/.cachew/{host}/{path}`).
    pub(crate) dir: PathBuf,
}

impl Repo {
    pub(crate) fn mirror(&self) -> PathBuf {
        self.dir.join("mirror.git")
    }
}

impl GitState {
    /// Serves the repositories under `root`, made absolute: git runs with
    /// `-C` in other directories, where a relative path would point
    /// elsewhere (LESSONS 15).
    pub(crate) fn new(root: PathBuf) -> GitState {
        let root = std::path::absolute(&root).unwrap_or(root);
        let state_dir = root.join(".cachew");
        GitState {
            root,
            state_dir,
            repos: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<Kept>> {
        let mut repos = self.repos.lock().unwrap_or_else(|e| e.into_inner());
        repos.entry(name.to_owned()).or_default().clone()
    }

    /// Clones the mirror if needed and, with `refresh`, fetches into it,
    /// under the repository's lock as a snapshot request does; smart HTTP
    /// serves the mirror once this returns.
    pub(crate) async fn freshen(&self, repo: &Repo, refresh: bool) -> Result<(), String> {
        let lock = self.lock_for(&repo.name);
        let _guard = lock.lock().await;
        ensure_mirror(repo).await?;
        if refresh {
            fetch(repo).await?;
        }
        Ok(())
    }

    /// Maps `{host}/{path}` to the upstream repository, refusing anything
    /// that could leave the root.
    pub(crate) fn repo(&self, name: &str) -> Result<Repo, Failure> {
        let bad = || {
            (
                StatusCode::BAD_REQUEST,
                "invalid repository path".to_owned(),
            )
        };
        let segments: Vec<&str> = name.split('/').collect();
        if segments.len() < 2
            || segments
                .iter()
                .any(|s| s.is_empty() || s.starts_with('.') || s.contains('\\'))
        {
            return Err(bad());
        }
        let plain = self.root.join(name);
        let upstream = if plain.is_dir() {
            plain
        } else {
            let bare = self.root.join(format!("{name}.git"));
            if !bare.is_dir() {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("no repository {name} on this server"),
                ));
            }
            bare
        };
        Ok(Repo {
            name: name.to_owned(),
            upstream,
            dir: self.state_dir.join(name),
        })
    }
}

/// Handles a request under `/git/`; `rest` is the path after `/git/`.
pub(crate) async fn handle(state: &GitState, rest: &str, req: Request<RequestBody>) -> Resp {
    if let Some((name, service)) = crate::git_http::split(rest) {
        return crate::git_http::handle(state, name, service, req).await;
    }
    let Some((name, endpoint)) = rest.rsplit_once('/') else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let method = req.method().clone();
    match (endpoint, &method) {
        ("snapshot.tar.zst", &Method::GET | &Method::HEAD | &Method::DELETE) => {}
        ("lfs-snapshot.tar.zst", &Method::GET) => {}
        ("snapshot.bundle", &Method::GET) => {}
        ("ensure-refs", &Method::POST) => {}
        ("snapshot.tar.zst", _) => return not_allowed("GET, HEAD, DELETE"),
        ("lfs-snapshot.tar.zst" | "snapshot.bundle", _) => return not_allowed("GET"),
        ("ensure-refs", _) => return not_allowed("POST"),
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    }
    let repo = match state.repo(name) {
        Ok(repo) => repo,
        Err((status, message)) => return text(status, &message),
    };
    match endpoint {
        "snapshot.tar.zst" if method == Method::DELETE => drop_snapshot(state, &repo).await,
        "snapshot.tar.zst" => {
            let head_only = method == Method::HEAD;
            let mut resp = snapshot(state, &repo, req.headers(), head_only).await;
            if head_only {
                // The metadata only: same headers (Content-Length included),
                // no body.
                *resp.body_mut() = ResponseBody::empty();
            }
            resp
        }
        "lfs-snapshot.tar.zst" => crate::git_lfs::lfs_snapshot(state, &repo, req.headers()).await,
        "snapshot.bundle" => bundle(state, &repo, req.uri().query().unwrap_or("")).await,
        _ => ensure_refs(state, &repo, req.into_body()).await,
    }
}

/// Runs git and returns its trimmed standard output, or a message with its
/// standard error.
pub(crate) async fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        // As upstream clones for snapshots: LFS files stay pointers, even
        // where the user's configuration installs the LFS filter.
        .env("GIT_LFS_SKIP_SMUDGE", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Clones the mirror if it does not exist yet.
pub(crate) async fn ensure_mirror(repo: &Repo) -> Result<(), String> {
    let mirror = repo.mirror();
    if mirror.join("HEAD").is_file() {
        return Ok(());
    }
    tokio::fs::create_dir_all(&repo.dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", repo.dir.display()))?;
    let tmp = repo.dir.join(format!("mirror.tmp-{}", unique()));
    let (src, dst) = (path_str(&repo.upstream)?, path_str(&tmp)?);
    git(None, &["clone", "--mirror", "--quiet", &src, &dst]).await?;
    tokio::fs::rename(&tmp, &mirror)
        .await
        .map_err(|e| format!("cannot move the mirror into place: {e}"))
}

async fn fetch(repo: &Repo) -> Result<(), String> {
    git(
        Some(&repo.mirror()),
        &["fetch", "--prune", "--quiet", "origin"],
    )
    .await?;
    Ok(())
}

pub(crate) fn path_str(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("path is not UTF-8: {}", path.display()))
}

pub(crate) fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos:x}")
}

/// Takes a snapshot of the mirror's HEAD: a fresh clone, archived.
async fn take_snapshot(repo: &Repo) -> Result<Snapshot, String> {
    let id = unique();
    let work = repo.dir.join(format!("checkout-{id}"));
    let (mirror, work_str) = (path_str(&repo.mirror())?, path_str(&work)?);
    // --no-local copies objects through the pack protocol instead of
    // hard-linking them to the mirror, so the archive holds plain files.
    git(
        None,
        &["clone", "--quiet", "--no-local", &mirror, &work_str],
    )
    .await?;
    let origin = format!("https://{}", repo.name);
    let result = async {
        git(Some(&work), &["remote", "set-url", "origin", &origin]).await?;
        let commit = git(Some(&work), &["rev-parse", "HEAD"]).await?;
        let final_path = repo.dir.join("snapshot.tar.zst");
        let tmp = repo.dir.join(format!("snapshot.tmp-{id}"));
        let (work2, tmp2) = (work.clone(), tmp.clone());
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let file = std::fs::File::create(&tmp2)
                .map_err(|e| format!("cannot create {}: {e}", tmp2.display()))?;
            let mut out = std::io::BufWriter::new(file);
            cachew_archive::archive(
                &mut out,
                &work2,
                &["."],
                &[] as &[&str],
                &cachew_archive::ArchiveOptions::default(),
            )
            .map_err(|e| format!("cannot archive the checkout: {e}"))?;
            std::io::Write::flush(&mut out).map_err(|e| format!("cannot write: {e}"))?;
            Ok(())
        })
        .await
        .map_err(|e| format!("archiving panicked: {e}"))??;
        tokio::fs::rename(&tmp, &final_path)
            .await
            .map_err(|e| format!("cannot move the snapshot into place: {e}"))?;
        let etag = format!("{commit}-{id}");
        Snapshot::kept(final_path, commit, &etag).await
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    result
}

/// `GET` (or, with `head_only`, `HEAD`) of the snapshot. A `HEAD` answers
/// from what is kept (taking the first snapshot if there is none) without
/// refreshing the mirror, as the Go server answers it from its cache's
/// metadata.
async fn snapshot(state: &GitState, repo: &Repo, headers: &HeaderMap, head_only: bool) -> Resp {
    // The same conditional and range rules as the object API.
    let options = match open_options(headers, true) {
        Ok(o) => o,
        Err(resp) => return *resp,
    };
    let lock = state.lock_for(&repo.name);
    let (snap, head) = {
        let mut kept = lock.lock().await;
        if let Err(e) = ensure_mirror(repo).await {
            return text(StatusCode::BAD_GATEWAY, &e);
        }
        // Chunk requests of a download are pinned with If-Match; only the
        // first request refreshes the mirror.
        if options.if_match.is_none() && !head_only {
            if let Err(e) = fetch(repo).await {
                return text(StatusCode::BAD_GATEWAY, &e);
            }
        }
        let snap = match kept.snapshot.as_ref() {
            Some(s) => s.clone(),
            None => match take_snapshot(repo).await {
                Ok(s) => {
                    kept.snapshot = Some(s.clone());
                    s
                }
                Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e),
            },
        };
        let head = match git(Some(&repo.mirror()), &["rev-parse", "HEAD"]).await {
            Ok(h) => h,
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e),
        };
        (snap, head)
    };

    let mut h = HeaderMap::new();
    set_named(&mut h, header::SNAPSHOT_COMMIT, &snap.commit);
    if head != snap.commit {
        set_named(
            &mut h,
            header::BUNDLE_URL,
            &format!("/git/{}/snapshot.bundle?base={}", repo.name, snap.commit),
        );
    }
    serve_kept(&snap, h, &options).await
}

/// Answers a request for the kept file of `snap` with headers `h` (plus its
/// validators): conditionals and ranges as the object API applies them.
pub(crate) async fn serve_kept(snap: &Snapshot, mut h: HeaderMap, options: &OpenOptions) -> Resp {
    set(&mut h, ETAG, &snap.etag.to_header());
    set(
        &mut h,
        LAST_MODIFIED,
        &header::format_http_date(snap.modified),
    );
    set(&mut h, ACCEPT_RANGES, "bytes");
    match options.check(&snap.etag) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let mut resp = empty(StatusCode::NOT_MODIFIED);
            *resp.headers_mut() = h;
            return resp;
        }
        Precondition::PreconditionFailed => {
            return text(StatusCode::PRECONDITION_FAILED, "precondition failed")
        }
    }
    set(&mut h, CONTENT_TYPE, header::ARCHIVE_CONTENT_TYPE);
    let mut status = StatusCode::OK;
    let (start, len) = match options.resolve_range(snap.size, &snap.etag) {
        RangeResolution::Full => (0, snap.size),
        RangeResolution::Partial { start, len } => {
            set(
                &mut h,
                CONTENT_RANGE,
                &header::content_range(start, len, snap.size),
            );
            status = StatusCode::PARTIAL_CONTENT;
            (start, len)
        }
        RangeResolution::NotSatisfiable => {
            let mut resp = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            set(
                resp.headers_mut(),
                CONTENT_RANGE,
                &header::unsatisfied_content_range(snap.size),
            );
            return resp;
        }
    };
    set(&mut h, CONTENT_LENGTH, &len.to_string());
    let file = async {
        let mut file = tokio::fs::File::open(&snap.path).await?;
        file.seek(SeekFrom::Start(start)).await?;
        Ok::<_, std::io::Error>(file)
    }
    .await;
    match file {
        Ok(file) => {
            let mut resp = Response::new(ResponseBody::stream(Box::pin(file.take(len)), len));
            *resp.status_mut() = status;
            *resp.headers_mut() = h;
            resp
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot read the snapshot: {e}"),
        ),
    }
}

/// Forgets the kept snapshot so that the next request takes a fresh one.
async fn drop_snapshot(state: &GitState, repo: &Repo) -> Resp {
    let lock = state.lock_for(&repo.name);
    let mut kept = lock.lock().await;
    if let Some(snap) = kept.snapshot.take() {
        // Downloads still reading it keep their open file; their pinned
        // chunk requests will see the new snapshot's ETag and fail cleanly.
        let _ = tokio::fs::remove_file(&snap.path).await;
    }
    empty(StatusCode::OK)
}

fn is_sha(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_sha_prefix(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether full SHA `got` is `want`, which may be abbreviated.
fn sha_matches(got: &str, want: &str) -> bool {
    is_sha_prefix(want)
        && got
            .get(..want.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(want))
}

async fn bundle(state: &GitState, repo: &Repo, query: &str) -> Resp {
    let base = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("base="))
        .unwrap_or_default();
    if !is_sha(base) {
        return text(
            StatusCode::BAD_REQUEST,
            "expected ?base=<commit sha> naming the snapshot's commit",
        );
    }
    let lock = state.lock_for(&repo.name);
    let _guard = lock.lock().await;
    if let Err(e) = ensure_mirror(repo).await {
        return text(StatusCode::BAD_GATEWAY, &e);
    }
    let mirror = repo.mirror();
    let head = match git(Some(&mirror), &["rev-parse", "HEAD"]).await {
        Ok(h) => h,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    if head.eq_ignore_ascii_case(base) {
        return empty(StatusCode::NO_CONTENT);
    }
    if git(
        Some(&mirror),
        &["cat-file", "-e", &format!("{base}^{{commit}}")],
    )
    .await
    .is_err()
    {
        return text(
            StatusCode::NOT_FOUND,
            &format!("unknown base commit {base} in {}", repo.name),
        );
    }
    let mut args = vec!["bundle".to_owned(), "create".to_owned()];
    let out = repo.dir.join(format!("bundle-{}", unique()));
    args.push(match path_str(&out) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e),
    });
    args.push("HEAD".to_owned());
    if let Ok(branch) = git(Some(&mirror), &["symbolic-ref", "-q", "HEAD"]).await {
        args.push(branch);
    }
    args.push(format!("^{base}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = git(Some(&mirror), &args).await;
    // Streamed from the file, never held in memory; the name is removed
    // at once (the open file stays readable).
    let file = match result {
        Ok(_) => async {
            let file = tokio::fs::File::open(&out).await?;
            let len = file.metadata().await?.len();
            Ok::<_, std::io::Error>((file, len))
        }
        .await
        .map_err(|e| format!("cannot read the bundle: {e}")),
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&out).await;
    match file {
        Ok((file, len)) => {
            let mut resp = Response::new(ResponseBody::stream(Box::pin(file.take(len)), len));
            set(resp.headers_mut(), CONTENT_TYPE, "application/x-git-bundle");
            set(resp.headers_mut(), CONTENT_LENGTH, &len.to_string());
            resp
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// What the mirror holds for a request: ref SHAs and missing commits.
async fn inspect(mirror: &Path, request: &EnsureGitRefsRequest) -> EnsureGitRefsResponse {
    let mut response = EnsureGitRefsResponse::default();
    for name in request.refs.keys() {
        let sha = git(
            Some(mirror),
            &["rev-parse", "--verify", "-q", &format!("{name}^{{commit}}")],
        )
        .await
        .unwrap_or_default();
        response.refs.insert(name.clone(), sha);
    }
    for commit in &request.commits {
        // Abbreviated SHAs are accepted as the Go server does (git resolves
        // them when unambiguous).
        let present = is_sha_prefix(commit)
            && git(
                Some(mirror),
                &["cat-file", "-e", &format!("{commit}^{{commit}}")],
            )
            .await
            .is_ok();
        if !present {
            response.missing_commits.push(commit.clone());
        }
    }
    response
}

fn satisfied(request: &EnsureGitRefsRequest, have: &EnsureGitRefsResponse) -> bool {
    have.missing_commits.is_empty()
        && request.refs.iter().all(|(name, want)| {
            let got = have.refs.get(name).map(String::as_str).unwrap_or_default();
            !got.is_empty() && (want.is_empty() || sha_matches(got, want))
        })
}

async fn ensure_refs(state: &GitState, repo: &Repo, body: RequestBody) -> Resp {
    let data = match Limited::new(body, MAX_REQUEST).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request: {e}"),
            )
        }
    };
    let request: EnsureGitRefsRequest = match serde_json::from_slice(&data) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    if request.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "at least one ref or commit is required",
        );
    }
    if request
        .refs
        .keys()
        .any(|r| !r.starts_with("refs/") || r.contains("..") || r.starts_with('-'))
    {
        return text(StatusCode::BAD_REQUEST, "refs must be full names (refs/…)");
    }
    let lock = state.lock_for(&repo.name);
    let _guard = lock.lock().await;
    if let Err(e) = ensure_mirror(repo).await {
        return text(StatusCode::BAD_GATEWAY, &e);
    }
    let mirror = repo.mirror();
    let mut have = inspect(&mirror, &request).await;
    if !satisfied(&request, &have) {
        if let Err(e) = fetch(repo).await {
            return text(StatusCode::BAD_GATEWAY, &e);
        }
        have = inspect(&mirror, &request).await;
        have.fetched = true;
    }
    match serde_json::to_vec(&have) {
        Ok(json) => {
            let mut resp = Response::new(ResponseBody::full(Bytes::from(json)));
            set(resp.headers_mut(), CONTENT_TYPE, "application/json");
            resp
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn set_named(headers: &mut HeaderMap, name: &'static str, value: &str) {
    set(headers, HeaderName::from_static(name), value);
}

fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = status;
    resp
}

pub(crate) fn not_allowed(allow: &'static str) -> Resp {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    resp.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    resp
}

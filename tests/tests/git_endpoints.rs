//! The git client (`cachew_client::git`) against the reference server's
//! `/git/` endpoints, with real `git` repositories on loopback.

mod git_support;

use cachew_client::parallel::ParallelOptions;
use cachew_client::proto::EnsureGitRefsRequest;
use cachew_client::Error;
use git_support::{git, Fixture, REPO_URL};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_bundle_brings_a_clone_to_the_new_head() {
    let fx = Fixture::new().await;
    let first = fx.commit("a.txt", "one");
    let client = fx.client();

    // The first snapshot is current: no bundle.
    let snap = client.open_snapshot(REPO_URL).await.unwrap();
    assert_eq!(snap.commit.as_deref(), Some(first.as_str()));
    assert_eq!(snap.bundle_url, None);
    assert!(snap.etag.is_some());
    let dir = fx.extract(snap.body, "first").await;
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), first);
    assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "one");

    // The upstream moves on; the kept snapshot now comes with a bundle.
    let second = fx.commit("b.txt", "two");
    let opts = ParallelOptions::default()
        .with_concurrency(4)
        .with_chunk_size(1024);
    let snap = client
        .open_snapshot_parallel(REPO_URL, &opts)
        .await
        .unwrap();
    assert!(
        snap.parallel,
        "a snapshot of several KiB is split into chunks"
    );
    assert_eq!(snap.commit.as_deref(), Some(first.as_str()));
    let bundle_url = snap.bundle_url.clone().expect("a bundle URL");
    assert!(bundle_url.starts_with("/git/example.test/org/repo/snapshot.bundle?base="));
    let dir = fx.extract(snap.body, "second").await;
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), first);

    let mut bundle = Vec::new();
    client
        .open_bundle(&bundle_url)
        .await
        .unwrap()
        .read_to_end(&mut bundle)
        .await
        .unwrap();
    let bundle_path = fx.tmp.path().join("delta.bundle");
    std::fs::write(&bundle_path, &bundle).unwrap();
    git(
        &dir,
        &["pull", "--ff-only", bundle_path.to_str().unwrap(), "main"],
    );
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), second);
    assert_eq!(std::fs::read_to_string(dir.join("b.txt")).unwrap(), "two");

    // Refreshing the snapshot (DELETE) makes the next one current again.
    let status = fx
        .raw(
            http::Method::DELETE,
            "/git/example.test/org/repo/snapshot.tar.zst",
        )
        .await;
    assert_eq!(status, 200);
    let snap = client.open_snapshot(REPO_URL).await.unwrap();
    assert_eq!(snap.commit.as_deref(), Some(second.as_str()));
    assert_eq!(snap.bundle_url, None);

    // A bundle from the current HEAD has nothing to add: 204, "up to date".
    let current = format!("/git/example.test/org/repo/snapshot.bundle?base={second}");
    match client.open_bundle(&current).await {
        Err(Error::UpToDate) => {}
        Err(e) => panic!("expected UpToDate, got {e:?}"),
        Ok(_) => panic!("expected UpToDate, got a bundle"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_refs_fetches_only_when_something_is_missing() {
    let fx = Fixture::new().await;
    let first = fx.commit("a.txt", "one");
    let client = fx.client();
    let mut request = EnsureGitRefsRequest::default();
    request.refs.insert("refs/heads/main".into(), first.clone());
    let resp = client.ensure_refs(REPO_URL, &request).await.unwrap();
    // The first call clones the mirror, which already has everything.
    assert!(!resp.fetched);
    assert_eq!(resp.refs["refs/heads/main"], first);

    let second = fx.commit("b.txt", "two");
    request
        .refs
        .insert("refs/heads/main".into(), second.clone());
    request.commits = vec![second.clone(), "0".repeat(40)];
    let resp = client.ensure_refs(REPO_URL, &request).await.unwrap();
    assert!(resp.fetched);
    assert_eq!(resp.refs["refs/heads/main"], second);
    assert_eq!(resp.missing_commits, vec!["0".repeat(40)]);

    let err = client
        .ensure_refs(REPO_URL, &EnsureGitRefsRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_repositories_and_lfs_snapshots_are_not_found() {
    let fx = Fixture::new().await;
    fx.commit("a.txt", "one");
    let client = fx.client();
    let err = client
        .open_snapshot("https://example.test/org/other")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = client
        .open_snapshot_parallel(
            "https://example.test/org/other",
            &ParallelOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = client.open_lfs_snapshot(REPO_URL).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    // Paths that could escape the root are refused.
    let resp = fx
        .raw_get("/git/example.test/../../etc/snapshot.tar.zst")
        .await;
    assert!(resp == 400 || resp == 404, "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_ranges_follow_the_object_rules() {
    let fx = Fixture::new().await;
    fx.commit("a.txt", "one");
    let client = fx.client();
    let whole = {
        let snap = client.open_snapshot(REPO_URL).await.unwrap();
        let mut body = Vec::new();
        let mut reader = snap.body;
        reader.read_to_end(&mut body).await.unwrap();
        assert_eq!(snap.size, Some(body.len() as u64));
        body
    };
    // Parallel downloads of every chunk size give the same bytes.
    for chunk in [100, 777, 4096, 1 << 20] {
        let opts = ParallelOptions::default()
            .with_concurrency(3)
            .with_chunk_size(chunk);
        let snap = client
            .open_snapshot_parallel(REPO_URL, &opts)
            .await
            .unwrap();
        let mut body = Vec::new();
        let mut reader = snap.body;
        reader.read_to_end(&mut body).await.unwrap();
        assert!(body == whole, "chunk {chunk}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_conditions_ranges_and_bad_requests() {
    let fx = Fixture::new().await;
    fx.commit("a.txt", "one");
    let http = cachew_transport::HttpClient::builder().build().unwrap();
    let url = format!(
        "{}/git/example.test/org/repo/snapshot.tar.zst",
        fx.server.url()
    );
    let send = |req: http::request::Builder, body: &'static str| {
        let http = http.clone();
        async move {
            let resp = http
                .send(req.body(cachew_transport::RequestBody::from(body)).unwrap())
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            (status, headers)
        }
    };
    let (status, headers) = send(http::Request::get(&url), "").await;
    assert_eq!(status, 200);
    let size: u64 = headers["content-length"].to_str().unwrap().parse().unwrap();
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["x-cachew-snapshot-commit"].len(), 40);

    let (status, headers) = send(
        http::Request::get(&url)
            .header("range", "bytes=10-19")
            .header("if-match", &etag),
        "",
    )
    .await;
    assert_eq!(status, 206);
    assert_eq!(headers["content-range"], format!("bytes 10-19/{size}"));

    let (status, _) = send(http::Request::get(&url).header("if-match", "\"other\""), "").await;
    assert_eq!(status, 412);
    let (status, _) = send(http::Request::get(&url).header("if-none-match", &etag), "").await;
    assert_eq!(status, 304);
    let (status, headers) = send(
        http::Request::get(&url).header("range", format!("bytes={size}-")),
        "",
    )
    .await;
    assert_eq!(status, 416);
    assert_eq!(headers["content-range"], format!("bytes */{size}"));

    let (status, _) = send(http::Request::put(&url), "").await;
    assert_eq!(status, 405);
    let refs = url.replace("snapshot.tar.zst", "ensure-refs");
    let (status, _) = send(http::Request::post(&refs), "not json").await;
    assert_eq!(status, 400);
    let (status, _) = send(http::Request::post(&refs), "{}").await;
    assert_eq!(status, 400);
    let bundle = url.replace("snapshot.tar.zst", "snapshot.bundle?base=nope");
    let (status, _) = send(http::Request::get(&bundle), "").await;
    assert_eq!(status, 400);
}

/// A relative git root (as `cachew serve --git-root root` gives it) serves
/// bundles too; `HEAD` of the snapshot answers its metadata; ensure-refs
/// takes abbreviated SHAs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_root_head_and_short_shas() {
    use std::sync::Arc;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let upstream = root.join("example.test/org/repo");
    std::fs::create_dir_all(&upstream).unwrap();
    git(&upstream, &["init", "-q", "-b", "main"]);
    // The same root, relative to the current directory.
    let cwd = std::env::current_dir().unwrap();
    let mut relative = std::path::PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.push(root.strip_prefix("/").unwrap());
    let server = cachew_server::Server::builder(Arc::new(cachew_client::MemoryCache::new(1 << 20)))
        .git_root(&relative)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let commit = |file: &str| {
        std::fs::write(upstream.join(file), file).unwrap();
        git(&upstream, &["add", file]);
        git(&upstream, &["commit", "-q", "-m", file]);
        git(&upstream, &["rev-parse", "HEAD"])
    };
    let first = commit("a.txt");
    let http = cachew_transport::HttpClient::builder().build().unwrap();
    let client = cachew_client::git::GitClient::new(http.clone(), server.url());
    drop(client.open_snapshot(REPO_URL).await.unwrap());
    let second = commit("b.txt");

    // HEAD: the kept snapshot's metadata, no body, no mirror refresh.
    let url = format!(
        "{}/git/example.test/org/repo/snapshot.tar.zst",
        server.url()
    );
    let req = http::Request::head(&url)
        .body(cachew_transport::RequestBody::empty())
        .unwrap();
    let resp = http.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers["x-cachew-snapshot-commit"], first.as_str());
    assert!(headers.contains_key("etag"));
    let len: u64 = headers["content-length"].to_str().unwrap().parse().unwrap();
    assert!(len > 0);
    assert!(resp
        .into_body()
        .bytes_limited(1 << 20)
        .await
        .unwrap()
        .is_empty());

    // The bundle (git runs with -C elsewhere: the root must be absolute).
    let snap = client.open_snapshot(REPO_URL).await.unwrap();
    let bundle_url = snap.bundle_url.clone().expect("a bundle URL");
    let mut bundle = Vec::new();
    client
        .open_bundle(&bundle_url)
        .await
        .unwrap()
        .read_to_end(&mut bundle)
        .await
        .unwrap();
    assert!(bundle.starts_with(b"# v2 git bundle") || bundle.starts_with(b"# v3 git bundle"));

    // Abbreviated SHAs, as the Go CLI passes them on.
    let mut request = EnsureGitRefsRequest::default();
    request
        .refs
        .insert("refs/heads/main".into(), second[..8].to_owned());
    request.commits = vec![first[..7].to_owned()];
    let resp = client.ensure_refs(REPO_URL, &request).await.unwrap();
    assert!(resp.missing_commits.is_empty(), "{resp:?}");
    assert_eq!(resp.refs["refs/heads/main"], second);
    server.shutdown().await;
}

/// Runs git off the runtime (the server shares it), with curl's low-speed
/// limit so that a stuck transfer fails instead of hanging the test;
/// returns (success, stdout, stderr).
async fn run_git(
    dir: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (bool, String, String) {
    let mut cmd = git_support::git_command(dir);
    cmd.args(args)
        .env("GIT_HTTP_LOW_SPEED_LIMIT", "1")
        .env("GIT_HTTP_LOW_SPEED_TIME", "30");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("git runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_fsck_clean(dir: &std::path::Path) {
    let out = git_support::git_command(dir)
        .args(["fsck", "--full", "--strict", "--no-dangling"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fsck: {stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "fsck: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_http_clone_then_fetch_with_v2_and_v0() {
    let fx = Fixture::new().await;
    let first = fx.commit("a.txt", "one");
    let url = format!("{}/git/example.test/org/repo", fx.server.url());
    let (ok, _, err) = run_git(fx.tmp.path(), &["clone", "-q", &url, "clone"], &[]).await;
    assert!(ok, "clone: {err}");
    let clone = fx.tmp.path().join("clone");
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), first);
    assert_eq!(std::fs::read_to_string(clone.join("a.txt")).unwrap(), "one");
    assert_fsck_clean(&clone);

    // A stale clone catches up from the cache, in either protocol; the
    // mirror is freshened by the fetch's `info/refs` request.
    for (version, file) in [("2", "b.txt"), ("0", "c.txt")] {
        let new = fx.commit(file, version);
        let (ok, _, trace) = run_git(
            &clone,
            &[
                "-c",
                &format!("protocol.version={version}"),
                "fetch",
                "-q",
                "origin",
            ],
            &[("GIT_TRACE_PACKET", "1")],
        )
        .await;
        assert!(ok, "fetch v{version}: {trace}");
        assert_eq!(
            trace.contains("git< version 2"),
            version == "2",
            "protocol v{version} spoken"
        );
        assert_eq!(git(&clone, &["rev-parse", "origin/main"]), new);
        git(&clone, &["merge", "-q", "--ff-only", "origin/main"]);
        assert_eq!(std::fs::read_to_string(clone.join(file)).unwrap(), version);
        assert_fsck_clean(&clone);
    }

    // Many local commits the server has never seen make a negotiation
    // over 1 KiB, which git sends gzipped. They are dated a day ahead, one
    // second apart, so git offers them as `have`s before any commit the
    // server knows: with equal timestamps the walk order is a tie that may
    // reach a common commit in the first round of 16 (under 1 KiB) and end
    // the negotiation there.
    git(&clone, &["checkout", "-q", "-b", "local"]);
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400;
    for i in 0..60 {
        let date = format!("@{} +0000", ahead + i);
        let out = git_support::git_command(&clone)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args(["commit", "-q", "--allow-empty", "-m", &format!("local {i}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    git(&clone, &["checkout", "-q", "main"]);
    let new = fx.commit("d.txt", "gzip");
    let (ok, _, trace) = run_git(
        &clone,
        &["fetch", "-q", "origin"],
        &[("GIT_TRACE_CURL", "1"), ("GIT_TRACE_CURL_NO_DATA", "1")],
    )
    .await;
    assert!(ok, "fetch with haves: {trace}");
    assert!(
        trace.contains("Content-Encoding: gzip"),
        "a gzipped request was sent: {trace}"
    );
    assert_eq!(git(&clone, &["rev-parse", "origin/main"]), new);
    assert_fsck_clean(&clone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_http_refuses_pushes_unknown_repos_and_bad_requests() {
    let fx = Fixture::new().await;
    fx.commit("a.txt", "one");
    let base = format!("{}/git/example.test/org", fx.server.url());
    let (ok, _, err) = run_git(
        fx.tmp.path(),
        &["clone", "-q", &format!("{base}/repo.git"), "clone"],
        &[],
    )
    .await;
    assert!(ok, "clone of …/repo.git: {err}");
    let clone = fx.tmp.path().join("clone");
    git(&clone, &["commit", "-q", "--allow-empty", "-m", "mine"]);
    let (ok, _, err) = run_git(&clone, &["push", "origin", "HEAD:refs/heads/pushed"], &[]).await;
    assert!(!ok && err.contains("403"), "push: {err}");

    let (ok, _, err) = run_git(fx.tmp.path(), &["ls-remote", &format!("{base}/other")], &[]).await;
    // git reports a 404 as "not found", with the server's message.
    assert!(
        !ok && err.contains("not found") && err.contains("no repository example.test/org/other"),
        "ls-remote of an unknown repo: {err}"
    );

    let repo = "/git/example.test/org/repo";
    let get = http::Method::GET;
    let post = http::Method::POST;
    for (method, path, status) in [
        (post.clone(), format!("{repo}/git-receive-pack"), 403),
        (
            get.clone(),
            format!("{repo}/info/refs?service=git-receive-pack"),
            403,
        ),
        (get.clone(), format!("{repo}/info/refs"), 403),
        (
            get.clone(),
            "/git/example.test/org/other/info/refs?service=git-upload-pack".to_owned(),
            404,
        ),
        (
            http::Method::PUT,
            format!("{repo}/info/refs?service=git-upload-pack"),
            405,
        ),
        (get.clone(), format!("{repo}/git-upload-pack"), 405),
        // No Content-Type: application/x-git-upload-pack-request.
        (post.clone(), format!("{repo}/git-upload-pack"), 415),
    ] {
        assert_eq!(
            fx.raw(method.clone(), &path).await,
            status,
            "{method} {path}"
        );
    }

    // A body that claims gzip but is not.
    let http = cachew_transport::HttpClient::builder().build().unwrap();
    let req = http::Request::post(format!("{}{repo}/git-upload-pack", fx.server.url()))
        .header("content-type", "application/x-git-upload-pack-request")
        .header("content-encoding", "gzip")
        .body(cachew_transport::RequestBody::from("not gzip at all"))
        .unwrap();
    assert_eq!(http.send(req).await.unwrap().status(), 400);

    // The advertisement's headers.
    let req = http::Request::get(format!(
        "{}{repo}/info/refs?service=git-upload-pack",
        fx.server.url()
    ))
    .body(cachew_transport::RequestBody::empty())
    .unwrap();
    let resp = http.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/x-git-upload-pack-advertisement"
    );
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let body = resp.into_body().bytes_limited(1 << 20).await.unwrap();
    assert!(body.starts_with(b"001e# service=git-upload-pack\n0000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_http_needs_a_token_when_tokens_are_configured() {
    let fx = Fixture::new().await;
    let head = fx.commit("a.txt", "one");
    let tokens = cachew_server::Tokens::parse("tokens", "reader read ci-*\n").unwrap();
    let server = cachew_server::Server::builder(std::sync::Arc::new(
        cachew_client::MemoryCache::new(1 << 20),
    ))
    .git_root(fx.tmp.path().join("root"))
    .tokens(tokens)
    .bind("127.0.0.1:0")
    .await
    .unwrap();
    let url = format!("{}/git/example.test/org/repo", server.url());
    let (ok, _, err) = run_git(fx.tmp.path(), &["clone", "-q", &url, "denied"], &[]).await;
    // A 401 makes git ask for credentials, which it may not here.
    assert!(
        !ok && (err.contains("401") || err.contains("could not read Username")),
        "clone without a token: {err}"
    );
    // Any valid token will do, whatever namespaces it may read.
    let (ok, _, err) = run_git(
        fx.tmp.path(),
        &[
            "-c",
            "http.extraHeader=Authorization: Bearer reader",
            "clone",
            "-q",
            &url,
            "allowed",
        ],
        &[],
    )
    .await;
    assert!(ok, "clone with a token: {err}");
    assert_eq!(
        git(&fx.tmp.path().join("allowed"), &["rev-parse", "HEAD"]),
        head
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_http_request_bodies_have_the_stall_limit() {
    use tokio::io::AsyncWriteExt;

    let fx = Fixture::new().await;
    fx.commit("a.txt", "one");
    let limits =
        cachew_server::Limits::default().with_body_timeout(std::time::Duration::from_millis(300));
    let server = cachew_server::Server::builder(std::sync::Arc::new(
        cachew_client::MemoryCache::new(1 << 20),
    ))
    .git_root(fx.tmp.path().join("root"))
    .limits(limits)
    .bind("127.0.0.1:0")
    .await
    .unwrap();
    let mut conn = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    conn.write_all(
        b"POST /git/example.test/org/repo/git-upload-pack HTTP/1.1\r\n\
          Host: test\r\n\
          Content-Type: application/x-git-upload-pack-request\r\n\
          Content-Length: 1000\r\n\r\n\
          0032want ",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "the server answers a stalled body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    server.shutdown().await;
}

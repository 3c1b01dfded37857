//! The remote client on real-world networks, against canned HTTP/1.1
//! servers on 127.0.0.1: git endpoints that hold their headers for longer
//! than the object API's header wait.

use std::sync::Arc;
use std::time::Duration;

use cachew_client::git::GitClient;
use cachew_client::RemoteCache;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the canned server saw it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Seen {
    head: String,
    method: String,
    path: String,
}

type Handler = Arc<dyn Fn(&Seen) -> (Duration, Vec<u8>) + Send + Sync>;

/// Serves `handler`'s (delay, raw response) for every request; returns
/// the base URL.
async fn canned(handler: impl Fn(&Seen) -> (Duration, Vec<u8>) + Send + Sync + 'static) -> String {
    let handler: Handler = Arc::new(handler);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let mut words = head.split_whitespace();
                    let seen = Seen {
                        method: words.next().unwrap_or_default().to_owned(),
                        path: words.next().unwrap_or_default().to_owned(),
                        head: head.clone(),
                    };
                    let (delay, resp) = handler(&seen);
                    tokio::time::sleep(delay).await;
                    if s.write_all(&resp).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

const SHORT: Duration = Duration::from_millis(200);

#[tokio::test]
async fn git_endpoints_wait_longer_for_headers_than_objects() {
    let base = canned(|_| {
        let body = b"snapshot bytes";
        let resp = response(
            "200 OK",
            &[
                ("Content-Length", body.len().to_string()),
                ("ETag", "\"v1\"".into()),
                ("X-Cachew-Snapshot-Commit", "abc".into()),
            ],
            body,
        );
        // Every answer comes after three header waits of the object API.
        (Duration::from_millis(700), resp)
    })
    .await;
    let remote = RemoteCache::builder(&base)
        .response_header_timeout(SHORT)
        .max_retries(0)
        .build()
        .unwrap();
    let err =
        cachew_client::Cache::stat(&remote, &cachew_client::Key::new("k"), &Default::default())
            .await
            .unwrap_err();
    assert!(err.to_string().contains("200ms"), "{err}");

    let git = GitClient::from_remote(&remote);
    let snap = git
        .open_snapshot("https://github.com/org/repo")
        .await
        .unwrap();
    assert_eq!(snap.commit.as_deref(), Some("abc"));
}

/// Which header a legacy server leaves out.
#[derive(Clone, Copy, Debug)]
enum Omit {
    ETag,
    /// `Content-Length`: the body is chunked, HEAD says nothing of the size.
    ContentLength,
}

/// A server that ignores ranges and answers every object request with
/// `archive`, leaving out `omit`; counts GETs.
async fn legacy_server(
    archive: Vec<u8>,
    omit: Omit,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let gets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = gets.clone();
    let base = canned(move |seen| {
        let mut headers = vec![("Last-Modified", "Wed, 21 Oct 2025 07:28:00 GMT".to_string())];
        if !matches!(omit, Omit::ETag) {
            headers.push(("ETag", "\"legacy\"".into()));
        }
        let body: Vec<u8> = match omit {
            Omit::ContentLength => {
                headers.push(("Transfer-Encoding", "chunked".into()));
                let mut chunked = format!("{:x}\r\n", archive.len()).into_bytes();
                chunked.extend_from_slice(&archive);
                chunked.extend_from_slice(b"\r\n0\r\n\r\n");
                chunked
            }
            Omit::ETag => {
                headers.push(("Content-Length", archive.len().to_string()));
                archive.clone()
            }
        };
        if seen.method == "HEAD" {
            if matches!(omit, Omit::ContentLength) {
                headers.retain(|(k, _)| *k != "Transfer-Encoding");
            }
            return (Duration::ZERO, response("200 OK", &headers, b""));
        }
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (Duration::ZERO, response("200 OK", &headers, &body))
    })
    .await;
    (base, gets)
}

/// A small directory saved as an archive, and its bytes.
async fn archive() -> (tempfile::TempDir, Vec<u8>) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), "hello legacy").unwrap();
    std::fs::create_dir(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/b.txt"), vec![7u8; 50_000]).unwrap();
    let memory = cachew_client::MemoryCache::new(1 << 30);
    let key = cachew_client::Key::new("archive");
    cachew_client::save(
        &memory,
        &key,
        src.path(),
        &[".".into()],
        &Default::default(),
    )
    .await
    .unwrap();
    let bytes = cachew_client::CacheExt::get_bytes(&memory, &key)
        .await
        .unwrap();
    (src, bytes.to_vec())
}

#[tokio::test]
async fn answers_without_etag_or_content_length_are_valid() {
    use cachew_client::parallel::ParallelOptions;
    use cachew_client::{Cache, CacheExt, Key, RestoreOptions, RestoreOutcome};

    let (_src, data) = archive().await;
    for omit in [Omit::ETag, Omit::ContentLength] {
        let (base, gets) = legacy_server(data.clone(), omit).await;
        let remote = RemoteCache::builder(&base).max_retries(0).build().unwrap();
        let key = Key::new("legacy");

        let meta = remote.stat(&key, &Default::default()).await.unwrap();
        match omit {
            Omit::ETag => {
                assert_eq!(meta.etag, None);
                assert_eq!(meta.size, Some(data.len() as u64));
            }
            Omit::ContentLength => {
                assert!(meta.etag.is_some());
                assert_eq!(meta.size, None);
            }
        }
        let object = remote.open(&key, &Default::default()).await.unwrap();
        assert_eq!(object.bytes().await.unwrap(), data, "{omit:?}");
        assert_eq!(remote.get_bytes(&key).await.unwrap(), data);

        // A parallel restore cannot pin chunks: one streamed GET instead.
        gets.store(0, std::sync::atomic::Ordering::SeqCst);
        let dest = tempfile::tempdir().unwrap();
        let target = dest.path().join("out");
        let parallel = ParallelOptions::default()
            .with_concurrency(4)
            .with_chunk_size(1024)
            .with_min_size(1);
        let outcome = cachew_client::restore(
            &remote,
            &[key],
            &target,
            &RestoreOptions::default().with_parallel(parallel.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{omit:?}: {e}"));
        assert!(matches!(outcome, RestoreOutcome::Hit { .. }), "{outcome:?}");
        assert_eq!(
            std::fs::read_to_string(target.join("a.txt")).unwrap(),
            "hello legacy"
        );
        assert_eq!(
            gets.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{omit:?}"
        );

        // So does a parallel download of a plain URL.
        let url = format!("{base}/git/github.com/org/repo/snapshot.tar.zst");
        let source = Arc::new(cachew_client::parallel::HttpSource::new(
            remote.http().clone(),
            url,
        ));
        let (info, mut reader) = cachew_client::parallel::parallel_reader(source, &parallel)
            .await
            .unwrap_or_else(|e| panic!("{omit:?}: {e}"));
        assert!(!info.parallel, "{omit:?}");
        let mut sink = Vec::new();
        reader.read_to_end(&mut sink).await.unwrap();
        assert_eq!(sink, data, "{omit:?}");
    }
}

#[tokio::test]
async fn url_credentials_reach_the_server_as_basic_auth_and_nowhere_else() {
    let base = canned(|seen| {
        let auth = seen
            .head
            .lines()
            .find_map(|l| {
                l.strip_prefix("authorization: ")
                    .or_else(|| l.strip_prefix("Authorization: "))
            })
            .unwrap_or("none")
            .to_owned();
        (
            Duration::ZERO,
            response(
                "500 Internal Server Error",
                &[("Content-Length", auth.len().to_string())],
                auth.as_bytes(),
            ),
        )
    })
    .await;
    let with_creds = base.replace("http://", "http://ci:pw-s3cret@");
    let remote = RemoteCache::builder(&with_creds)
        .max_retries(0)
        .build()
        .unwrap();
    let err = cachew_client::Cache::stats(&remote).await.unwrap_err();
    // The server echoes what it got as the error message: Basic, decoded
    // by the server to the same credentials.
    let text = err.to_string();
    assert!(text.contains("Basic Y2k6cHctczNjcmV0"), "{text}");
    let git = GitClient::from_remote(&remote);
    let source =
        cachew_client::parallel::HttpSource::new(remote.http().clone(), format!("{with_creds}/x"));
    for shown in [
        format!("{remote:?}"),
        format!("{remote}"),
        format!("{git:?}"),
        format!("{source:?}"),
    ] {
        assert!(!shown.contains("pw-s3cret"), "{shown}");
    }
}

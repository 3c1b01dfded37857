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

//! What the remote `Cache` puts on the wire (`PROTOCOL.md` §3): URLs,
//! methods and headers, recorded by the reference server's policy hook.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cachew_client::conformance::Setup;
use cachew_client::{
    ByteRange, Cache, CacheExt, CreateOptions, EntityTag, EtagCondition, Key, Namespace,
    OpenOptions, RemoteCache,
};
use cachew_server::Server;
use http::HeaderMap;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_follow_the_protocol() {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let server = Server::builder(support::memory(&Setup::default()))
        .policy(move |parts| {
            log.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                headers: parts.headers.clone(),
            });
            None
        })
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let cache = RemoteCache::builder(format!("{}///", server.url()))
        .namespace(Namespace::new("ci_1").unwrap())
        .build()
        .unwrap();
    let key = Key::parse("hello");
    let hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let object_path = format!("/api/v1/object/ci_1/{hex}");
    let take = || std::mem::take(&mut *seen.lock().unwrap());
    let header = |s: &Seen, name: &str| s.headers.get(name).map(|v| v.to_str().unwrap().to_owned());

    // Create: every caller header but framing ones, TTL in Go syntax, the
    // ETag quoted.
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/zstd".parse().unwrap());
    headers.append("x-multi", "one".parse().unwrap());
    headers.append("x-multi", "two".parse().unwrap());
    headers.insert("content-length", "3".parse().unwrap());
    let options = CreateOptions::default()
        .with_ttl(Duration::from_secs(5400))
        .with_etag(EntityTag::new("v1").unwrap());
    cache
        .put_bytes(&key, Bytes::from_static(b"0123456789"), headers, &options)
        .await
        .unwrap();
    let create = take();
    assert_eq!(create.len(), 1, "{create:?}");
    let c = &create[0];
    assert_eq!(
        (c.method.as_str(), c.path.as_str()),
        ("POST", object_path.as_str())
    );
    assert_eq!(header(c, "time-to-live").as_deref(), Some("1h30m0s"));
    assert_eq!(header(c, "etag").as_deref(), Some("\"v1\""));
    assert_eq!(
        header(c, "content-type").as_deref(),
        Some("application/zstd")
    );
    let multi: Vec<_> = c.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(
        header(c, "content-length"),
        None,
        "the caller's Content-Length is not sent"
    );
    assert_eq!(header(c, "transfer-encoding").as_deref(), Some("chunked"));

    // A zero TTL is the server's default: no header.
    cache
        .put_bytes(
            &key,
            Bytes::from_static(b"0123456789"),
            HeaderMap::new(),
            &CreateOptions::default()
                .with_ttl(Duration::ZERO)
                .with_etag(EntityTag::new("v1").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(header(&take()[0], "time-to-live"), None);

    // Open with conditions and a half-open range.
    let opts = OpenOptions::default()
        .with_if_match(EtagCondition::parse_header("\"v0\", \"v1\"").unwrap())
        .with_if_none_match(EtagCondition::parse_header("\"v9\"").unwrap())
        .with_range(ByteRange::new(2, 5).unwrap())
        .with_if_range(EntityTag::new("v1").unwrap());
    let object = cache.open(&key, &opts).await.unwrap();
    assert_eq!(object.meta.range, Some((2, 3)));
    assert_eq!(object.bytes().await.unwrap(), &b"234"[..]);
    let open = take();
    let o = &open[0];
    assert_eq!(
        (o.method.as_str(), o.path.as_str()),
        ("GET", object_path.as_str())
    );
    assert_eq!(header(o, "if-match").as_deref(), Some("\"v0\", \"v1\""));
    assert_eq!(header(o, "if-none-match").as_deref(), Some("\"v9\""));
    assert_eq!(header(o, "range").as_deref(), Some("bytes=2-4"));
    assert_eq!(header(o, "if-range").as_deref(), Some("\"v1\""));

    // Stat sends the conditions but never a range.
    let meta = cache.stat(&key, &opts).await.unwrap();
    assert_eq!((meta.size, meta.range), (Some(10), None));
    let stat = take();
    let s = &stat[0];
    assert_eq!(
        (s.method.as_str(), s.path.as_str()),
        ("HEAD", object_path.as_str())
    );
    assert_eq!(header(s, "if-match").as_deref(), Some("\"v0\", \"v1\""));
    assert_eq!(header(s, "range"), None);
    assert_eq!(header(s, "if-range"), None);

    // The other endpoints.
    cache.invalidate(&key).await.unwrap();
    cache.delete(&key).await.unwrap_err();
    cache.stats().await.unwrap();
    cache.list_namespaces().await.unwrap();
    let rest: Vec<(String, String)> = take().into_iter().map(|s| (s.method, s.path)).collect();
    let want = [
        ("POST", format!("{object_path}/invalidate")),
        ("DELETE", object_path.clone()),
        ("GET", "/api/v1/stats".to_owned()),
        ("GET", "/api/v1/namespaces".to_owned()),
    ];
    let want: Vec<(String, String)> = want.into_iter().map(|(m, p)| (m.to_owned(), p)).collect();
    assert_eq!(rest, want);

    // Another namespace handle addresses its own URL.
    let other = cache.with_namespace(Namespace::new("other").unwrap());
    assert!(!other.exists(&key).await.unwrap());
    assert_eq!(take()[0].path, format!("/api/v1/object/other/{hex}"));
    server.shutdown().await;
}

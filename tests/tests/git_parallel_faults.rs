//! Parallel ranged downloads over real HTTP (`PROTOCOL.md` §6) while the
//! reference server misbehaves: the object changes mid-download, ranges are
//! ignored, a chunk stalls. Both sources are exercised: a `RemoteCache`
//! object ([`CacheSource`]) and a plain URL ([`HttpSource`], what git
//! snapshots use).

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cachew_client::parallel::{
    open_object, parallel_get, parallel_reader, CacheSource, HttpSource, ParallelOptions,
    RangedSource,
};
use cachew_client::{
    Cache, CacheExt, CacheWriter, CreateOptions, Key, MemoryCache, Namespace, Object, ObjectMeta,
    OpenOptions, RemoteCache, Result, Stats,
};
use cachew_server::{RunningServer, Server};
use cachew_transport::HttpClient;
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

const CHUNK: u64 = 64 << 10;
const SIZE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Serve every open without its range (200 with the whole object).
    IgnoreRanges,
    /// Replace the object just before the second open is served.
    ChangeOnSecondOpen,
    /// The body of the open whose range starts here never sends a byte.
    StallAt(u64),
}

#[derive(Debug)]
struct Shared {
    fault: Mutex<Fault>,
    opens: AtomicUsize,
}

/// A `MemoryCache` wrapper that injects one fault into Open.
#[derive(Debug, Clone)]
struct FaultCache {
    inner: Arc<dyn Cache>,
    shared: Arc<Shared>,
}

impl fmt::Display for FaultCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fault:{}", self.inner)
    }
}

/// A body that never yields a byte and never ends.
struct Stalled;

impl AsyncRead for Stalled {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Pending
    }
}

#[async_trait]
impl Cache for FaultCache {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn with_namespace(&self, namespace: Namespace) -> Arc<dyn Cache> {
        Arc::new(FaultCache {
            inner: self.inner.with_namespace(namespace),
            shared: self.shared.clone(),
        })
    }

    async fn stat(&self, key: &Key, options: &OpenOptions) -> Result<ObjectMeta> {
        self.inner.stat(key, options).await
    }

    async fn open(&self, key: &Key, options: &OpenOptions) -> Result<Object> {
        let n = self.shared.opens.fetch_add(1, Ordering::SeqCst) + 1;
        let fault = *self.shared.fault.lock().unwrap();
        let mut options = options.clone();
        match fault {
            Fault::IgnoreRanges => options.range = None,
            Fault::ChangeOnSecondOpen if n == 2 => {
                self.inner
                    .put_bytes(
                        key,
                        pattern(SIZE, 1).into(),
                        HeaderMap::new(),
                        &Default::default(),
                    )
                    .await?;
            }
            _ => {}
        }
        let mut object = self.inner.open(key, &options).await?;
        if let Fault::StallAt(start) = fault {
            if object.meta.range.map(|(s, _)| s) == Some(start) {
                object.body = Box::pin(Stalled);
            }
        }
        Ok(object)
    }

    async fn create(
        &self,
        key: &Key,
        headers: HeaderMap,
        options: &CreateOptions,
    ) -> Result<Box<dyn CacheWriter>> {
        self.inner.create(key, headers, options).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn invalidate(&self, key: &Key) -> Result<()> {
        self.inner.invalidate(key).await
    }

    async fn stats(&self) -> Result<Stats> {
        self.inner.stats().await
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        self.inner.list_namespaces().await
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

struct Env {
    server: RunningServer,
    shared: Arc<Shared>,
    remote: Arc<RemoteCache>,
    key: Key,
}

impl Env {
    async fn new() -> Env {
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::None),
            opens: AtomicUsize::new(0),
        });
        let cache = FaultCache {
            inner: Arc::new(MemoryCache::new(0)),
            shared: shared.clone(),
        };
        let server = Server::builder(Arc::new(cache))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let remote = RemoteCache::builder(server.url())
            .idle_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let key = Key::new("big");
        remote
            .put_bytes(
                &key,
                pattern(SIZE, 0).into(),
                HeaderMap::new(),
                &Default::default(),
            )
            .await
            .unwrap();
        Env {
            server,
            shared,
            remote: Arc::new(remote),
            key,
        }
    }

    fn fault(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = fault;
        self.shared.opens.store(0, Ordering::SeqCst);
    }

    fn opens(&self) -> usize {
        self.shared.opens.load(Ordering::SeqCst)
    }

    /// Both kinds of source for the object.
    fn sources(&self) -> Vec<(&'static str, Arc<dyn RangedSource>)> {
        let http = HttpClient::builder()
            .idle_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let url = format!("{}/api/v1/object/default/{}", self.server.url(), self.key);
        vec![
            (
                "cache",
                Arc::new(CacheSource::new(self.remote.clone(), self.key)),
            ),
            ("url", Arc::new(HttpSource::new(http, url))),
        ]
    }
}

fn opts() -> ParallelOptions {
    ParallelOptions::default()
        .with_concurrency(4)
        .with_chunk_size(CHUNK)
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_downloads_over_http_split_into_chunks() {
    let env = Env::new().await;
    for (name, source) in env.sources() {
        env.fault(Fault::None);
        let (info, mut reader) = parallel_reader(source.clone(), &opts()).await.unwrap();
        assert!(info.parallel, "{name}");
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert!(out == pattern(SIZE, 0), "{name}");
        assert_eq!(env.opens(), SIZE / CHUNK as usize, "{name}");

        let file = tempfile::tempfile().unwrap();
        let file = Arc::new(file);
        let info = parallel_get(source, file.clone(), &opts()).await.unwrap();
        assert_eq!(info.size, Some(SIZE as u64));
        let mut written = Vec::new();
        std::io::Read::read_to_end(&mut &*file, &mut written).unwrap();
        assert!(written == pattern(SIZE, 0), "{name}");
    }
    // An empty object: the discovery's 416 `bytes */0` is an empty result.
    let empty = Key::new("empty");
    env.remote
        .put_bytes(
            &empty,
            Vec::new().into(),
            HeaderMap::new(),
            &Default::default(),
        )
        .await
        .unwrap();
    let source = Arc::new(CacheSource::new(env.remote.clone(), empty));
    let (info, mut reader) = parallel_reader(source, &opts()).await.unwrap();
    assert_eq!(info.size, Some(0));
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    assert!(out.is_empty());

    // open_object with a size threshold: below it, one plain request.
    env.fault(Fault::None);
    let big = ParallelOptions::default()
        .with_chunk_size(CHUNK)
        .with_min_size(SIZE as u64 + 1);
    let mut object = open_object(&*env.remote, &env.key, &big).await.unwrap();
    let mut out = Vec::new();
    object.body.read_to_end(&mut out).await.unwrap();
    assert!(out == pattern(SIZE, 0));
    assert_eq!(env.opens(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_changes_mid_download_is_an_error() {
    let env = Env::new().await;
    for (name, source) in env.sources() {
        // Put the original back, then replace it after the discovery.
        env.remote
            .put_bytes(
                &env.key,
                pattern(SIZE, 0).into(),
                HeaderMap::new(),
                &Default::default(),
            )
            .await
            .unwrap();
        env.fault(Fault::ChangeOnSecondOpen);
        let (_, mut reader) = parallel_reader(source.clone(), &opts()).await.unwrap();
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).await.unwrap_err();
        let msg = chain(&err);
        assert!(msg.contains("changed during the download"), "{name}: {msg}");
        // Nothing of the new version was handed out as if it were the old.
        assert!(out[..] == pattern(SIZE, 0)[..out.len()], "{name}");

        env.remote
            .put_bytes(
                &env.key,
                pattern(SIZE, 0).into(),
                HeaderMap::new(),
                &Default::default(),
            )
            .await
            .unwrap();
        env.fault(Fault::ChangeOnSecondOpen);
        let err = parallel_get(source, Arc::new(Mutex::new(Vec::new())), &opts())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("changed"), "{name}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_ranges_is_read_as_one_stream() {
    let env = Env::new().await;
    for (name, source) in env.sources() {
        env.fault(Fault::IgnoreRanges);
        let (info, mut reader) = parallel_reader(source, &opts()).await.unwrap();
        assert!(!info.parallel, "{name}");
        assert_eq!(info.size, Some(SIZE as u64), "{name}");
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert!(out == pattern(SIZE, 0), "{name}");
        // Accepted as is, never retried.
        assert_eq!(env.opens(), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_chunk_fails_with_the_idle_timeout() {
    let env = Env::new().await;
    for (name, source) in env.sources() {
        env.fault(Fault::StallAt(5 * CHUNK));
        let started = Instant::now();
        let (_, mut reader) = parallel_reader(source.clone(), &opts()).await.unwrap();
        let mut out = Vec::new();
        let err = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut out))
            .await
            .expect("the stall must not hang the download")
            .unwrap_err();
        let msg = chain(&err);
        assert!(msg.contains("timed out"), "{name}: {msg}");
        assert!(started.elapsed() < Duration::from_secs(5), "{name}");
        assert!(out.len() as u64 <= 5 * CHUNK, "{name}");

        env.fault(Fault::StallAt(5 * CHUNK));
        let err = tokio::time::timeout(
            Duration::from_secs(10),
            parallel_get(source, Arc::new(Mutex::new(Vec::new())), &opts()),
        )
        .await
        .expect("the stall must not hang the download")
        .unwrap_err();
        assert!(chain(&err).contains("timed out"), "{name}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_downloads_large_objects_in_parallel() {
    use cachew_client::{restore, save, RestoreOptions, RestoreOutcome, SaveOptions};
    use std::path::PathBuf;

    let env = Env::new().await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data.bin"), pattern(SIZE, 3)).unwrap();
    let key = Key::new("tree");
    save(
        &*env.remote,
        &key,
        &src,
        &[PathBuf::from(".")],
        &SaveOptions::default(),
    )
    .await
    .unwrap();
    let size = env
        .remote
        .stat(&key, &OpenOptions::default())
        .await
        .unwrap()
        .size
        .expect("the reference server sends Content-Length");
    assert!(size > 4096, "archive of {size} bytes is too small to split");

    // At or above min_size: one ranged open per 1 KiB chunk.
    env.fault(Fault::None);
    let parallel = ParallelOptions::default()
        .with_concurrency(4)
        .with_chunk_size(1024)
        .with_min_size(size);
    let opts = RestoreOptions::default().with_parallel(parallel.clone());
    let dst = tmp.path().join("dst");
    let outcome = restore(&*env.remote, &[key], &dst, &opts).await.unwrap();
    assert!(matches!(outcome, RestoreOutcome::Hit { .. }), "{outcome:?}");
    assert!(std::fs::read(dst.join("data.bin")).unwrap() == pattern(SIZE, 3));
    assert_eq!(env.opens() as u64, size.div_ceil(1024));

    // Below min_size: one plain open.
    env.fault(Fault::None);
    let opts = RestoreOptions::default().with_parallel(parallel.with_min_size(size + 1));
    let dst = tmp.path().join("dst2");
    restore(&*env.remote, &[key], &dst, &opts).await.unwrap();
    assert!(std::fs::read(dst.join("data.bin")).unwrap() == pattern(SIZE, 3));
    assert_eq!(env.opens(), 1);
}

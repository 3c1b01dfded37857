//! Save and restore against `MemoryCache` (and a failing wrapper around it):
//! round trips, headers, fallback keys, staging, digests and failure paths.

use std::fmt;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use cachew_client::{
    restore, save, tree_digest, AbortCause, Cache, CacheExt, CacheWriter, CreateOptions, Key,
    MemoryCache, Namespace, Object, ObjectMeta, OpenOptions, Progress, RestoreOptions,
    RestoreOutcome, SaveOptions, SaveOutcome, Stats, TreeDigest,
};
use cachew_testkit::{list, set_mtime};
use http::HeaderMap;
use tokio::io::AsyncWrite;

/// Incompressible bytes, so archives are larger than their headers.
fn noise(len: usize) -> Vec<u8> {
    cachew_testkit::random_bytes(len, 0x2545_f491_4f6c_dd1d)
}

/// A small tree with everything the archive must preserve.
fn sample_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("project");
    fs::create_dir_all(p.join("src/nested/deep")).unwrap();
    fs::create_dir_all(p.join("empty")).unwrap();
    fs::create_dir_all(p.join("target/debug")).unwrap();
    fs::write(p.join("src/main.rs"), "fn main() {}\n").unwrap();
    fs::write(p.join("src/nested/deep/data.bin"), noise(300_000)).unwrap();
    fs::write(p.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(p.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(p.join("private"), "secret").unwrap();
    fs::set_permissions(p.join("private"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(p.join("target/debug/app.o"), "object").unwrap();
    std::os::unix::fs::symlink("src/main.rs", p.join("link")).unwrap();
    fs::hard_link(p.join("src/main.rs"), p.join("hard.rs")).unwrap();
    for (i, f) in [
        "src/main.rs",
        "run.sh",
        "private",
        "src/nested/deep/data.bin",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&p.join(f), 1_600_000_000 + i as i64 * 1000);
    }
    for (i, d) in [
        "src/nested/deep",
        "src/nested",
        "src",
        "empty",
        "target/debug",
        "target",
        ".",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&p.join(d), 1_500_000_000 + i as i64 * 1000);
    }
    dir
}

fn all() -> Vec<PathBuf> {
    vec![PathBuf::from(".")]
}

#[tokio::test]
async fn round_trip_preserves_contents_modes_links_and_mtimes() {
    let src = sample_tree();
    let base = src.path().join("project");
    let cache = MemoryCache::new(0);
    let key = Key::new("round-trip");
    let progress = Progress::new();
    let outcome = save(
        &cache,
        &key,
        &base,
        &all(),
        &SaveOptions::default().with_progress(progress.clone()),
    )
    .await
    .unwrap();
    let SaveOutcome::Uploaded {
        digest: Some(digest),
        compressed_bytes,
        ..
    } = outcome
    else {
        panic!("expected an upload with a digest, got {outcome:?}");
    };
    assert_eq!(progress.transferred(), compressed_bytes);
    assert!(compressed_bytes > 0);

    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("a/b/restored");
    let progress = Progress::new();
    let outcome = restore(
        &cache,
        &[key],
        &target,
        &RestoreOptions::default()
            .with_verify(true)
            .with_progress(progress.clone()),
    )
    .await
    .unwrap();
    match outcome {
        RestoreOutcome::Hit {
            index, verified, ..
        } => {
            assert_eq!(index, 0);
            assert_eq!(verified, Some(digest));
        }
        RestoreOutcome::Miss => panic!("expected a hit"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(progress.transferred(), compressed_bytes);
    assert_eq!(progress.total(), compressed_bytes);
    assert_eq!(list(&base), list(&target));
    // The hard link survived as a hard link.
    let a = fs::metadata(target.join("src/main.rs")).unwrap();
    let b = fs::metadata(target.join("hard.rs")).unwrap();
    assert_eq!(a.ino(), b.ino());
    // No staging directory is left beside the target.
    let leftovers: Vec<_> = fs::read_dir(dst.path().join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["restored"]);
}

#[tokio::test]
async fn save_sends_protocol_headers_and_extra_headers() {
    let src = sample_tree();
    let base = src.path().join("project");
    let cache = MemoryCache::new(0);
    let key = Key::new("headers");
    let mut extra = HeaderMap::new();
    extra.insert("x-build", "42".parse().unwrap());
    save(
        &cache,
        &key,
        &base.join("src/.."),
        &[PathBuf::from("src"), PathBuf::from("run.sh")],
        &SaveOptions::default()
            .with_headers(extra)
            .with_excludes(["*.bin"]),
    )
    .await
    .unwrap();
    let meta = cache.stat(&key, &OpenOptions::default()).await.unwrap();
    let h = |name: &str| meta.headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(h("content-type"), "application/zstd");
    // The basename of the canonical base directory, not of `src/..`.
    assert_eq!(
        h("content-disposition"),
        "attachment; filename=\"project.tar.zst\""
    );
    assert_eq!(h("x-build"), "42");
    // The digest is the archive's trailer; the headers say what it covers.
    let expected = tree_digest(&base, &["src", "run.sh"], &["*.bin"], 0).unwrap();
    let body = cache
        .open(&key, &OpenOptions::default())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(TreeDigest::from_trailer(&body), Some(expected.digest));
    assert!(meta.headers.get("x-cachew-tree-digest").is_none());
    assert_eq!(h(cachew_client::digest::TREE_PATHS), "src run.sh");
    assert_eq!(h(cachew_client::digest::TREE_EXCLUDES), "*.bin");

    // Only the saved paths come back, without the excluded file.
    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("out");
    restore(
        &cache,
        &[key],
        &target,
        &RestoreOptions::default().with_verify(true),
    )
    .await
    .unwrap();
    assert!(target.join("src/main.rs").exists());
    assert!(target.join("run.sh").exists());
    assert!(!target.join("private").exists());
    assert!(!target.join("src/nested/deep/data.bin").exists());
    assert!(target.join("src/nested/deep").is_dir());
}

#[tokio::test]
async fn excludes_drop_entries_at_any_depth() {
    let src = sample_tree();
    let base = src.path().join("project");
    let cache = MemoryCache::new(0);
    let key = Key::new("excludes");
    save(
        &cache,
        &key,
        &base,
        &all(),
        &SaveOptions::default().with_excludes(["target", "*.sh"]),
    )
    .await
    .unwrap();
    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("out");
    restore(&cache, &[key], &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert!(!target.join("target").exists());
    assert!(!target.join("run.sh").exists());
    assert!(target.join("src/main.rs").exists());
}

#[tokio::test]
async fn missing_include_path_fails_before_anything_is_uploaded() {
    let src = sample_tree();
    let base = src.path().join("project");
    let cache = CountingCache::new(MemoryCache::new(0), None);
    let key = Key::new("missing");
    let err = save(
        &cache,
        &key,
        &base,
        &[PathBuf::from("src"), PathBuf::from("nope")],
        &SaveOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(cache.creates.load(Ordering::SeqCst), 0);
    assert!(!cache.exists(&key).await.unwrap());

    for bad in [
        vec![],
        vec![PathBuf::from("../x")],
        vec![PathBuf::from("/etc")],
    ] {
        assert!(save(&cache, &key, &base, &bad, &SaveOptions::default())
            .await
            .is_err());
    }
    let err = save(
        &cache,
        &key,
        &src.path().join("no-such-dir"),
        &all(),
        &SaveOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    assert_eq!(cache.creates.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn upload_failure_aborts_and_leaves_no_object() {
    let src = sample_tree();
    let base = src.path().join("project");
    // The writer fails after 1 KiB: the archive error must abort the upload.
    let cache = CountingCache::new(MemoryCache::new(0), Some(1024));
    let key = Key::new("fails");
    let err = save(
        &cache,
        &key,
        &base,
        &all(),
        &SaveOptions::default().with_zstd_level(1),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(cache.creates.load(Ordering::SeqCst), 1);
    assert!(cache.aborted.load(Ordering::SeqCst));
    assert!(!cache.committed.load(Ordering::SeqCst));
    assert!(!cache.exists(&key).await.unwrap());
}

#[tokio::test]
async fn miss_and_fallback_keys() {
    let src = sample_tree();
    let base = src.path().join("project");
    let cache = MemoryCache::new(0);
    let (a, b, c) = (Key::new("a"), Key::new("b"), Key::new("c"));
    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("out");

    let miss = restore(&cache, &[a, b, c], &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(miss, RestoreOutcome::Miss);
    assert!(!target.exists(), "a miss must not create the directory");

    save(&cache, &b, &base, &all(), &SaveOptions::default())
        .await
        .unwrap();
    save(
        &cache,
        &c,
        &base,
        &[PathBuf::from("src")],
        &SaveOptions::default(),
    )
    .await
    .unwrap();
    let lookup = restore(
        &cache,
        &[a, b, c],
        &target,
        &RestoreOptions::default().with_lookup_only(true),
    )
    .await
    .unwrap();
    assert!(matches!(lookup, RestoreOutcome::Hit { key, index: 1, entries: 0, .. } if key == b));
    assert!(!target.exists(), "lookup-only must not download");

    let hit = restore(&cache, &[a, b, c], &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert!(matches!(hit, RestoreOutcome::Hit { key, index: 1, .. } if key == b));
    assert!(
        target.join("run.sh").exists(),
        "the tree of `b` was restored"
    );
    assert!(restore(&cache, &[], &target, &RestoreOptions::default())
        .await
        .is_err());
}

#[tokio::test]
async fn corrupt_archive_is_an_error_and_leaves_nothing() {
    let src = sample_tree();
    let base = src.path().join("project");
    let cache = MemoryCache::new(0);
    let key = Key::new("corrupt");
    save(&cache, &key, &base, &all(), &SaveOptions::default())
        .await
        .unwrap();
    // Keep the first half of a valid archive: it starts fine, then stops.
    let full = cache.get_bytes(&key).await.unwrap();
    let truncated = full.slice(..full.len() / 2);
    cache
        .put_bytes(&key, truncated, HeaderMap::new(), &CreateOptions::default())
        .await
        .unwrap();
    let garbage = Key::new("garbage");
    cache
        .put_bytes(
            &garbage,
            Bytes::from_static(b"this is not zstd at all"),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();

    let dst = tempfile::tempdir().unwrap();
    for k in [key, garbage] {
        // A trailing slash must not skip staging (LESSONS 3).
        let target = dst.path().join("out/");
        let err = restore(&cache, &[k], &target, &RestoreOptions::default())
            .await
            .unwrap_err();
        assert!(!err.to_string().is_empty());
        let left: Vec<_> = fs::read_dir(dst.path()).unwrap().collect();
        assert!(left.is_empty(), "a failed restore left {left:?}");
    }
}

#[tokio::test]
async fn restore_in_place_replaces_files_under_read_only_directories() {
    let src = sample_tree();
    let base = src.path().join("project");
    let cache = MemoryCache::new(0);
    let key = Key::new("in-place");
    save(&cache, &key, &base, &all(), &SaveOptions::default())
        .await
        .unwrap();

    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("existing");
    fs::create_dir_all(target.join("src")).unwrap();
    fs::write(target.join("src/main.rs"), "stale").unwrap();
    fs::write(target.join("untouched.txt"), "mine").unwrap();
    fs::set_permissions(target.join("src"), fs::Permissions::from_mode(0o555)).unwrap();
    let outcome = restore(&cache, &[key], &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert!(matches!(outcome, RestoreOutcome::Hit { .. }));
    assert_eq!(
        fs::read_to_string(target.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    assert_eq!(
        fs::read_to_string(target.join("untouched.txt")).unwrap(),
        "mine"
    );
}

#[tokio::test]
async fn skip_unchanged_compares_tree_digests() {
    let src = sample_tree();
    let base = src.path().join("project");
    let cache = CountingCache::new(MemoryCache::new(0), None);
    let key = Key::new("skip");
    let opts = SaveOptions::default().with_skip_unchanged(true);
    let first = save(&cache, &key, &base, &all(), &opts).await.unwrap();
    assert!(matches!(first, SaveOutcome::Uploaded { .. }));
    let second = save(&cache, &key, &base, &all(), &opts).await.unwrap();
    let SaveOutcome::Unchanged { digest, .. } = second else {
        panic!("expected unchanged, got {second:?}");
    };
    assert_eq!(cache.creates.load(Ordering::SeqCst), 1);
    // mtimes are not part of the digest...
    set_mtime(&base.join("run.sh"), 1);
    assert!(matches!(
        save(&cache, &key, &base, &all(), &opts).await.unwrap(),
        SaveOutcome::Unchanged { .. }
    ));
    // ...contents are.
    fs::write(base.join("run.sh"), "#!/bin/sh\necho changed\n").unwrap();
    let third = save(&cache, &key, &base, &all(), &opts).await.unwrap();
    assert!(
        matches!(third, SaveOutcome::Uploaded { digest: Some(d), .. } if d != digest),
        "{third:?}"
    );
    assert_eq!(cache.creates.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn verify_fails_on_a_mismatch_or_a_missing_digest_and_leaves_nothing() {
    let src = sample_tree();
    let base = src.path().join("project");
    let cache = MemoryCache::new(0);
    let key = Key::new("verify");
    save(&cache, &key, &base, &all(), &SaveOptions::default())
        .await
        .unwrap();
    let object = cache.open(&key, &OpenOptions::default()).await.unwrap();
    let mut headers = object.meta.headers.clone();
    let body = object.bytes().await.unwrap();
    let mut paths_header = HeaderMap::new();
    paths_header.insert(
        cachew_client::digest::TREE_PATHS,
        headers.remove(cachew_client::digest::TREE_PATHS).unwrap(),
    );
    let trailer_at = body.len() - cachew_client::digest::TRAILER_LEN;

    // Same archive, wrong digest in its trailer.
    let tampered = Key::new("tampered");
    let mut bad = body.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    cache
        .put_bytes(
            &tampered,
            bad.into(),
            paths_header.clone(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    // Same archive, no digest at all.
    let bare = Key::new("bare");
    let without_trailer = body.slice(..trailer_at);
    cache
        .put_bytes(
            &bare,
            without_trailer.clone(),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    // Headers that announce a digest, an archive without its trailer.
    let cut = Key::new("cut");
    cache
        .put_bytes(
            &cut,
            without_trailer,
            paths_header,
            &CreateOptions::default(),
        )
        .await
        .unwrap();

    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("out");
    let verify = RestoreOptions::default().with_verify(true);
    let err = restore(&cache, &[tampered], &target, &verify)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("verification failed"), "{err}");
    let err = restore(&cache, &[bare], &target, &verify)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no tree digest"), "{err}");
    let err = restore(&cache, &[cut], &target, &verify).await.unwrap_err();
    assert!(err.to_string().contains("no digest trailer"), "{err}");
    assert_eq!(fs::read_dir(dst.path()).unwrap().count(), 0);
    // Without --verify the bare object restores fine.
    restore(&cache, &[bare], &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(list(&base), list(&target));
}

#[tokio::test]
async fn restore_into_a_file_is_an_error() {
    let src = sample_tree();
    let base = src.path().join("project");
    let cache = MemoryCache::new(0);
    let key = Key::new("file-target");
    save(&cache, &key, &base, &all(), &SaveOptions::default())
        .await
        .unwrap();
    let err = restore(
        &cache,
        &[key],
        &base.join("run.sh"),
        &RestoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

/// Wraps a cache, counts creates, and optionally makes writers fail after
/// a number of bytes.
#[derive(Debug)]
struct CountingCache {
    inner: Arc<dyn Cache>,
    fail_after: Option<usize>,
    /// Bodies returned by `open` fail after this many bytes.
    fail_reads_after: Option<usize>,
    creates: Arc<AtomicUsize>,
    aborted: Arc<AtomicBool>,
    committed: Arc<AtomicBool>,
}

impl CountingCache {
    fn new(inner: MemoryCache, fail_after: Option<usize>) -> Self {
        CountingCache {
            inner: Arc::new(inner),
            fail_after,
            fail_reads_after: None,
            creates: Arc::default(),
            aborted: Arc::default(),
            committed: Arc::default(),
        }
    }
}

impl fmt::Display for CountingCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "counting({})", self.inner)
    }
}

#[async_trait]
impl Cache for CountingCache {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    fn with_namespace(&self, namespace: Namespace) -> Arc<dyn Cache> {
        self.inner.with_namespace(namespace)
    }
    async fn stat(&self, key: &Key, options: &OpenOptions) -> cachew_client::Result<ObjectMeta> {
        self.inner.stat(key, options).await
    }
    async fn open(&self, key: &Key, options: &OpenOptions) -> cachew_client::Result<Object> {
        let object = self.inner.open(key, options).await?;
        let Some(limit) = self.fail_reads_after else {
            return Ok(object);
        };
        let meta = object.meta.clone();
        let data = object.bytes().await?;
        Ok(Object {
            meta,
            body: Box::pin(BrokenBody {
                data,
                pos: 0,
                limit,
            }),
        })
    }
    async fn create(
        &self,
        key: &Key,
        headers: HeaderMap,
        options: &CreateOptions,
    ) -> cachew_client::Result<Box<dyn CacheWriter>> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.create(key, headers, options).await?;
        Ok(Box::new(FailingWriter {
            inner,
            left: self.fail_after,
            aborted: self.aborted.clone(),
            committed: self.committed.clone(),
        }))
    }
    async fn delete(&self, key: &Key) -> cachew_client::Result<()> {
        self.inner.delete(key).await
    }
    async fn invalidate(&self, key: &Key) -> cachew_client::Result<()> {
        self.inner.invalidate(key).await
    }
    async fn stats(&self) -> cachew_client::Result<Stats> {
        self.inner.stats().await
    }
    async fn list_namespaces(&self) -> cachew_client::Result<Vec<String>> {
        self.inner.list_namespaces().await
    }
}

#[derive(Debug)]
struct FailingWriter {
    inner: Box<dyn CacheWriter>,
    left: Option<usize>,
    aborted: Arc<AtomicBool>,
    committed: Arc<AtomicBool>,
}

impl AsyncWrite for FailingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(left) = self.left {
            if buf.len() > left {
                return Poll::Ready(Err(std::io::Error::other("injected upload failure")));
            }
            self.left = Some(left - buf.len());
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl CacheWriter for FailingWriter {
    async fn commit(&mut self) -> cachew_client::Result<()> {
        self.committed.store(true, Ordering::SeqCst);
        self.inner.commit().await
    }
    async fn abort(&mut self, cause: AbortCause) -> cachew_client::Result<()> {
        self.aborted.store(true, Ordering::SeqCst);
        self.inner.abort(cause).await
    }
}

/// A body that delivers `limit` bytes, then fails like a dropped connection.
struct BrokenBody {
    data: Bytes,
    pos: usize,
    limit: usize,
}

impl tokio::io::AsyncRead for BrokenBody {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let end = self.limit.min(self.data.len());
        if self.pos >= self.data.len() {
            return Poll::Ready(Ok(()));
        }
        if self.pos >= end {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected download failure",
            )));
        }
        // Small reads, as a network gives them.
        let n = (end - self.pos).min(buf.remaining()).min(4096);
        let pos = self.pos;
        buf.put_slice(&self.data[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn download_failure_mid_stream_is_an_error_and_leaves_nothing() {
    let src = sample_tree();
    let base = src.path().join("project");
    let mut cache = CountingCache::new(MemoryCache::new(0), None);
    let key = Key::new("broken-download");
    save(&cache, &key, &base, &all(), &SaveOptions::default())
        .await
        .unwrap();
    let size = cache.get_bytes(&key).await.unwrap().len();
    cache.fail_reads_after = Some(size / 2);
    let dst = tempfile::tempdir().unwrap();
    let err = restore(
        &cache,
        &[key],
        &dst.path().join("out"),
        &RestoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("injected download failure"),
        "{err}"
    );
    assert_eq!(fs::read_dir(dst.path()).unwrap().count(), 0);

    // The full body still restores.
    cache.fail_reads_after = Some(usize::MAX);
    restore(
        &cache,
        &[key],
        &dst.path().join("out"),
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(list(&base), list(&dst.path().join("out")));
}

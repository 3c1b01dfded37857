//! DiskCache beyond the shared suite: crashes, persistence, two handles on
//! one root, and bad input.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use cachew_client::{
    ByteRange, Cache, CacheExt, CacheWriter, CreateOptions, DiskCache, DiskCacheOptions, Error,
    Key, Namespace, OpenOptions,
};
use http::HeaderMap;
use tokio::io::AsyncWriteExt;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 13 + u64::from(seed) * 101) % 253) as u8)
        .collect()
}

fn content_type(value: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, value.parse().unwrap());
    headers
}

async fn put(cache: &dyn Cache, key: &Key, data: &[u8]) {
    cache
        .put_bytes(
            key,
            Bytes::copy_from_slice(data),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
}

/// A writer for a new object `name` with no headers or options.
async fn new_writer(cache: &dyn Cache, name: &str) -> Box<dyn CacheWriter> {
    cache
        .create(&Key::new(name), HeaderMap::new(), &CreateOptions::default())
        .await
        .unwrap()
}

fn temp_files(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<_> = fs::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path(), e.metadata().unwrap().len())
        })
        .collect();
    files.sort();
    files
}

fn object_file(root: &Path, ns: &str, key: &Key) -> PathBuf {
    let hex = key.to_hex();
    root.join("objects").join(ns).join(&hex[..2]).join(hex)
}

const CRASH_ENV: &str = "CACHEW_DISK_CRASH_ROOT";

/// The child half of the crash test: commit two objects, leave two uploads
/// half-written (one a replacement of a committed object), then die by
/// SIGKILL so no destructor runs.
#[cfg(unix)]
fn crash_child(root: &Path) -> ! {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = DiskCache::open(root).unwrap();
        cache
            .put_bytes(
                &Key::new("a"),
                Bytes::from(pattern(200 * 1024, 1)),
                HeaderMap::new(),
                &CreateOptions::default(),
            )
            .await
            .unwrap();
        cache
            .put_bytes(
                &Key::new("b"),
                Bytes::from_static(b"bravo"),
                content_type("text/x-bravo"),
                &CreateOptions::default(),
            )
            .await
            .unwrap();
        let mut new_object = new_writer(&cache, "c").await;
        new_object.write_all(&pattern(100 * 1024, 2)).await.unwrap();
        new_object.flush().await.unwrap();
        let mut replacement = new_writer(&cache, "a").await;
        replacement.write_all(&pattern(50 * 1024, 3)).await.unwrap();
        replacement.flush().await.unwrap();
        // SAFETY: plain libc calls with no pointers.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        unreachable!("SIGKILL does not return");
    })
}

#[cfg(unix)]
#[test]
fn crash_mid_upload_leaves_no_partial_object_and_keeps_committed_ones() {
    if let Some(root) = std::env::var_os(CRASH_ENV) {
        crash_child(Path::new(&root));
    }
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_mid_upload_leaves_no_partial_object_and_keeps_committed_ones",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CRASH_ENV, &root)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "child: {status}");

    // The crash left the two half-written uploads behind, with their data.
    let leftovers = temp_files(&root);
    let sizes: Vec<u64> = leftovers.iter().map(|(_, len)| *len).collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    assert!(
        sizes.contains(&(100 * 1024)) && sizes.contains(&(50 * 1024)),
        "{sizes:?}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cache = DiskCache::open(&root).unwrap();
        assert!(
            temp_files(&root).is_empty(),
            "abandoned uploads are removed"
        );
        assert!(
            cache.get_bytes(&Key::new("a")).await.unwrap() == pattern(200 * 1024, 1),
            "the committed version survives an interrupted replacement"
        );
        let b = cache
            .open(&Key::new("b"), &OpenOptions::default())
            .await
            .unwrap();
        assert_eq!(b.meta.headers["content-type"], "text/x-bravo");
        assert_eq!(b.bytes().await.unwrap(), "bravo");
        assert!(matches!(
            cache.open(&Key::new("c"), &OpenOptions::default()).await,
            Err(Error::NotFound)
        ));
        let stats = cache.stats().await.unwrap();
        assert_eq!(stats.objects, 2);
    });
}

#[tokio::test]
async fn a_live_upload_of_another_handle_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first = DiskCache::open(dir.path()).unwrap();
    put(&first, &Key::new("committed"), b"safe").await;
    let mut writer = new_writer(&first, "slow").await;
    writer.write_all(b"part one, ").await.unwrap();
    writer.flush().await.unwrap();

    // Another handle (as another process would) opens the root mid-upload.
    let second = DiskCache::open(dir.path()).unwrap();
    assert_eq!(
        temp_files(dir.path()).len(),
        1,
        "a locked upload is not abandoned"
    );
    assert!(!second.exists(&Key::new("slow")).await.unwrap());
    assert_eq!(
        second.get_bytes(&Key::new("committed")).await.unwrap(),
        "safe"
    );

    writer.write_all(b"part two").await.unwrap();
    writer.commit().await.unwrap();
    assert_eq!(
        second.get_bytes(&Key::new("slow")).await.unwrap(),
        "part one, part two"
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test]
async fn a_forgotten_writer_never_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path()).unwrap();
    let mut writer = new_writer(&cache, "leaked").await;
    writer.write_all(&pattern(10_000, 4)).await.unwrap();
    writer.flush().await.unwrap();
    // Neither commit, abort nor drop: the upload is simply abandoned.
    std::mem::forget(writer);
    let reopened = DiskCache::open(dir.path()).unwrap();
    assert!(!reopened.exists(&Key::new("leaked")).await.unwrap());
    assert_eq!(reopened.stats().await.unwrap().objects, 0);
}

#[tokio::test]
async fn objects_and_metadata_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new("persisted");
    let (etag, last_modified) = {
        let cache = DiskCache::open(dir.path()).unwrap();
        let mut headers = content_type("application/zstd");
        headers.insert("x-custom", "1".parse().unwrap());
        headers.append("x-custom", "2".parse().unwrap());
        cache
            .put_bytes(
                &key,
                Bytes::from(pattern(5000, 5)),
                headers,
                &CreateOptions::default().with_ttl(Duration::from_secs(600)),
            )
            .await
            .unwrap();
        let meta = cache.stat(&key, &OpenOptions::default()).await.unwrap();
        (meta.etag, meta.last_modified)
    };
    let cache = DiskCache::open(dir.path()).unwrap();
    let object = cache
        .open(
            &key,
            &OpenOptions::default().with_range(ByteRange::new(4000, 4100).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(object.meta.etag, etag);
    assert_eq!(object.meta.last_modified, last_modified);
    assert_eq!(object.meta.headers["content-type"], "application/zstd");
    let custom: Vec<_> = object.meta.headers.get_all("x-custom").iter().collect();
    assert_eq!(custom, ["1", "2"], "repeated headers keep their order");
    assert_eq!(object.meta.headers["content-range"], "bytes 4000-4099/5000");
    assert!(object.bytes().await.unwrap() == pattern(5000, 5)[4000..4100]);
    assert!(object_file(dir.path(), "default", &key).is_file());
    assert_eq!(
        cache.to_string(),
        format!("disk:{}", fs::canonicalize(dir.path()).unwrap().display())
    );
    let stats = cache.stats().await.unwrap();
    assert_eq!(stats.objects, 1);
    assert!(stats.size > 5000, "size counts bytes on disk: {stats:?}");
}

#[tokio::test]
async fn recency_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = DiskCacheOptions::default().with_capacity(80 * 1024);
    let (a, b, c) = (Key::new("a"), Key::new("b"), Key::new("c"));
    {
        let cache = DiskCache::open_with(dir.path(), options.clone()).unwrap();
        put(&cache, &a, &pattern(30 * 1024, 1)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        put(&cache, &b, &pattern(30 * 1024, 2)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Reading `a` makes `b` the least recently used, on disk too.
        cache.get_bytes(&a).await.unwrap();
    }
    let cache = DiskCache::open_with(dir.path(), options).unwrap();
    put(&cache, &c, &pattern(30 * 1024, 3)).await;
    assert!(cache.exists(&a).await.unwrap());
    assert!(
        !cache.exists(&b).await.unwrap(),
        "b was least recently used"
    );
    assert!(cache.exists(&c).await.unwrap());
    assert!(
        !object_file(dir.path(), "default", &b).exists(),
        "evicted file removed"
    );
}

#[tokio::test]
async fn a_smaller_capacity_on_reopen_evicts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = DiskCache::open(dir.path()).unwrap();
        for i in 0..4u8 {
            put(&cache, &Key::new([i]), &pattern(10_000, i)).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let cache = DiskCache::open_with(
        dir.path(),
        DiskCacheOptions::default().with_capacity(25_000),
    )
    .unwrap();
    let stats = cache.stats().await.unwrap();
    assert_eq!(stats.objects, 2, "{stats:?}");
    assert!(stats.size <= 25_000);
    assert!(cache.exists(&Key::new([3u8])).await.unwrap(), "newest kept");
    assert!(
        !cache.exists(&Key::new([0u8])).await.unwrap(),
        "oldest evicted"
    );
}

#[tokio::test]
async fn corrupt_object_files_are_misses_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path()).unwrap();
    let (truncated, garbage) = (Key::new("truncated"), Key::new("garbage"));
    put(&cache, &truncated, &pattern(1000, 1)).await;
    put(&cache, &garbage, &pattern(1000, 2)).await;
    let path = object_file(dir.path(), "default", &truncated);
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    fs::write(
        object_file(dir.path(), "default", &garbage),
        b"not an object",
    )
    .unwrap();
    for key in [&truncated, &garbage] {
        assert!(matches!(
            cache.open(key, &OpenOptions::default()).await,
            Err(Error::NotFound)
        ));
        assert!(!object_file(dir.path(), "default", key).exists());
    }
    assert_eq!(cache.stats().await.unwrap().objects, 0);

    // A file of a future format version is a miss but is not destroyed.
    let future = Key::new("future");
    put(&cache, &future, b"from a newer cachew").await;
    let path = object_file(dir.path(), "default", &future);
    let mut bytes = fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() = b'2';
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        cache.open(&future, &OpenOptions::default()).await,
        Err(Error::NotFound)
    ));
    assert!(path.exists(), "another version's object is left alone");
}

#[tokio::test]
async fn a_file_under_another_keys_name_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path()).unwrap();
    let (real, other) = (Key::new("real"), Key::new("other"));
    put(&cache, &real, b"real content").await;
    let dest = object_file(dir.path(), "default", &other);
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    fs::copy(object_file(dir.path(), "default", &real), &dest).unwrap();
    assert!(matches!(
        cache.open(&other, &OpenOptions::default()).await,
        Err(Error::NotFound)
    ));
    assert_eq!(cache.get_bytes(&real).await.unwrap(), "real content");
}

#[tokio::test]
async fn bad_roots_are_errors_that_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"not a directory").unwrap();
    for root in [file.clone(), file.join("below")] {
        let err = DiskCache::open(&root).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(text.contains("a-file"), "names the path: {text}");
        assert!(text.contains("cache"), "says what it was doing: {text}");
    }
    // Permissions do not bind root, so check them only as another user.
    // SAFETY: `geteuid` has no preconditions.
    #[cfg(unix)]
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let locked = dir.path().join("locked");
        fs::create_dir(&locked).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o500)).unwrap();
        let err = DiskCache::open(&locked).unwrap_err().to_string();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(err.contains("locked"), "{err}");
    }
}

#[tokio::test]
async fn invalid_namespaces_are_rejected_and_stray_directories_ignored() {
    for name in ["../escape", "a/b", "", ".hidden"] {
        let err = Namespace::new(name).unwrap_err().to_string();
        assert!(err.contains(&format!("{name:?}")), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("objects/not a namespace/ab")).unwrap();
    fs::write(dir.path().join("objects/not a namespace/ab/x"), b"junk").unwrap();
    fs::create_dir_all(dir.path().join("objects/ns/zz")).unwrap();
    fs::write(dir.path().join("objects/ns/zz/not-a-key"), b"junk").unwrap();
    let cache = DiskCache::open(dir.path()).unwrap();
    assert_eq!(cache.stats().await.unwrap().objects, 0);
    assert!(cache.list_namespaces().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_tiny_capacity_names_the_sizes_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache =
        DiskCache::open_with(dir.path(), DiskCacheOptions::default().with_capacity(100)).unwrap();
    // Refused while writing: the body alone is too big.
    let err = cache
        .put_bytes(
            &Key::new("big"),
            Bytes::from(pattern(1024, 1)),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1024 bytes") && err.contains("capacity of 100 bytes"),
        "{err}"
    );
    // Refused at commit: the body fits, but not with its metadata.
    let mut writer = new_writer(&cache, "small").await;
    writer.write_all(&pattern(60, 2)).await.unwrap();
    let err = writer.commit().await.unwrap_err().to_string();
    assert!(
        err.contains("60 bytes") && err.contains("with its metadata") && err.contains("100 bytes"),
        "{err}"
    );
    assert!(
        matches!(writer.commit().await, Err(Error::Backend(_))),
        "commit again"
    );
    for key in ["big", "small"] {
        assert!(!cache.exists(&Key::new(key)).await.unwrap());
    }
    assert!(temp_files(dir.path()).is_empty(), "temporary files removed");
}

#[tokio::test]
async fn aborted_dropped_and_committed_writers_leave_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path()).unwrap();
    let mut aborted = new_writer(&cache, "aborted").await;
    aborted.write_all(b"partial").await.unwrap();
    let mut dropped = new_writer(&cache, "dropped").await;
    dropped.write_all(b"partial").await.unwrap();
    dropped.flush().await.unwrap();
    assert_eq!(temp_files(dir.path()).len(), 2, "uploads write to tmp/");
    aborted.abort("test".into()).await.unwrap();
    drop(dropped);
    put(&cache, &Key::new("committed"), b"done").await;
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
    );
    assert!(!cache.exists(&Key::new("aborted")).await.unwrap());
    assert!(!cache.exists(&Key::new("dropped")).await.unwrap());
}

/// Uploads are buffered before they reach the temporary file: many small
/// odd-sized writes, across buffer boundaries, are stored whole and in order,
/// and a flush puts what was written into the file.
#[tokio::test]
async fn many_small_writes_are_stored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path()).unwrap();
    let data = pattern(3 * 1024 * 1024 + 17, 9);
    let mut w = new_writer(&cache, "small-writes").await;
    w.write_all(&data[..5]).await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(
        temp_files(dir.path())[0].1,
        5,
        "a flush writes the buffer out"
    );
    for piece in data[5..].chunks(4093) {
        w.write_all(piece).await.unwrap();
    }
    w.commit().await.unwrap();
    assert!(cache.get_bytes(&Key::new("small-writes")).await.unwrap() == data);
    assert!(temp_files(dir.path()).is_empty());
}

const SHARE_ENV: &str = "CACHEW_DISK_SHARE_ROOT";
const SHARED_KEYS: u32 = 3;

/// Version `v`'s body: `v`, then bytes derived from it, with a length that
/// differs between versions.
fn shared_body(v: u32) -> Vec<u8> {
    let len = 8 * 1024 + (v as usize * 7919) % (64 * 1024);
    let mut body = v.to_be_bytes().to_vec();
    body.extend(pattern(len - 4, v as u8));
    body
}

/// One of the processes of the two-process test: writes versions of the
/// shared keys while checking that whatever it reads is a whole version.
#[cfg(unix)]
fn share_child(root: &Path, id: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = DiskCache::open(root).unwrap();
        let keys: Vec<Key> = (0..SHARED_KEYS)
            .map(|k| Key::new(format!("shared-{k}")))
            .collect();
        for round in 0..30u32 {
            let v = id * 1000 + round;
            let key = &keys[(round % SHARED_KEYS) as usize];
            put(&cache, key, &shared_body(v)).await;
            for key in &keys {
                match cache.open(key, &OpenOptions::default()).await {
                    Err(Error::NotFound) => {}
                    other => {
                        let got = other.unwrap().bytes().await.unwrap();
                        let v = u32::from_be_bytes([got[0], got[1], got[2], got[3]]);
                        assert!(got == shared_body(v), "torn read of version {v}");
                    }
                }
            }
        }
    });
}

#[cfg(unix)]
#[test]
fn two_processes_on_one_root_never_corrupt_each_other() {
    if let Some(root) = std::env::var_os(SHARE_ENV) {
        let id = std::env::var("CACHEW_DISK_SHARE_ID")
            .unwrap()
            .parse()
            .unwrap();
        share_child(Path::new(&root), id);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (1..=2u32)
        .map(|id| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "two_processes_on_one_root_never_corrupt_each_other",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(SHARE_ENV, dir.path())
                .env("CACHEW_DISK_SHARE_ID", id.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        let status = child.wait().unwrap();
        assert!(status.success(), "a child process failed: {status}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cache = DiskCache::open(dir.path()).unwrap();
        assert_eq!(cache.stats().await.unwrap().objects, i64::from(SHARED_KEYS));
        for k in 0..SHARED_KEYS {
            let got = cache
                .get_bytes(&Key::new(format!("shared-{k}")))
                .await
                .unwrap();
            let v = u32::from_be_bytes([got[0], got[1], got[2], got[3]]);
            assert!(got == shared_body(v), "final version {v} of key {k}");
            assert!(v / 1000 == 1 || v / 1000 == 2);
        }
    });
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test]
async fn a_sweep_removes_what_a_previous_process_left_expired() {
    let dir = tempfile::tempdir().unwrap();
    let short = CreateOptions::default().with_ttl(Duration::from_millis(300));
    let (gone1, gone2, kept) = (Key::new("gone-1"), Key::new("gone-2"), Key::new("kept"));
    {
        let cache = DiskCache::open(dir.path()).unwrap();
        for k in [&gone1, &gone2] {
            cache
                .put_bytes(
                    k,
                    Bytes::from_static(b"short-lived"),
                    HeaderMap::new(),
                    &short,
                )
                .await
                .unwrap();
        }
        put(&cache, &kept, b"kept for a week").await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cache = DiskCache::open(dir.path()).unwrap();
    // A writer that died after open's own clean-up left this one.
    let stale = dir.path().join("tmp/cachew-tmp-1-2-3");
    fs::write(&stale, b"half an upload").unwrap();
    let live = new_writer(&cache, "in-progress").await;
    let report = cache.sweep().unwrap();
    assert_eq!((report.expired, report.temp_files), (2, 1), "{report:?}");
    assert!(report.bytes > 22, "{report:?}");
    for k in [&gone1, &gone2] {
        assert!(
            !object_file(dir.path(), "default", k).exists(),
            "untouched yet removed"
        );
    }
    assert!(!stale.exists());
    assert_eq!(
        temp_files(dir.path()).len(),
        1,
        "the live upload's file stays"
    );
    drop(live);
    assert_eq!(cache.stats().await.unwrap().objects, 1);
    assert_eq!(cache.get_bytes(&kept).await.unwrap(), "kept for a week");
    assert_eq!(cache.counters().expired, 2);
    assert_eq!(
        cache.sweep().unwrap(),
        Default::default(),
        "nothing left to do"
    );
}

#[tokio::test]
async fn evictions_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let options = DiskCacheOptions::default().with_capacity(25_000);
    let cache = DiskCache::open_with(dir.path(), options).unwrap();
    for i in 0..4u8 {
        put(&cache, &Key::new([i]), &pattern(10_000, i)).await;
    }
    assert_eq!(cache.counters().evictions, 2);
    assert_eq!(cache.stats().await.unwrap().objects, 2);
}

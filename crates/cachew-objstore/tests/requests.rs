//! What a save and a restore cost in object-store requests (the figures of
//! `docs/SCALING.md`), counted by a wrapper around object_store's
//! in-memory store that sees every call the backend makes.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use cachew_client::{restore, save, Key, RestoreOptions, SaveOptions};
use cachew_objstore::{ObjectStoreCache, ObjectStoreOptions};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

#[derive(Debug, Default)]
struct Counts {
    put: AtomicU64,
    create_multipart: AtomicU64,
    part: AtomicU64,
    complete: AtomicU64,
    head: AtomicU64,
    get: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
}

impl Counts {
    fn take(&self) -> [u64; 8] {
        [
            &self.put,
            &self.create_multipart,
            &self.part,
            &self.complete,
            &self.head,
            &self.get,
            &self.list,
            &self.delete,
        ]
        .map(|c| c.swap(0, Ordering::Relaxed))
    }
}

#[derive(Debug)]
struct Counting {
    inner: InMemory,
    counts: Arc<Counts>,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

fn add(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    counts: Arc<Counts>,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        add(&self.counts.part);
        self.inner.put_part(data)
    }
    async fn complete(&mut self) -> Result<PutResult> {
        add(&self.counts.complete);
        self.inner.complete().await
    }
    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        add(&self.counts.put);
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        add(&self.counts.create_multipart);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner,
            counts: Arc::clone(&self.counts),
        }))
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        add(if options.head {
            &self.counts.head
        } else {
            &self.counts.get
        });
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let counts = Arc::clone(&self.counts);
        let counted = locations.inspect(move |_| add(&counts.delete)).boxed();
        self.inner.delete_stream(counted)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        add(&self.counts.list);
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        add(&self.counts.list);
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_save_and_restore() {
    let counts = Arc::new(Counts::default());
    let store = Arc::new(Counting {
        inner: InMemory::new(),
        counts: Arc::clone(&counts),
    });
    let cache =
        ObjectStoreCache::new(store, "ci", "counting", ObjectStoreOptions::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    std::fs::write(small.join("a"), b"hello").unwrap();
    // 20 MiB of noise: an archive of three 8 MiB parts.
    let big = tmp.path().join("big");
    std::fs::create_dir(&big).unwrap();
    std::fs::write(big.join("noise"), cachew_testkit::random_bytes(20 << 20, 3)).unwrap();

    //      [put, create_multipart, part, complete, head, get, list, delete]
    let (ks, kb) = (Key::new("small"), Key::new("big"));
    save(&cache, &ks, &small, &[".".into()], &SaveOptions::default())
        .await
        .unwrap();
    assert_eq!(
        counts.take(),
        [1, 0, 0, 0, 0, 0, 0, 0],
        "small save: one PUT"
    );
    save(&cache, &kb, &big, &[".".into()], &SaveOptions::default())
        .await
        .unwrap();
    assert_eq!(
        counts.take(),
        [0, 1, 3, 1, 0, 0, 0, 0],
        "20 MiB save: one multipart upload of three parts"
    );
    let out = tmp.path().join("out");
    restore(&cache, &[ks], &out, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(counts.take(), [0, 0, 0, 0, 0, 1, 0, 0], "restore: one GET");
    let miss = restore(
        &cache,
        &[Key::new("absent"), kb],
        &tmp.path().join("out2"),
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert!(matches!(
        miss,
        cachew_client::RestoreOutcome::Hit { index: 1, .. }
    ));
    assert_eq!(
        counts.take(),
        [0, 0, 0, 0, 0, 2, 0, 0],
        "a miss then a hit: two GETs"
    );
}

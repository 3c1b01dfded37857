//! The conformance suite every [`Cache`] backend runs.
//!
//! Each `pub async fn` here checks one behaviour through the [`Cache`] trait
//! only, so the same list runs against the memory and disk backends and,
//! through an HTTP server, the remote one. A check panics (with a message
//! saying what it expected) when the backend misbehaves.
//!
//! Backends run the whole list with [`run_all`], giving a factory that builds
//! a fresh cache for a [`Setup`] (some checks need a short default TTL, a
//! short maximum TTL or a small capacity). What differs between backends —
//! how long to wait for an expiry, whether statistics exist — is a
//! [`Harness`] parameter, never a branch on the backend's type.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use cachew_client::conformance::{self, Harness, Setup};
//! use cachew_client::{Cache, MemoryCache};
//!
//! let factory = |setup: Setup| async move {
//!     let mut cache = MemoryCache::new(setup.capacity.unwrap_or(0));
//!     if let Some(ttl) = setup.default_ttl {
//!         cache = cache.with_default_ttl(ttl);
//!     }
//!     if let Some(ttl) = setup.max_ttl {
//!         cache = cache.with_max_ttl(ttl);
//!     }
//!     Arc::new(cache) as Arc<dyn Cache>
//! };
//! // One check; `conformance::run_all(&Harness::default(), factory)` runs them all.
//! let cache = factory(Setup::default()).await;
//! conformance::create_and_open(cache.as_ref()).await;
//! # });
//! ```

use std::fmt::Write as _;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use tokio::io::AsyncWriteExt;

use crate::cache::{Cache, ObjectMeta};
use crate::error::Error;
use crate::{ByteRange, CreateOptions, EntityTag, EtagCondition, Key, Namespace, OpenOptions};

/// What differs between backends, as parameters of the checks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Harness {
    /// The TTL the expiry checks use (and ask [`Setup`] for). Default 1 s.
    pub short_ttl: Duration,
    /// How long past `short_ttl` a check waits before expecting the object
    /// gone (clock granularity, transport latency). Default 300 ms.
    pub expiry_slack: Duration,
    /// Whether the backend reports statistics; if not, the stats check
    /// expects [`Error::StatsUnavailable`]. Default `true`.
    pub stats_available: bool,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness {
            short_ttl: Duration::from_secs(1),
            expiry_slack: Duration::from_millis(300),
            stats_available: true,
        }
    }
}

impl Harness {
    /// Sets [`Harness::short_ttl`].
    #[must_use]
    pub fn with_short_ttl(mut self, ttl: Duration) -> Self {
        self.short_ttl = ttl;
        self
    }

    /// Sets [`Harness::expiry_slack`].
    #[must_use]
    pub fn with_expiry_slack(mut self, slack: Duration) -> Self {
        self.expiry_slack = slack;
        self
    }

    /// Sets [`Harness::stats_available`].
    #[must_use]
    pub fn with_stats_available(mut self, available: bool) -> Self {
        self.stats_available = available;
        self
    }

    /// How long an expiry check sleeps.
    fn expiry_wait(&self) -> Duration {
        self.short_ttl + self.expiry_slack
    }
}

/// How a check needs its fresh cache configured. `None` fields mean the
/// backend's ordinary configuration: a default TTL long enough that nothing
/// expires during the check, no TTL cap, room for a few MiB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Setup {
    /// The TTL of objects created without one.
    pub default_ttl: Option<Duration>,
    /// The cap on every object's TTL.
    pub max_ttl: Option<Duration>,
    /// The capacity in bytes.
    pub capacity: Option<u64>,
}

/// The signature of a check as listed in [`CHECKS`].
pub type CheckFn = for<'a> fn(&'a dyn Cache, &'a Harness) -> BoxFuture<'a, ()>;

/// One entry of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// The check's name, the name of its function.
    pub name: &'static str,
    /// What the check's cache needs.
    pub setup: fn(&Harness) -> Setup,
    /// Runs the check.
    pub run: CheckFn,
}

/// The capacity the eviction checks configure.
pub const SMALL_CAPACITY: u64 = 64 * 1024;
/// The capacity the stats check configures.
pub const STATS_CAPACITY: u64 = 8 << 20;

fn standard(_: &Harness) -> Setup {
    Setup::default()
}

fn short_default_ttl(h: &Harness) -> Setup {
    Setup {
        default_ttl: Some(h.short_ttl),
        ..Setup::default()
    }
}

fn short_max_ttl(h: &Harness) -> Setup {
    Setup {
        max_ttl: Some(h.short_ttl),
        ..Setup::default()
    }
}

fn small_capacity(_: &Harness) -> Setup {
    Setup {
        capacity: Some(SMALL_CAPACITY),
        ..Setup::default()
    }
}

fn stats_capacity(_: &Harness) -> Setup {
    Setup {
        capacity: Some(STATS_CAPACITY),
        ..Setup::default()
    }
}

macro_rules! check {
    ($name:ident) => {
        Check {
            name: stringify!($name),
            setup: standard,
            run: |cache, _| Box::pin($name(cache)),
        }
    };
    ($name:ident, harness, $setup:expr) => {
        Check {
            name: stringify!($name),
            setup: $setup,
            run: |cache, harness| Box::pin($name(cache, harness)),
        }
    };
    ($name:ident, $setup:expr) => {
        Check {
            name: stringify!($name),
            setup: $setup,
            run: |cache, _| Box::pin($name(cache)),
        }
    };
}

/// Every check, in the order [`run_all`] runs them.
pub const CHECKS: &[Check] = &[
    check!(create_and_open),
    check!(not_found),
    check!(overwrite_replaces),
    check!(multiple_writes),
    check!(empty_object),
    check!(invisible_until_committed),
    check!(abort_leaves_nothing),
    check!(drop_without_commit_leaves_nothing),
    check!(commit_and_abort_are_idempotent),
    check!(delete),
    check!(invalidate),
    check!(expiry, harness, standard),
    check!(default_ttl, harness, short_default_ttl),
    check!(max_ttl, harness, short_max_ttl),
    check!(headers_round_trip),
    check!(last_modified_default),
    check!(last_modified_explicit),
    check!(content_length),
    check!(namespace_isolation),
    check!(namespace_listing),
    check!(explicit_etag),
    check!(generated_etag),
    check!(invalid_etag_rejected),
    check!(if_match),
    check!(if_none_match),
    check!(stat_ignores_range),
    check!(ranges),
    check!(range_not_satisfiable),
    check!(if_range),
    check!(stats, harness, stats_capacity),
    check!(eviction_is_lru, small_capacity),
    check!(too_large_is_rejected, small_capacity),
    check!(concurrent_writes_and_reads),
];

/// Runs every check in [`CHECKS`], each on a fresh cache from `factory`,
/// and panics listing every check that failed (with its message).
pub async fn run_all<F, Fut>(harness: &Harness, mut factory: F)
where
    F: FnMut(Setup) -> Fut,
    Fut: Future<Output = Arc<dyn Cache>>,
{
    let mut failures = Vec::new();
    let mut backend = String::new();
    for check in CHECKS {
        let cache = factory((check.setup)(harness)).await;
        backend = cache.to_string();
        if let Err(message) = run_check(check, cache.as_ref(), harness).await {
            failures.push(format!("{}: {message}", check.name));
        }
    }
    if !failures.is_empty() {
        let mut report = format!(
            "{} of {} conformance checks failed on {backend}:",
            failures.len(),
            CHECKS.len()
        );
        for failure in &failures {
            let _ = write!(report, "\n  - {failure}");
        }
        panic!("{report}");
    }
}

/// Runs one check, turning its panic into the panic message.
pub async fn run_check(check: &Check, cache: &dyn Cache, harness: &Harness) -> Result<(), String> {
    match AssertUnwindSafe((check.run)(cache, harness))
        .catch_unwind()
        .await
    {
        Ok(()) => Ok(()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".to_owned())),
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

/// A key no other check (or earlier run against a shared server) uses.
fn unique(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{label}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn key(label: &str) -> Key {
    Key::new(format!("cachew-conformance/{}", unique(label)))
}

fn namespace(label: &str) -> Namespace {
    Namespace::new(unique(label)).expect("generated namespace is valid")
}

/// Deterministic bytes that differ between seeds and positions.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 31 + u64::from(seed) * 7) % 251) as u8)
        .collect()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
            HeaderValue::from_str(value).expect("valid header value"),
        );
    }
    map
}

fn tag(raw: &str) -> EntityTag {
    EntityTag::new(raw).expect("valid test ETag")
}

async fn put_with(
    cache: &dyn Cache,
    key: &Key,
    data: &[u8],
    headers: HeaderMap,
    options: &CreateOptions,
) {
    let mut writer = cache
        .create(key, headers, options)
        .await
        .unwrap_or_else(|e| panic!("create on {cache}: {e}"));
    writer
        .write_all(data)
        .await
        .unwrap_or_else(|e| panic!("write on {cache}: {e}"));
    writer
        .commit()
        .await
        .unwrap_or_else(|e| panic!("commit on {cache}: {e}"));
}

async fn put(cache: &dyn Cache, key: &Key, data: &[u8]) {
    put_with(
        cache,
        key,
        data,
        HeaderMap::new(),
        &CreateOptions::default(),
    )
    .await;
}

async fn read(cache: &dyn Cache, key: &Key, options: &OpenOptions) -> (ObjectMeta, Bytes) {
    let object = cache
        .open(key, options)
        .await
        .unwrap_or_else(|e| panic!("open {key} with {options:?} on {cache}: {e}"));
    let meta = object.meta.clone();
    let body = object
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("read body of {key} on {cache}: {e}"));
    (meta, body)
}

async fn get(cache: &dyn Cache, key: &Key) -> Bytes {
    read(cache, key, &OpenOptions::default()).await.1
}

/// The ETag every conforming backend reports.
fn etag_of(meta: &ObjectMeta) -> &EntityTag {
    meta.etag.as_ref().expect("the backend reports an ETag")
}

async fn stat(cache: &dyn Cache, key: &Key) -> ObjectMeta {
    cache
        .stat(key, &OpenOptions::default())
        .await
        .unwrap_or_else(|e| panic!("stat {key} on {cache}: {e}"))
}

async fn assert_absent(cache: &dyn Cache, key: &Key, why: &str) {
    match cache.open(key, &OpenOptions::default()).await {
        Err(Error::NotFound) => {}
        Err(e) => panic!("{why}: open expected NotFound, got error {e}"),
        Ok(o) => panic!("{why}: open expected NotFound, got an object {:?}", o.meta),
    }
    match cache.stat(key, &OpenOptions::default()).await {
        Err(Error::NotFound) => {}
        other => panic!("{why}: stat expected NotFound, got {other:?}"),
    }
}

fn header<'m>(meta: &'m ObjectMeta, name: &str) -> Option<&'m str> {
    meta.headers.get(name).and_then(|v| v.to_str().ok())
}

fn expect_header(meta: &ObjectMeta, name: &str, want: &str, what: &str) {
    assert_eq!(
        header(meta, name),
        Some(want),
        "{what}: header {name} (all headers: {:?})",
        meta.headers
    );
}

// ---------------------------------------------------------------------------
// The checks.
// ---------------------------------------------------------------------------

/// A committed object reads back byte for byte, on Open and Stat.
pub async fn create_and_open(cache: &dyn Cache) {
    let k = key("create-and-open");
    put(cache, &k, b"hello, cachew").await;
    let (meta, body) = read(cache, &k, &OpenOptions::default()).await;
    assert_eq!(body, &b"hello, cachew"[..]);
    assert_eq!(meta.size, Some(13));
    assert_eq!(meta.range, None, "a plain open is not partial");
    assert_eq!(meta.content_length(), Some(13));
    let st = stat(cache, &k).await;
    assert_eq!(st.size, Some(13));
    assert_eq!(st.etag, meta.etag, "stat and open report the same ETag");
}

/// A key that was never written is [`Error::NotFound`] on Open, Stat and
/// Delete.
pub async fn not_found(cache: &dyn Cache) {
    let k = key("never-written");
    assert_absent(cache, &k, "a key never written").await;
    match cache.delete(&k).await {
        Err(e @ Error::NotFound) => assert_eq!(e.status(), Some(404)),
        other => panic!("delete of an absent key: expected NotFound, got {other:?}"),
    }
}

/// A second Create of the same key replaces the first object.
pub async fn overwrite_replaces(cache: &dyn Cache) {
    let k = key("overwrite");
    put(cache, &k, b"first version").await;
    let first = stat(cache, &k).await;
    put(cache, &k, b"second").await;
    let (meta, body) = read(cache, &k, &OpenOptions::default()).await;
    assert_eq!(body, &b"second"[..]);
    assert_eq!(meta.size, Some(6));
    assert_ne!(
        meta.etag, first.etag,
        "new content gets a new generated ETag"
    );
}

/// Many writes, in chunks of varying size (including empty ones), make one
/// object.
pub async fn multiple_writes(cache: &dyn Cache) {
    let k = key("multiple-writes");
    let data = pattern((1 << 20) + 7, 3);
    let mut writer = cache
        .create(&k, HeaderMap::new(), &CreateOptions::default())
        .await
        .expect("create");
    let mut offset = 0;
    let mut step = 1;
    while offset < data.len() {
        let end = (offset + step).min(data.len());
        writer.write_all(&data[offset..end]).await.expect("write");
        writer.write_all(&[]).await.expect("empty write");
        offset = end;
        step = (step * 3 + 1) % 70_000 + 1;
    }
    writer.flush().await.expect("flush");
    writer.commit().await.expect("commit");
    let (meta, body) = read(cache, &k, &OpenOptions::default()).await;
    assert_eq!(meta.size, Some(data.len() as u64));
    assert_eq!(body.len(), data.len());
    assert!(body == data, "the chunks reassemble to the written bytes");
}

/// An empty object exists, has length 0, and no range of it is satisfiable.
pub async fn empty_object(cache: &dyn Cache) {
    let k = key("empty");
    put(cache, &k, b"").await;
    let (meta, body) = read(cache, &k, &OpenOptions::default()).await;
    assert!(body.is_empty());
    assert_eq!(meta.size, Some(0));
    expect_header(&meta, "content-length", "0", "empty object");
    let ranged = OpenOptions::default().with_range(ByteRange::from_offset(0));
    match cache.open(&k, &ranged).await {
        Err(Error::RangeNotSatisfiable { size }) => assert_eq!(size, Some(0)),
        other => panic!("range of an empty object: expected 416, got {other:?}"),
    }
}

/// Nothing is visible before commit — not a new key, and not a new version
/// of an existing one.
pub async fn invisible_until_committed(cache: &dyn Cache) {
    let fresh = key("uncommitted-fresh");
    let mut writer = cache
        .create(&fresh, HeaderMap::new(), &CreateOptions::default())
        .await
        .expect("create");
    writer.write_all(b"not yet").await.expect("write");
    writer.flush().await.expect("flush");
    assert_absent(cache, &fresh, "written and flushed but not committed").await;

    let existing = key("uncommitted-existing");
    put(cache, &existing, b"old").await;
    let mut replacement = cache
        .create(&existing, HeaderMap::new(), &CreateOptions::default())
        .await
        .expect("create");
    replacement.write_all(b"new!").await.expect("write");
    replacement.flush().await.expect("flush");
    assert_eq!(
        get(cache, &existing).await,
        &b"old"[..],
        "the old version is served until the new one commits"
    );

    writer.commit().await.expect("commit");
    replacement.commit().await.expect("commit");
    assert_eq!(get(cache, &fresh).await, &b"not yet"[..]);
    assert_eq!(get(cache, &existing).await, &b"new!"[..]);
}

/// An aborted write leaves nothing behind, and does not disturb the
/// previous version.
pub async fn abort_leaves_nothing(cache: &dyn Cache) {
    let k = key("aborted");
    let mut writer = cache
        .create(&k, HeaderMap::new(), &CreateOptions::default())
        .await
        .expect("create");
    writer.write_all(&pattern(10_000, 1)).await.expect("write");
    writer
        .abort("the conformance suite changed its mind".into())
        .await
        .expect("abort");
    assert_absent(cache, &k, "after abort").await;
    assert!(
        writer.write_all(b"more").await.is_err(),
        "writing after abort must fail"
    );
    match writer.commit().await {
        Err(Error::WriterClosed(_)) => {}
        other => panic!("commit after abort: expected WriterClosed, got {other:?}"),
    }
    assert_absent(cache, &k, "after commit-after-abort").await;

    let existing = key("aborted-replacement");
    put(cache, &existing, b"keep me").await;
    let mut writer = cache
        .create(&existing, HeaderMap::new(), &CreateOptions::default())
        .await
        .expect("create");
    writer.write_all(b"discard me").await.expect("write");
    writer
        .abort("replacement aborted".into())
        .await
        .expect("abort");
    assert_eq!(get(cache, &existing).await, &b"keep me"[..]);
}

/// Dropping a writer without commit is an abort.
pub async fn drop_without_commit_leaves_nothing(cache: &dyn Cache) {
    let k = key("dropped");
    let mut writer = cache
        .create(&k, HeaderMap::new(), &CreateOptions::default())
        .await
        .expect("create");
    writer.write_all(&pattern(5_000, 2)).await.expect("write");
    writer.flush().await.expect("flush");
    drop(writer);
    // Give a backend that aborts in the background a moment.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_absent(cache, &k, "after dropping an uncommitted writer").await;
}

/// Commit twice succeeds twice; abort after commit changes nothing; writing
/// after commit fails.
pub async fn commit_and_abort_are_idempotent(cache: &dyn Cache) {
    let k = key("idempotent");
    let mut writer = cache
        .create(&k, HeaderMap::new(), &CreateOptions::default())
        .await
        .expect("create");
    writer.write_all(b"once").await.expect("write");
    writer.commit().await.expect("first commit");
    writer
        .commit()
        .await
        .expect("second commit answers like the first");
    writer
        .abort("too late".into())
        .await
        .expect("abort after commit is a no-op");
    assert!(writer.write_all(b"x").await.is_err(), "write after commit");
    assert_eq!(get(cache, &k).await, &b"once"[..]);

    let mut writer = cache
        .create(
            &key("idempotent-abort"),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .expect("create");
    writer.abort("first".into()).await.expect("abort");
    writer.abort("second".into()).await.expect("abort again");
}

/// Delete removes an object; deleting it again is [`Error::NotFound`].
pub async fn delete(cache: &dyn Cache) {
    let k = key("delete");
    let other = key("delete-neighbour");
    put(cache, &k, b"doomed").await;
    put(cache, &other, b"survivor").await;
    cache.delete(&k).await.expect("delete");
    assert_absent(cache, &k, "after delete").await;
    assert!(matches!(cache.delete(&k).await, Err(Error::NotFound)));
    assert_eq!(get(cache, &other).await, &b"survivor"[..]);
}

/// Invalidate removes an object and is fine with an absent key.
pub async fn invalidate(cache: &dyn Cache) {
    let k = key("invalidate");
    put(cache, &k, b"stale").await;
    cache.invalidate(&k).await.expect("invalidate");
    assert_absent(cache, &k, "after invalidate").await;
    cache
        .invalidate(&k)
        .await
        .expect("invalidating an absent key is fine");
    cache
        .invalidate(&key("never-written"))
        .await
        .expect("invalidating a never-written key is fine");
}

/// An object created with a TTL is served until it expires, then is absent.
pub async fn expiry(cache: &dyn Cache, harness: &Harness) {
    let short = key("short-ttl");
    let long = key("long-ttl");
    put_with(
        cache,
        &long,
        b"lasting",
        HeaderMap::new(),
        &CreateOptions::default().with_ttl(Duration::from_secs(3600)),
    )
    .await;
    // Read right after the commit: the TTL clock is already running.
    put_with(
        cache,
        &short,
        b"brief",
        HeaderMap::new(),
        &CreateOptions::default().with_ttl(harness.short_ttl),
    )
    .await;
    assert_eq!(get(cache, &short).await, &b"brief"[..], "before expiry");
    tokio::time::sleep(harness.expiry_wait()).await;
    assert_absent(cache, &short, "after its TTL").await;
    assert!(
        matches!(cache.delete(&short).await, Err(Error::NotFound)),
        "an expired object cannot be deleted"
    );
    assert_eq!(get(cache, &long).await, &b"lasting"[..]);
}

/// Objects created without a TTL (or with zero) get the default TTL; an
/// explicit TTL overrides it. The cache's default TTL is `short_ttl`.
pub async fn default_ttl(cache: &dyn Cache, harness: &Harness) {
    let none = key("default-ttl-none");
    let zero = key("default-ttl-zero");
    let explicit = key("default-ttl-explicit");
    put_with(
        cache,
        &explicit,
        b"explicit",
        HeaderMap::new(),
        &CreateOptions::default().with_ttl(Duration::from_secs(3600)),
    )
    .await;
    put_with(
        cache,
        &zero,
        b"zero means default",
        HeaderMap::new(),
        &CreateOptions::default().with_ttl(Duration::ZERO),
    )
    .await;
    put(cache, &none, b"default").await;
    assert_eq!(get(cache, &none).await, &b"default"[..]);
    tokio::time::sleep(harness.expiry_wait()).await;
    assert_absent(cache, &none, "past the default TTL").await;
    assert_absent(cache, &zero, "a zero TTL is the default TTL").await;
    assert_eq!(get(cache, &explicit).await, &b"explicit"[..]);
}

/// The maximum TTL caps a longer one. The cache's maximum is `short_ttl`.
pub async fn max_ttl(cache: &dyn Cache, harness: &Harness) {
    let k = key("max-ttl");
    put_with(
        cache,
        &k,
        b"capped",
        HeaderMap::new(),
        &CreateOptions::default().with_ttl(Duration::from_secs(24 * 3600)),
    )
    .await;
    assert_eq!(get(cache, &k).await, &b"capped"[..]);
    tokio::time::sleep(harness.expiry_wait()).await;
    assert_absent(cache, &k, "past the maximum TTL").await;
}

/// Stored headers come back on Open and Stat; transport headers do not; the
/// generated ones (`ETag`, `Last-Modified`, `Accept-Ranges`,
/// `Content-Length`) are there.
pub async fn headers_round_trip(cache: &dyn Cache) {
    let k = key("headers");
    let sent = headers(&[
        ("content-type", "application/x-conformance"),
        ("cache-control", "public, max-age=60"),
        ("x-cachew-conformance", "custom value 1"),
        ("content-disposition", "attachment; filename=\"x.tar.zst\""),
        ("user-agent", "conformance/1"),
        ("accept-encoding", "gzip"),
    ]);
    put_with(cache, &k, b"with headers", sent, &CreateOptions::default()).await;
    let (opened, _) = read(cache, &k, &OpenOptions::default()).await;
    let statted = stat(cache, &k).await;
    for (meta, what) in [(&opened, "open"), (&statted, "stat")] {
        expect_header(meta, "content-type", "application/x-conformance", what);
        expect_header(meta, "cache-control", "public, max-age=60", what);
        expect_header(meta, "x-cachew-conformance", "custom value 1", what);
        expect_header(
            meta,
            "content-disposition",
            "attachment; filename=\"x.tar.zst\"",
            what,
        );
        expect_header(meta, "accept-ranges", "bytes", what);
        expect_header(meta, "content-length", "12", what);
        expect_header(meta, "etag", &etag_of(meta).to_header(), what);
        assert!(
            header(meta, "last-modified")
                .and_then(crate::proto::header::parse_http_date)
                .is_some(),
            "{what}: Last-Modified is an HTTP date: {:?}",
            meta.headers
        );
        for dropped in ["user-agent", "accept-encoding", "transfer-encoding", "date"] {
            assert!(
                meta.headers.get(dropped).is_none(),
                "{what}: {dropped} must not be returned: {:?}",
                meta.headers
            );
        }
        assert!(
            meta.headers.get("content-range").is_none(),
            "{what}: not partial"
        );
    }
}

/// Without a `Last-Modified` header, the object's time is its commit time.
pub async fn last_modified_default(cache: &dyn Cache) {
    let k = key("last-modified-default");
    let before = SystemTime::now() - Duration::from_secs(2);
    put(cache, &k, b"now").await;
    let after = SystemTime::now() + Duration::from_secs(2);
    for meta in [
        read(cache, &k, &OpenOptions::default()).await.0,
        stat(cache, &k).await,
    ] {
        assert!(
            meta.last_modified >= before && meta.last_modified <= after,
            "Last-Modified {:?} is not the commit time",
            meta.headers.get("last-modified")
        );
        let parsed = header(&meta, "last-modified")
            .and_then(crate::proto::header::parse_http_date)
            .expect("Last-Modified is an HTTP date");
        assert_eq!(parsed, meta.last_modified, "header and field agree");
    }
}

/// A `Last-Modified` header given at Create is preserved.
pub async fn last_modified_explicit(cache: &dyn Cache) {
    let k = key("last-modified-explicit");
    let date = "Sun, 06 Nov 1994 08:49:37 GMT";
    put_with(
        cache,
        &k,
        b"old news",
        headers(&[("last-modified", date)]),
        &CreateOptions::default(),
    )
    .await;
    let want = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    for meta in [
        read(cache, &k, &OpenOptions::default()).await.0,
        stat(cache, &k).await,
    ] {
        expect_header(&meta, "last-modified", date, "explicit Last-Modified");
        assert_eq!(meta.last_modified, want);
    }
}

/// `Content-Length` is the length of what Open returns, and the whole size
/// on Stat — whatever `Content-Length` the creator sent.
pub async fn content_length(cache: &dyn Cache) {
    let k = key("content-length");
    let data = pattern(4321, 5);
    put_with(
        cache,
        &k,
        &data,
        headers(&[("content-length", "99")]),
        &CreateOptions::default(),
    )
    .await;
    let (meta, body) = read(cache, &k, &OpenOptions::default()).await;
    assert_eq!(body.len(), 4321);
    expect_header(&meta, "content-length", "4321", "open");
    expect_header(&stat(cache, &k).await, "content-length", "4321", "stat");
    let part = OpenOptions::default().with_range(ByteRange::new(100, 200).expect("range"));
    let (meta, body) = read(cache, &k, &part).await;
    assert_eq!(body.len(), 100);
    expect_header(&meta, "content-length", "100", "ranged open");
    assert_eq!(meta.content_length(), Some(100));
}

/// The same key in two namespaces holds two objects.
pub async fn namespace_isolation(cache: &dyn Cache) {
    let (a_name, b_name) = (namespace("iso-a"), namespace("iso-b"));
    let a = cache.with_namespace(a_name.clone());
    let b = cache.with_namespace(b_name.clone());
    assert_eq!(a.namespace(), &a_name);
    assert_eq!(b.namespace(), &b_name);
    let k = key("isolated");
    put(a.as_ref(), &k, b"in a").await;
    assert_absent(b.as_ref(), &k, "written only in namespace a").await;
    assert_absent(cache, &k, "written only in namespace a").await;
    put(b.as_ref(), &k, b"in b").await;
    assert_eq!(get(a.as_ref(), &k).await, &b"in a"[..]);
    assert_eq!(get(b.as_ref(), &k).await, &b"in b"[..]);
    a.delete(&k).await.expect("delete in a");
    assert_absent(a.as_ref(), &k, "deleted in a").await;
    assert_eq!(get(b.as_ref(), &k).await, &b"in b"[..], "b is untouched");
}

/// Namespaces holding objects are listed; a namespace whose objects are all
/// gone is not.
pub async fn namespace_listing(cache: &dyn Cache) {
    let names = [namespace("list-a"), namespace("list-b")];
    let k = key("listed");
    for name in &names {
        put(cache.with_namespace(name.clone()).as_ref(), &k, b"x").await;
    }
    let listed = cache.list_namespaces().await.expect("list namespaces");
    for name in &names {
        assert!(
            listed.iter().any(|n| n == name.as_str()),
            "{name} missing from {listed:?}"
        );
    }
    cache
        .with_namespace(names[1].clone())
        .delete(&k)
        .await
        .expect("delete");
    let listed = cache.list_namespaces().await.expect("list namespaces");
    assert!(listed.iter().any(|n| n == names[0].as_str()));
    assert!(
        !listed.iter().any(|n| n == names[1].as_str()),
        "{} holds nothing but is listed: {listed:?}",
        names[1]
    );
}

/// An ETag given at Create (as an option or a header) is the stored one.
pub async fn explicit_etag(cache: &dyn Cache) {
    let k = key("etag-option");
    let options = CreateOptions::default().with_etag(tag("v1.2-abc:def/+="));
    put_with(cache, &k, b"tagged", HeaderMap::new(), &options).await;
    let (meta, _) = read(cache, &k, &OpenOptions::default()).await;
    assert_eq!(meta.etag, Some(tag("v1.2-abc:def/+=")));
    expect_header(&meta, "etag", "\"v1.2-abc:def/+=\"", "ETag option");
    assert_eq!(stat(cache, &k).await.etag, meta.etag);

    let k = key("etag-header");
    put_with(
        cache,
        &k,
        b"tagged by header",
        headers(&[("etag", "\"from-header\"")]),
        &CreateOptions::default(),
    )
    .await;
    let meta = stat(cache, &k).await;
    assert_eq!(meta.etag, Some(tag("from-header")));
    expect_header(&meta, "etag", "\"from-header\"", "ETag header");
}

/// Without an ETag, the backend generates a strong one.
pub async fn generated_etag(cache: &dyn Cache) {
    let (k1, k2) = (key("etag-gen-1"), key("etag-gen-2"));
    put(cache, &k1, b"one content").await;
    put(cache, &k2, b"another content").await;
    let (m1, m2) = (stat(cache, &k1).await, stat(cache, &k2).await);
    assert!(!etag_of(&m1).as_str().is_empty());
    expect_header(&m1, "etag", &etag_of(&m1).to_header(), "generated ETag");
    assert!(
        header(&m1, "etag").is_some_and(|v| v.starts_with('"') && v.ends_with('"')),
        "a strong, quoted ETag: {:?}",
        m1.headers.get("etag")
    );
    assert_ne!(m1.etag, m2.etag, "different objects, different tags");
    let (opened, _) = read(cache, &k1, &OpenOptions::default()).await;
    assert_eq!(opened.etag, m1.etag, "the tag is stable across requests");
}

/// An `ETag` header that is not a valid quoted tag fails the Create (or its
/// commit), and nothing becomes visible.
pub async fn invalid_etag_rejected(cache: &dyn Cache) {
    let k = key("etag-invalid");
    let bad = headers(&[("etag", "\"not valid;\"")]);
    let outcome = match cache.create(&k, bad, &CreateOptions::default()).await {
        Err(e) => Err(e),
        Ok(mut writer) => match writer.write_all(b"x").await {
            Err(e) => Err(Error::Stream(e)),
            Ok(()) => writer.commit().await,
        },
    };
    match outcome {
        Err(Error::Protocol(e)) => {
            assert!(e.to_string().contains("not valid;"), "error quotes it: {e}")
        }
        Err(Error::Status { code: 400, .. }) => {}
        other => panic!("invalid ETag header: expected a protocol error, got {other:?}"),
    }
    assert_absent(cache, &k, "created with an invalid ETag").await;
}

/// `If-Match` with a list, with `*`, and failing with 412, on Open and Stat.
pub async fn if_match(cache: &dyn Cache) {
    let k = key("if-match");
    let options = CreateOptions::default().with_etag(tag("v1"));
    put_with(cache, &k, b"conditional", HeaderMap::new(), &options).await;
    let cond = |s: &str| EtagCondition::parse_header(s).expect("valid condition");
    for (header_value, ok) in [
        ("\"v1\"", true),
        ("\"v0\", \"v1\"", true),
        ("*", true),
        ("\"v0\"", false),
        ("\"v0\", \"v2\"", false),
    ] {
        let opts = OpenOptions::default().with_if_match(cond(header_value));
        let opened = cache.open(&k, &opts).await;
        let statted = cache.stat(&k, &opts).await;
        if ok {
            let body = opened
                .expect("If-Match matches")
                .bytes()
                .await
                .expect("body");
            assert_eq!(body, &b"conditional"[..]);
            statted.expect("If-Match matches on stat");
        } else {
            assert!(
                matches!(opened, Err(Error::PreconditionFailed)),
                "If-Match: {header_value} on open: {opened:?}"
            );
            assert!(
                matches!(statted, Err(Error::PreconditionFailed)),
                "If-Match: {header_value} on stat: {statted:?}"
            );
        }
    }
    let absent = cache
        .open(
            &key("if-match-absent"),
            &OpenOptions::default().with_if_match(cond("*")),
        )
        .await;
    assert!(
        matches!(absent, Err(Error::NotFound | Error::PreconditionFailed)),
        "If-Match on an absent object: {absent:?}"
    );
}

/// `If-None-Match` with a list and with `*` answers not-modified with the
/// stored headers; a non-matching list serves the object.
pub async fn if_none_match(cache: &dyn Cache) {
    let k = key("if-none-match");
    let options = CreateOptions::default().with_etag(tag("v1"));
    put_with(
        cache,
        &k,
        b"cached",
        headers(&[("content-type", "text/plain")]),
        &options,
    )
    .await;
    let cond = |s: &str| EtagCondition::parse_header(s).expect("valid condition");
    for (header_value, modified) in [
        ("\"v1\"", false),
        ("\"v0\", \"v1\"", false),
        ("*", false),
        ("\"v0\"", true),
        ("\"v0\", \"v2\"", true),
    ] {
        let opts = OpenOptions::default().with_if_none_match(cond(header_value));
        for (what, result) in [
            ("open", cache.open(&k, &opts).await.map(|o| o.meta)),
            ("stat", cache.stat(&k, &opts).await),
        ] {
            match (modified, result) {
                (true, Ok(meta)) => assert_eq!(meta.etag, Some(tag("v1"))),
                (false, Err(Error::NotModified { headers })) => {
                    assert_eq!(
                        headers.get("etag").and_then(|v| v.to_str().ok()),
                        Some("\"v1\""),
                        "304 carries the ETag: {headers:?}"
                    );
                    assert_eq!(
                        headers.get("content-type").and_then(|v| v.to_str().ok()),
                        Some("text/plain"),
                        "304 carries the stored headers: {headers:?}"
                    );
                }
                (_, other) => panic!(
                    "If-None-Match: {header_value} on {what}: expected {}, got {other:?}",
                    if modified {
                        "the object"
                    } else {
                        "NotModified"
                    }
                ),
            }
        }
    }
    // If-Match is evaluated first.
    let both = OpenOptions::default()
        .with_if_match(cond("\"v0\""))
        .with_if_none_match(cond("\"v1\""));
    assert!(matches!(
        cache.stat(&k, &both).await,
        Err(Error::PreconditionFailed)
    ));
}

/// Stat reports the whole object even when a range is given.
pub async fn stat_ignores_range(cache: &dyn Cache) {
    let k = key("stat-range");
    put(cache, &k, &pattern(100, 9)).await;
    let opts = OpenOptions::default().with_range(ByteRange::new(0, 10).expect("range"));
    let meta = cache.stat(&k, &opts).await.expect("stat");
    assert_eq!(meta.range, None);
    assert_eq!(meta.size, Some(100));
    expect_header(&meta, "content-length", "100", "stat with a range");
    assert!(meta.headers.get("content-range").is_none());
}

/// Partial, open-ended, suffix and clamped ranges return exactly those bytes
/// with `Content-Range`.
pub async fn ranges(cache: &dyn Cache) {
    let k = key("ranges");
    let data = pattern(1000, 4);
    put(cache, &k, &data).await;
    let cases = [
        (ByteRange::new(10, 20).expect("range"), 10, 10),
        (ByteRange::new(0, 1).expect("range"), 0, 1),
        (ByteRange::new(999, 1000).expect("range"), 999, 1),
        (ByteRange::new(990, 5000).expect("range"), 990, 10),
        (ByteRange::from_offset(900), 900, 100),
        (ByteRange::from_offset(0), 0, 1000),
        (ByteRange::suffix(7), 993, 7),
        (ByteRange::suffix(5000), 0, 1000),
    ];
    for (range, start, len) in cases {
        let opts = OpenOptions::default().with_range(range);
        let (meta, body) = read(cache, &k, &opts).await;
        let what = range.to_header();
        assert_eq!(meta.range, Some((start, len)), "{what}");
        assert_eq!(meta.size, Some(1000), "{what}: size is the whole object's");
        assert!(
            body == data[start as usize..(start + len) as usize],
            "{what}: wrong bytes"
        );
        expect_header(
            &meta,
            "content-range",
            &format!("bytes {start}-{}/1000", start + len - 1),
            &what,
        );
        expect_header(&meta, "content-length", &len.to_string(), &what);
    }
}

/// A range starting at or past the end is [`Error::RangeNotSatisfiable`]
/// with the object's size.
pub async fn range_not_satisfiable(cache: &dyn Cache) {
    let k = key("range-416");
    put(cache, &k, &pattern(100, 6)).await;
    for range in [
        ByteRange::from_offset(100),
        ByteRange::new(200, 300).expect("range"),
    ] {
        match cache
            .open(&k, &OpenOptions::default().with_range(range))
            .await
        {
            Err(e @ Error::RangeNotSatisfiable { .. }) => {
                assert_eq!(e.status(), Some(416));
                assert!(
                    matches!(e, Error::RangeNotSatisfiable { size: Some(100) }),
                    "{}: the error carries the size (bytes */100): {e:?}",
                    range.to_header()
                );
            }
            other => panic!("{}: expected 416, got {other:?}", range.to_header()),
        }
    }
}

/// `If-Range` applies the range only when the tag matches; otherwise the
/// full body is served.
pub async fn if_range(cache: &dyn Cache) {
    let k = key("if-range");
    let data = pattern(300, 8);
    let options = CreateOptions::default().with_etag(tag("current"));
    put_with(cache, &k, &data, HeaderMap::new(), &options).await;
    let range = ByteRange::new(100, 150).expect("range");
    let matching = OpenOptions::default()
        .with_range(range)
        .with_if_range(tag("current"));
    let (meta, body) = read(cache, &k, &matching).await;
    assert_eq!(meta.range, Some((100, 50)));
    assert!(body == data[100..150]);
    let stale = OpenOptions::default()
        .with_range(range)
        .with_if_range(tag("previous"));
    let (meta, body) = read(cache, &k, &stale).await;
    assert_eq!(meta.range, None, "a stale If-Range gets the full body");
    assert!(body == data);
    expect_header(&meta, "content-length", "300", "stale If-Range");
    assert!(meta.headers.get("content-range").is_none());
}

/// Statistics count objects and bytes and report the capacity
/// ([`STATS_CAPACITY`]).
pub async fn stats(cache: &dyn Cache, harness: &Harness) {
    let before = match cache.stats().await {
        Ok(stats) => stats,
        Err(Error::StatsUnavailable) if !harness.stats_available => return,
        other => panic!("stats: {other:?}"),
    };
    assert!(harness.stats_available, "stats were declared unavailable");
    let (k1, k2) = (key("stats-1"), key("stats-2"));
    put(cache, &k1, &pattern(1000, 1)).await;
    put(cache, &k2, &pattern(2000, 2)).await;
    let after = cache.stats().await.expect("stats");
    assert_eq!(after.objects, before.objects + 2, "{before:?} -> {after:?}");
    assert!(
        after.size >= before.size + 3000,
        "size counts the bodies: {before:?} -> {after:?}"
    );
    assert_eq!(after.capacity, STATS_CAPACITY as i64);
    cache.delete(&k1).await.expect("delete");
    let last = cache.stats().await.expect("stats");
    assert_eq!(last.objects, before.objects + 1, "{after:?} -> {last:?}");
    assert!(last.size < after.size && last.size >= before.size + 2000);
}

/// At capacity ([`SMALL_CAPACITY`]), the least recently used object goes
/// first; reading an object counts as a use.
pub async fn eviction_is_lru(cache: &dyn Cache) {
    let third = (SMALL_CAPACITY * 3 / 8) as usize;
    let (a, b, c) = (key("lru-a"), key("lru-b"), key("lru-c"));
    put(cache, &a, &pattern(third, 1)).await;
    put(cache, &b, &pattern(third, 2)).await;
    assert_eq!(
        get(cache, &a).await.len(),
        third,
        "a is now the most recent"
    );
    put(cache, &c, &pattern(third, 3)).await;
    assert_absent(cache, &b, "the least recently used object is evicted").await;
    assert_eq!(get(cache, &a).await.len(), third, "a was used recently");
    assert_eq!(get(cache, &c).await.len(), third, "c is the newest");
}

/// An object larger than the capacity ([`SMALL_CAPACITY`]) fails, is not
/// visible, and evicts nothing.
pub async fn too_large_is_rejected(cache: &dyn Cache) {
    let small = key("fits");
    put(cache, &small, b"small").await;
    let k = key("too-large");
    let mut writer = cache
        .create(&k, HeaderMap::new(), &CreateOptions::default())
        .await
        .expect("create");
    let data = pattern(SMALL_CAPACITY as usize + 4096, 7);
    let outcome = match writer.write_all(&data).await {
        Err(e) => Err(Error::Stream(e)),
        Ok(()) => writer.commit().await,
    };
    assert!(outcome.is_err(), "an object over capacity must fail");
    assert_absent(cache, &k, "larger than the capacity").await;
    assert_eq!(get(cache, &small).await, &b"small"[..]);
}

/// Writers and readers of the same keys interleave; every read returns one
/// complete committed version.
pub async fn concurrent_writes_and_reads(cache: &dyn Cache) {
    const LEN: usize = 48 * 1024;
    let keys = [key("race-1"), key("race-2")];
    // Version `v` of a body: `v` as 4 bytes, then the pattern seeded by `v`.
    let body = |v: u32| {
        let mut b = v.to_be_bytes().to_vec();
        b.extend(pattern(LEN - 4, v as u8));
        b
    };
    let writers = (0..4u32).map(|w| {
        let keys = &keys;
        async move {
            for round in 0..3u32 {
                let v = w * 10 + round;
                let k = &keys[(v % 2) as usize];
                let data = body(v);
                let mut writer = cache
                    .create(k, HeaderMap::new(), &CreateOptions::default())
                    .await
                    .expect("create");
                for chunk in data.chunks(4096) {
                    writer.write_all(chunk).await.expect("write");
                    tokio::task::yield_now().await;
                }
                writer.commit().await.expect("commit");
            }
        }
    });
    let done = AtomicBool::new(false);
    let readers = (0..4).map(|_| {
        let (keys, done) = (&keys, &done);
        async move {
            let mut seen = 0usize;
            let mut i = 0;
            // Keep reading until every writer has committed its last version.
            while !done.load(Ordering::Acquire) || i < 8 {
                match cache.open(&keys[i % 2], &OpenOptions::default()).await {
                    Err(Error::NotFound) => {}
                    Err(e) => panic!("concurrent open: {e}"),
                    Ok(object) => {
                        let size = object.meta.size;
                        let got = object.bytes().await.expect("read body");
                        assert_eq!(got.len(), LEN, "torn read: wrong length");
                        assert_eq!(size, Some(LEN as u64));
                        let v = u32::from_be_bytes([got[0], got[1], got[2], got[3]]);
                        assert!(got == body(v), "torn read: body of version {v} corrupted");
                        seen += 1;
                    }
                }
                i += 1;
                tokio::task::yield_now().await;
            }
            seen
        }
    });
    let writing = async {
        join_all(writers).await;
        done.store(true, Ordering::Release);
    };
    let ((), seen) = futures_util::future::join(writing, join_all(readers)).await;
    assert!(
        seen.iter().sum::<usize>() > 0,
        "no read saw a committed object while the writers ran"
    );
    for k in &keys {
        let got = get(cache, k).await;
        let v = u32::from_be_bytes([got[0], got[1], got[2], got[3]]);
        assert!(got == body(v), "final version {v} is complete");
    }
}

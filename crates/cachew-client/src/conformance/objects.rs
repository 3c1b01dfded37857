//! Checks of an object's life: create, read, overwrite, abort, delete,
//! invalidate and expiry.

use crate::cache::Cache;
use crate::error::Error;
use crate::{ByteRange, CreateOptions, OpenOptions};
use http::HeaderMap;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

use super::helpers::*;
use super::Harness;

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

//! What the checks share: unique keys, test data, and small assertions.

use crate::cache::{Cache, ObjectMeta};
use crate::error::Error;
use crate::{CreateOptions, EntityTag, Key, Namespace, OpenOptions};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use tokio::io::AsyncWriteExt;

/// A key no other check (or earlier run against a shared server) uses.
pub(super) fn unique(label: &str) -> String {
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

pub(super) fn key(label: &str) -> Key {
    Key::new(format!("cachew-conformance/{}", unique(label)))
}

pub(super) fn namespace(label: &str) -> Namespace {
    Namespace::new(unique(label)).expect("generated namespace is valid")
}

/// Deterministic bytes that differ between seeds and positions.
pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 31 + u64::from(seed) * 7) % 251) as u8)
        .collect()
}

pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
            HeaderValue::from_str(value).expect("valid header value"),
        );
    }
    map
}

pub(super) fn tag(raw: &str) -> EntityTag {
    EntityTag::new(raw).expect("valid test ETag")
}

pub(super) async fn put_with(
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

pub(super) async fn put(cache: &dyn Cache, key: &Key, data: &[u8]) {
    put_with(
        cache,
        key,
        data,
        HeaderMap::new(),
        &CreateOptions::default(),
    )
    .await;
}

pub(super) async fn read(
    cache: &dyn Cache,
    key: &Key,
    options: &OpenOptions,
) -> (ObjectMeta, Bytes) {
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

pub(super) async fn get(cache: &dyn Cache, key: &Key) -> Bytes {
    read(cache, key, &OpenOptions::default()).await.1
}

/// The ETag every conforming backend reports.
pub(super) fn etag_of(meta: &ObjectMeta) -> &EntityTag {
    meta.etag.as_ref().expect("the backend reports an ETag")
}

pub(super) async fn stat(cache: &dyn Cache, key: &Key) -> ObjectMeta {
    cache
        .stat(key, &OpenOptions::default())
        .await
        .unwrap_or_else(|e| panic!("stat {key} on {cache}: {e}"))
}

pub(super) async fn assert_absent(cache: &dyn Cache, key: &Key, why: &str) {
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

pub(super) fn header<'m>(meta: &'m ObjectMeta, name: &str) -> Option<&'m str> {
    meta.headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn expect_header(meta: &ObjectMeta, name: &str, want: &str, what: &str) {
    assert_eq!(
        header(meta, name),
        Some(want),
        "{what}: header {name} (all headers: {:?})",
        meta.headers
    );
}

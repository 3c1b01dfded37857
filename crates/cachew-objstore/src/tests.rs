//! Unit tests over object_store's in-memory store: the conformance suite,
//! the record's two homes (user metadata, sidecar), multipart visibility,
//! and the sweep.

use std::sync::Arc;
use std::time::Duration;

use cachew_client::conformance::{self, Harness, Setup};
use cachew_client::{Cache, CacheExt, CreateOptions, Error, Key, OpenOptions};
use http::HeaderMap;
use object_store::memory::InMemory;
use object_store::ObjectStoreExt;
use tokio::io::AsyncWriteExt;

use super::*;

fn cache_on(store: Arc<InMemory>, options: ObjectStoreOptions) -> ObjectStoreCache {
    ObjectStoreCache::new(store, "root/cache", "memory-object-store", options).unwrap()
}

fn options_for(setup: &Setup) -> ObjectStoreOptions {
    let mut options = ObjectStoreOptions::default().with_part_size(16 * 1024);
    if let Some(ttl) = setup.default_ttl {
        options = options.with_default_ttl(ttl);
    }
    if let Some(ttl) = setup.max_ttl {
        options = options.with_max_ttl(ttl);
    }
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_passes_the_conformance_suite() {
    // Small parts, so that the suite's larger objects go multipart.
    let harness = Harness::default().with_capacity(false);
    conformance::run_all(&harness, |setup: Setup| async move {
        Arc::new(cache_on(Arc::new(InMemory::new()), options_for(&setup))) as Arc<dyn Cache>
    })
    .await;
}

fn big_headers(len: usize) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-big", "v".repeat(len).parse().unwrap());
    headers.insert("content-type", "application/x-test".parse().unwrap());
    headers
}

#[tokio::test]
async fn a_large_record_goes_to_a_sidecar_and_comes_back() {
    let store = Arc::new(InMemory::new());
    let cache = cache_on(Arc::clone(&store), ObjectStoreOptions::default());
    let key = Key::new("sidecar");
    cache
        .put_bytes(
            &key,
            "body".into(),
            big_headers(4000),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    let object = cache.open(&key, &OpenOptions::default()).await.unwrap();
    assert_eq!(object.meta.headers["x-big"].len(), 4000);
    assert_eq!(object.meta.headers["content-type"], "application/x-test");
    assert_eq!(object.bytes().await.unwrap(), "body");
    let listed: Vec<_> = store
        .list(Some(&Path::from("root/cache/_meta")))
        .collect::<Vec<_>>()
        .await;
    assert_eq!(listed.len(), 1, "one sidecar: {listed:?}");
    // The object's own metadata names the sidecar and holds no record.
    let head = store
        .get_opts(
            &cache.object_path(&key),
            GetOptions {
                head: true,
                ..GetOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(head
        .attributes
        .get(&object_store::Attribute::Metadata(meta::RECORD.into()))
        .is_none());
    // A small record stays inline: no second sidecar.
    cache
        .put_bytes(
            &Key::new("small"),
            "x".into(),
            big_headers(10),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .list(Some(&Path::from("root/cache/_meta")))
            .count()
            .await,
        1
    );
    assert_eq!(
        cache.stats().await.unwrap().objects,
        2,
        "sidecars are not objects"
    );
}

#[tokio::test]
async fn an_aborted_upload_with_a_sidecar_leaves_nothing() {
    let store = Arc::new(InMemory::new());
    let cache = cache_on(
        Arc::clone(&store),
        ObjectStoreOptions::default().with_part_size(1024),
    );
    let key = Key::new("aborted");
    let mut writer = cache
        .create(&key, big_headers(4000), &CreateOptions::default())
        .await
        .unwrap();
    writer.write_all(&vec![7u8; 10_000]).await.unwrap();
    writer.abort("test".into()).await.unwrap();
    // The cleanup runs on a task.
    for _ in 0..50 {
        if store.list(None).count().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.list(None).count().await, 0, "no object, no sidecar");
    assert!(matches!(
        cache.open(&key, &OpenOptions::default()).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn a_multipart_upload_is_invisible_until_commit() {
    let store = Arc::new(InMemory::new());
    let cache = cache_on(
        Arc::clone(&store),
        ObjectStoreOptions::default().with_part_size(1024),
    );
    let key = Key::new("multipart");
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = cache
        .create(&key, HeaderMap::new(), &CreateOptions::default())
        .await
        .unwrap();
    writer.write_all(&body).await.unwrap();
    assert!(
        !cache.exists(&key).await.unwrap(),
        "parts uploaded, not committed"
    );
    writer.commit().await.unwrap();
    assert_eq!(cache.get_bytes(&key).await.unwrap(), body);
}

#[tokio::test]
async fn foreign_objects_are_reported_not_served() {
    let store = Arc::new(InMemory::new());
    let cache = cache_on(Arc::clone(&store), ObjectStoreOptions::default());
    let key = Key::new("foreign");
    store
        .put(&cache.object_path(&key), "not ours".into())
        .await
        .unwrap();
    match cache.open(&key, &OpenOptions::default()).await {
        Err(Error::Backend(message)) => assert!(message.contains("no cachew record"), "{message}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn sweep_deletes_expired_objects_only() {
    let store = Arc::new(InMemory::new());
    let cache = cache_on(Arc::clone(&store), ObjectStoreOptions::default());
    let (short, long) = (Key::new("short"), Key::new("long"));
    cache
        .put_bytes(
            &short,
            "s".into(),
            HeaderMap::new(),
            &CreateOptions::default().with_ttl(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    cache
        .put_bytes(
            &long,
            "l".into(),
            HeaderMap::new(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = cache.sweep().await.unwrap();
    assert_eq!((report.objects, report.expired), (2, 1), "{report:?}");
    assert!(
        store.head(&cache.object_path(&short)).await.is_err(),
        "deleted from the store"
    );
    assert_eq!(cache.get_bytes(&long).await.unwrap(), "l");
}

#[test]
fn an_invalid_prefix_is_refused_by_name() {
    let err = ObjectStoreCache::new(
        Arc::new(InMemory::new()),
        "a//../b",
        "x",
        ObjectStoreOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("a//../b"), "{err}");
}

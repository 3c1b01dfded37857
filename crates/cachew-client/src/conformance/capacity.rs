//! Checks of the cache as a whole: statistics, eviction, size limits and
//! concurrency.

use crate::cache::Cache;
use crate::error::Error;
use crate::{CreateOptions, OpenOptions};
use futures_util::future::join_all;
use http::HeaderMap;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::helpers::*;
use super::{Harness, SMALL_CAPACITY, STATS_CAPACITY};

/// Statistics count objects and bytes and report the capacity
/// ([`STATS_CAPACITY`], or 0 without [`Harness::has_capacity`]).
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
    let capacity = if harness.has_capacity {
        STATS_CAPACITY as i64
    } else {
        0
    };
    assert_eq!(after.capacity, capacity, "the capacity (0: unlimited)");
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

/// An object whose body is being read when eviction picks it keeps
/// streaming, whole and unchanged, to that reader (a backend may also keep
/// it until the read ends). Capacity [`SMALL_CAPACITY`].
pub async fn eviction_spares_open_readers(cache: &dyn Cache) {
    let third = (SMALL_CAPACITY * 3 / 8) as usize;
    let (a, b, c) = (key("reading-a"), key("reading-b"), key("reading-c"));
    let body = pattern(third, 4);
    put(cache, &a, &body).await;
    let mut object = cache
        .open(&a, &OpenOptions::default())
        .await
        .expect("open a");
    let mut got = vec![0u8; 1024];
    object
        .body
        .read_exact(&mut got)
        .await
        .expect("read a's start");
    // `a` is now the least recently used: these two take it over capacity.
    put(cache, &b, &pattern(third, 5)).await;
    put(cache, &c, &pattern(third, 6)).await;
    object
        .body
        .read_to_end(&mut got)
        .await
        .expect("read the rest of a");
    assert!(
        got == body,
        "a reader of an evicted object got {} bytes, or other bytes",
        got.len()
    );
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

//! Many tasks on several threads writing and reading overlapping keys: every
//! read must return one complete committed version whose metadata belongs
//! to it. Disk runs with two handles on one root, as two processes would.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use cachew_client::{
    ByteRange, Cache, CreateOptions, DiskCache, Error, Key, MemoryCache, OpenOptions,
};
use http::HeaderMap;
use tokio::io::AsyncWriteExt;

const KEYS: u32 = 3;
const WRITERS: u32 = 6;
const ROUNDS: u32 = 6;
const READERS: usize = 6;

/// Length of version `v`: differs between versions so a body spliced from
/// two versions cannot have the right length for either.
fn len_of(v: u32) -> usize {
    16 * 1024 + (v as usize * 7919) % (96 * 1024)
}

/// Version `v`'s body: `v`, then bytes derived from `v`.
fn body_of(v: u32) -> Vec<u8> {
    let mut body = v.to_be_bytes().to_vec();
    body.extend((4..len_of(v)).map(|i| ((i as u64 * 31 + u64::from(v) * 17) % 251) as u8));
    body
}

fn version_in(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

async fn hammer(caches: [Arc<dyn Cache>; 2]) {
    let keys: Arc<Vec<Key>> = Arc::new((0..KEYS).map(|k| Key::new(format!("race-{k}"))).collect());
    let done = Arc::new(AtomicBool::new(false));
    let full_reads = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (cache, keys) = (caches[w as usize % 2].clone(), keys.clone());
        writers.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let v = w * 100 + round;
                let data = body_of(v);
                let mut writer = cache
                    .create(
                        &keys[(v % KEYS) as usize],
                        HeaderMap::new(),
                        &CreateOptions::default(),
                    )
                    .await
                    .unwrap();
                for chunk in data.chunks(8 * 1024) {
                    writer.write_all(chunk).await.unwrap();
                }
                if round % 3 == 2 {
                    // Some uploads are abandoned; they must never show.
                    writer.abort("abandoned".into()).await.unwrap();
                } else {
                    writer.commit().await.unwrap();
                }
            }
        }));
    }
    let mut readers = Vec::new();
    for r in 0..READERS {
        let (cache, keys, done, full_reads) = (
            caches[r % 2].clone(),
            keys.clone(),
            done.clone(),
            full_reads.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut i = r;
            // Nothing is deleted here, so an object once seen must stay.
            let mut seen = [false; KEYS as usize];
            while !done.load(Ordering::Acquire) {
                let k = i % KEYS as usize;
                let key = &keys[k];
                i += 1;
                let ranged = i % 3 == 0;
                let options = if ranged {
                    OpenOptions::default().with_range(ByteRange::new(0, 4096).unwrap())
                } else {
                    OpenOptions::default()
                };
                let object = match cache.open(key, &options).await {
                    Err(Error::NotFound) => {
                        assert!(!seen[k], "key {k} vanished after it was read");
                        continue;
                    }
                    other => other.unwrap(),
                };
                seen[k] = true;
                let meta = object.meta.clone();
                let got = object.bytes().await.unwrap();
                let v = version_in(&got);
                assert!(v % 100 % 3 != 2, "version {v} was aborted but is visible");
                let want = body_of(v);
                assert_eq!(meta.size, Some(want.len() as u64), "size of version {v}");
                if ranged {
                    assert!(got == want[..4096], "torn ranged read of version {v}");
                } else {
                    assert!(got == want, "torn read of version {v}");
                    assert_eq!(
                        meta.etag.as_ref().map(|e| e.as_str()).unwrap_or_default(),
                        blake3::hash(&got).to_hex().as_str(),
                        "metadata of another version than the body"
                    );
                    full_reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(
        full_reads.load(Ordering::Relaxed) > 0,
        "readers saw no object"
    );
    for key in keys.iter() {
        let got = caches[0]
            .open(key, &OpenOptions::default())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got == body_of(version_in(&got)), "final version complete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_reads_are_never_torn() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<dyn Cache> = Arc::new(DiskCache::open(dir.path()).unwrap());
    let b: Arc<dyn Cache> = Arc::new(DiskCache::open(dir.path()).unwrap());
    hammer([a, b]).await;
    let leftovers = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "every upload published or removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_reads_are_never_torn() {
    let cache = MemoryCache::new(0);
    let other = cache.clone();
    hammer([Arc::new(cache), Arc::new(other)]).await;
}

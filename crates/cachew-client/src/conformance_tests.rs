//! Runs the shared conformance suite against the embedded backends, as
//! unit tests so that `cargo test -p cachew-client` needs no feature.

use std::sync::Arc;

use crate::conformance::{self, Harness, Setup};
use crate::{Cache, DiskCache, DiskCacheOptions, MemoryCache};

fn memory(setup: Setup) -> Arc<dyn Cache> {
    // Room for every check's objects unless the check asks for less.
    let mut cache = MemoryCache::new(setup.capacity.unwrap_or(64 << 20));
    if let Some(ttl) = setup.default_ttl {
        cache = cache.with_default_ttl(ttl);
    }
    if let Some(ttl) = setup.max_ttl {
        cache = cache.with_max_ttl(ttl);
    }
    Arc::new(cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_passes_the_conformance_suite() {
    conformance::run_all(&Harness::default(), |setup| async move { memory(setup) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_passes_the_conformance_suite() {
    let parent = tempfile::tempdir().expect("temporary directory");
    let mut n = 0;
    conformance::run_all(&Harness::default(), |setup: Setup| {
        n += 1;
        let root = parent.path().join(format!("check-{n}"));
        async move {
            // No default TTL unless the check asks for one: nothing may
            // expire behind a check's back.
            let mut options = DiskCacheOptions::default()
                .with_capacity(setup.capacity.unwrap_or(0))
                .with_default_ttl(setup.default_ttl.unwrap_or_default());
            if let Some(ttl) = setup.max_ttl {
                options = options.with_max_ttl(ttl);
            }
            let cache = DiskCache::open_with(&root, options).expect("open disk cache");
            Arc::new(cache) as Arc<dyn Cache>
        }
    })
    .await;
}

//! The shared conformance suite against [`DiskCache`].

use std::sync::Arc;

use cachew_client::conformance::{self, Harness, Setup};
use cachew_client::{Cache, DiskCache, DiskCacheOptions};

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

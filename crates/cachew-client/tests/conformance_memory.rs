//! The shared conformance suite against [`MemoryCache`].

use std::sync::Arc;

use cachew_client::conformance::{self, Harness, Setup};
use cachew_client::{Cache, MemoryCache};

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

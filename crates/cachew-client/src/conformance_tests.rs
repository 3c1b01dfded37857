//! Runs the shared conformance suite against the embedded backends, as
//! unit tests so that `cargo test -p cachew-client` needs no feature.

use crate::conformance::{self, disk_backend, memory_backend, Harness, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_passes_the_conformance_suite() {
    conformance::run_all(&Harness::default(), |setup| async move {
        memory_backend(&setup)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_passes_the_conformance_suite() {
    let parent = tempfile::tempdir().expect("temporary directory");
    let mut n = 0;
    conformance::run_all(&Harness::default(), |setup: Setup| {
        n += 1;
        let root = parent.path().join(format!("check-{n}"));
        async move { disk_backend(&root, &setup) }
    })
    .await;
}

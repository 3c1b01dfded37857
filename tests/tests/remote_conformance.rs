//! The shared conformance suite, unchanged, against the remote `Cache`
//! talking to the reference server, backed by memory and by disk.

mod support;

use cachew_client::conformance::{self, Harness, Setup};
use support::Servers;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_over_memory_passes_the_conformance_suite() {
    let servers = Servers::default();
    conformance::run_all(&Harness::default(), |setup: Setup| {
        let servers = servers.clone();
        async move { servers.remote(support::memory(&setup)).await }
    })
    .await;
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_over_disk_passes_the_conformance_suite() {
    let parent = tempfile::tempdir().expect("temporary directory");
    let servers = Servers::default();
    let mut n = 0;
    conformance::run_all(&Harness::default(), |setup: Setup| {
        n += 1;
        let root = parent.path().join(format!("check-{n}"));
        let servers = servers.clone();
        async move { servers.remote(support::disk(&root, &setup)).await }
    })
    .await;
    servers.shutdown().await;
}

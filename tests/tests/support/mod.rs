//! Helpers shared by the remote-over-server tests: building backends for a
//! conformance [`Setup`] and serving them with the reference server.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use cachew_client::conformance::Setup;
use cachew_client::{Cache, DiskCache, DiskCacheOptions, MemoryCache, RemoteCache};
use cachew_server::{RunningServer, Server};

/// A memory backend configured for `setup`, with room for every check's
/// objects unless the check asks for less.
pub fn memory(setup: &Setup) -> Arc<dyn Cache> {
    let mut cache = MemoryCache::new(setup.capacity.unwrap_or(64 << 20));
    if let Some(ttl) = setup.default_ttl {
        cache = cache.with_default_ttl(ttl);
    }
    if let Some(ttl) = setup.max_ttl {
        cache = cache.with_max_ttl(ttl);
    }
    Arc::new(cache)
}

/// A disk backend in `root` configured for `setup`.
pub fn disk(root: &Path, setup: &Setup) -> Arc<dyn Cache> {
    let mut options = DiskCacheOptions::default()
        .with_capacity(setup.capacity.unwrap_or(0))
        .with_default_ttl(setup.default_ttl.unwrap_or_default());
    if let Some(ttl) = setup.max_ttl {
        options = options.with_max_ttl(ttl);
    }
    Arc::new(DiskCache::open_with(root, options).expect("open disk cache"))
}

/// Servers started by a test, kept running until [`Servers::shutdown`].
#[derive(Default, Clone)]
pub struct Servers(Arc<Mutex<Vec<RunningServer>>>);

impl Servers {
    /// Serves `backend` on `127.0.0.1:0` and returns a remote client for it.
    pub async fn remote(&self, backend: Arc<dyn Cache>) -> Arc<dyn Cache> {
        let server = Server::new(backend)
            .bind("127.0.0.1:0")
            .await
            .expect("bind the reference server");
        let remote = RemoteCache::builder(server.url())
            .build()
            .expect("remote cache");
        self.0.lock().unwrap().push(server);
        Arc::new(remote)
    }

    /// Stops every server gracefully.
    pub async fn shutdown(&self) {
        let servers = std::mem::take(&mut *self.0.lock().unwrap());
        for server in servers {
            server.shutdown().await;
        }
    }
}

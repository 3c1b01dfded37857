//! Helpers shared by the remote-over-server tests: the conformance suite's
//! backend factories, and serving backends with the reference server.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::sync::{Arc, Mutex};

use cachew_client::{Cache, RemoteCache};
use cachew_server::{RunningServer, Server};

pub use cachew_client::conformance::{disk_backend as disk, memory_backend as memory};

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

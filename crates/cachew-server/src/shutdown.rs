//! Graceful shutdown: the signals that ask for it (SIGTERM, SIGINT) and
//! the set of open connections that drains on it — each finishes its
//! in-flight request and closes, and whatever is still running at the
//! deadline is cut off. A cut-off upload is dropped before its commit, so
//! it never becomes visible.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// Listens for SIGTERM and SIGINT (Ctrl-C) from now on; the returned
/// future resolves with the name of the first one that arrives.
///
/// CI systems, Docker and Kubernetes stop a service with SIGTERM, a
/// terminal with SIGINT; both mean "finish what you are doing and exit".
/// The handlers are installed before this returns, so a signal sent right
/// after start-up is not missed.
pub fn signal() -> io::Result<impl Future<Output = &'static str> + Send> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        })
    }
}

/// The open connections of a server.
#[derive(Debug)]
pub(crate) struct Connections {
    tasks: JoinSet<()>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
}

/// Resolves when the server starts shutting down.
#[derive(Debug, Clone)]
pub(crate) struct Stopping(watch::Receiver<bool>);

impl Stopping {
    pub(crate) async fn wait(mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

impl Connections {
    pub(crate) fn new() -> Connections {
        let (stop_tx, stop_rx) = watch::channel(false);
        Connections {
            tasks: JoinSet::new(),
            stop_tx,
            stop_rx,
        }
    }

    /// Runs a connection; `serve` gets the signal to close gracefully.
    pub(crate) fn spawn<F>(&mut self, serve: impl FnOnce(Stopping) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(serve(Stopping(self.stop_rx.clone())));
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Forgets one finished connection (waits if none has finished).
    pub(crate) async fn reap(&mut self) {
        let _ = self.tasks.join_next().await;
    }

    /// Tells every connection to finish its requests and close, waits up
    /// to `grace` for them, then cuts off the rest.
    pub(crate) async fn drain(mut self, grace: Duration) {
        let _ = self.stop_tx.send(true);
        let open = self.tasks.len();
        if open > 0 {
            tracing::info!(connections = open, grace = ?grace, "finishing in-flight requests");
        }
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = self.tasks.len(),
                "shutdown timeout reached; closing the remaining connections"
            );
            // Aborting drops each request's future, and with it any
            // uncommitted cache writer, which discards the upload.
            self.tasks.shutdown().await;
        }
    }
}

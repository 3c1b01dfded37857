//! The server's resource limits ([`Limits`]) and the connection caps that
//! enforce two of them: at most `max_connections` open connections, and at
//! most `max_connections_per_client` from one client address, so one
//! client (or a slowloris attack from one address) cannot take every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default [`Limits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Limits::idle_timeout`]: longer than the clients' pool idle
/// timeout (90 s, Go's default), so a client does not reuse a connection
/// the server is closing at that moment — a streamed upload on such a
/// connection fails and is never retried.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default [`Limits::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default [`Limits::max_connections_per_client`].
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 64;

/// Timeouts and caps that keep one slow or hostile client from exhausting
/// the server. `Default` gives the documented defaults (`docs/SERVER.md`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// How long a client may take to send a request's headers, counted from
    /// the connection's start (or, between keep-alive requests, from the
    /// request's first byte). Slowly dribbled headers are cut off here.
    pub header_timeout: Duration,
    /// How long a connection may sit between requests with nothing sent.
    pub idle_timeout: Duration,
    /// How long the server waits for the next bytes of a request body; an
    /// upload that stalls longer is aborted (never committed) with `408`.
    /// Also how long a response may wait for a client that stopped reading
    /// before the connection is cut.
    pub body_timeout: Duration,
    /// Open connections at most; more wait in the listen backlog.
    pub max_connections: usize,
    /// Open connections from one client IP address at most; more are
    /// closed at once. Raise it when many clients share one address (NAT).
    pub max_connections_per_client: usize,
    /// Largest object a Create may upload, in bytes (`None`: no limit).
    /// Larger uploads are answered `413` and never committed.
    pub max_object_size: Option<u64>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            max_object_size: None,
        }
    }
}

impl Limits {
    /// Sets [`Limits::header_timeout`].
    #[must_use]
    pub fn with_header_timeout(mut self, timeout: Duration) -> Limits {
        self.header_timeout = timeout;
        self
    }

    /// Sets [`Limits::idle_timeout`].
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Limits {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`Limits::body_timeout`].
    #[must_use]
    pub fn with_body_timeout(mut self, timeout: Duration) -> Limits {
        self.body_timeout = timeout;
        self
    }

    /// Sets [`Limits::max_connections`] (at least 1).
    #[must_use]
    pub fn with_max_connections(mut self, max: usize) -> Limits {
        self.max_connections = max.max(1);
        self
    }

    /// Sets [`Limits::max_connections_per_client`] (at least 1).
    #[must_use]
    pub fn with_max_connections_per_client(mut self, max: usize) -> Limits {
        self.max_connections_per_client = max.max(1);
        self
    }

    /// Sets [`Limits::max_object_size`].
    #[must_use]
    pub fn with_max_object_size(mut self, max: Option<u64>) -> Limits {
        self.max_object_size = max;
        self
    }
}

/// The open-connection counts, overall and per client address. Memory is
/// bounded: an address is forgotten when its last connection closes, so
/// the map never holds more than `max_connections` entries.
#[derive(Debug)]
pub(crate) struct ConnectionCaps {
    total: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_client: usize,
}

/// One admitted connection; dropping it frees its slots.
#[derive(Debug)]
pub(crate) struct Admission {
    _total: OwnedSemaphorePermit,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ConnectionCaps {
    pub(crate) fn new(limits: &Limits) -> ConnectionCaps {
        ConnectionCaps {
            total: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            per_client: Arc::default(),
            max_per_client: limits.max_connections_per_client.max(1),
        }
    }

    /// Waits for a free slot overall. The accept loop calls it before
    /// accepting, so connections beyond the cap wait in the backlog.
    pub(crate) async fn slot(&self) -> OwnedSemaphorePermit {
        self.total
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Admits a connection from `ip` holding `slot`, or `None` when that
    /// address already has its share.
    pub(crate) fn admit(&self, slot: OwnedSemaphorePermit, ip: IpAddr) -> Option<Admission> {
        let ip = ip.to_canonical();
        let mut map = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= self.max_per_client {
            return None;
        }
        *count += 1;
        drop(map);
        Some(Admission {
            _total: slot,
            per_client: self.per_client.clone(),
            ip,
        })
    }

    /// Addresses with open connections (for tests of the bound).
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.per_client.lock().unwrap().len()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut map = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn per_client_cap_and_forgetting() {
        let caps = ConnectionCaps::new(
            &Limits::default()
                .with_max_connections(3)
                .with_max_connections_per_client(2),
        );
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "::ffff:127.0.0.3".parse().unwrap();
        let a1 = caps.admit(caps.slot().await, a).unwrap();
        let a2 = caps.admit(caps.slot().await, a).unwrap();
        assert!(caps.admit(caps.slot().await, a).is_none(), "third from a");
        let b1 = caps.admit(caps.slot().await, b).unwrap();
        // All three slots are taken: the next waits.
        let waiting = tokio::time::timeout(Duration::from_millis(50), caps.slot()).await;
        assert!(waiting.is_err());
        drop((a1, a2));
        assert_eq!(caps.clients(), 1, "a is forgotten");
        drop(b1);
        assert_eq!(caps.clients(), 0);
        // The mapped address counts as the plain IPv4 one.
        let b4: IpAddr = "127.0.0.3".parse().unwrap();
        let _x = caps.admit(caps.slot().await, b).unwrap();
        let _y = caps.admit(caps.slot().await, b4).unwrap();
        assert!(caps.admit(caps.slot().await, b4).is_none());
    }
}

//! `GET /metrics`: the server's counters in the Prometheus text format
//! (version 0.0.4) — requests by status, body bytes in and out, object
//! hits and misses — plus the cache's objects, bytes and capacity from
//! [`Cache::stats`](cachew_client::Cache::stats) and any counters the
//! embedder registers ([`ServerBuilder::metric`](crate::ServerBuilder::metric)).
//!
//! Memory is bounded: one counter per possible status code (100–599), no
//! label carries a key, namespace, path or client.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{Method, StatusCode};

use crate::handler::State;

/// Whether a registered metric only grows or may go down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// Only grows (name it `…_total`).
    Counter,
    /// A current value.
    Gauge,
}

/// A metric the embedder reads from elsewhere (e.g. the disk cache's
/// eviction count).
pub(crate) struct Extra {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: MetricKind,
    pub(crate) read: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extra").field("name", &self.name).finish()
    }
}

const FIRST_CODE: u16 = 100;
const CODES: usize = 500;

/// The server's own counters.
#[derive(Debug)]
pub(crate) struct Metrics {
    by_status: Box<[AtomicU64]>,
    /// Requests cut off before the handler answered.
    unanswered: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    pub(crate) extra: Vec<Extra>,
}

impl Metrics {
    pub(crate) fn new(extra: Vec<Extra>) -> Arc<Metrics> {
        Arc::new(Metrics {
            by_status: (0..CODES).map(|_| AtomicU64::new(0)).collect(),
            unanswered: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            extra,
        })
    }

    /// Counts one finished request (called from the access log entry).
    pub(crate) fn record(
        &self,
        method: &Method,
        path: &str,
        status: Option<StatusCode>,
        received: u64,
        sent: u64,
    ) {
        self.received.fetch_add(received, Ordering::Relaxed);
        self.sent.fetch_add(sent, Ordering::Relaxed);
        let Some(status) = status else {
            self.unanswered.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some(slot) = usize::from(status.as_u16())
            .checked_sub(usize::from(FIRST_CODE))
            .and_then(|i| self.by_status.get(i))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        let read = *method == Method::GET || *method == Method::HEAD;
        if read && path.starts_with("/api/v1/object/") {
            match status.as_u16() {
                200 | 206 | 304 => self.hits.fetch_add(1, Ordering::Relaxed),
                404 => self.misses.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The exposition of every metric. The cache's figures are left out when
/// it has no statistics.
pub(crate) async fn render(state: &State) -> String {
    let m = &state.metrics;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::with_capacity(2048);
    family(
        &mut out,
        "cachew_requests_total",
        "counter",
        "Requests answered, by HTTP status code (code=\"none\": cut off before an answer).",
    );
    for (i, count) in m.by_status.iter().enumerate() {
        let n = load(count);
        if n > 0 {
            let code = i + usize::from(FIRST_CODE);
            let _ = writeln!(out, "cachew_requests_total{{code=\"{code}\"}} {n}");
        }
    }
    let _ = writeln!(
        out,
        "cachew_requests_total{{code=\"none\"}} {}",
        load(&m.unanswered)
    );
    let counters = [
        (
            "cachew_received_bytes_total",
            "Request body bytes received.",
            &m.received,
        ),
        (
            "cachew_sent_bytes_total",
            "Response body bytes sent.",
            &m.sent,
        ),
        (
            "cachew_hits_total",
            "Object GET and HEAD requests answered 200, 206 or 304.",
            &m.hits,
        ),
        (
            "cachew_misses_total",
            "Object GET and HEAD requests answered 404.",
            &m.misses,
        ),
    ];
    for (name, help, value) in counters {
        sample(&mut out, name, "counter", help, load(value));
    }
    if let Ok(stats) = state.cache.stats().await {
        let gauges = [
            ("cachew_objects", "Objects stored.", stats.objects),
            (
                "cachew_stored_bytes",
                "Bytes stored (on disk for the disk cache).",
                stats.size,
            ),
            (
                "cachew_capacity_bytes",
                "The cache's capacity in bytes, 0 if unlimited.",
                stats.capacity,
            ),
        ];
        for (name, help, value) in gauges {
            sample(&mut out, name, "gauge", help, value.max(0) as u64);
        }
    }
    for extra in &m.extra {
        let kind = match extra.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        sample(&mut out, extra.name, kind, extra.help, (extra.read)());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_outside_the_table_and_unanswered_requests_are_bounded() {
        let m = Metrics::new(Vec::new());
        let get = Method::GET;
        m.record(&get, "/api/v1/object/ns/k", Some(StatusCode::OK), 0, 10);
        m.record(
            &get,
            "/api/v1/object/ns/k",
            Some(StatusCode::NOT_FOUND),
            0,
            9,
        );
        m.record(
            &Method::POST,
            "/api/v1/object/ns/k",
            Some(StatusCode::OK),
            5,
            0,
        );
        m.record(&get, "/x", StatusCode::from_u16(999).ok(), 0, 0);
        m.record(&get, "/x", None, 1, 0);
        assert_eq!(m.hits.load(Ordering::Relaxed), 1);
        assert_eq!(m.misses.load(Ordering::Relaxed), 1);
        assert_eq!(m.received.load(Ordering::Relaxed), 6);
        assert_eq!(m.sent.load(Ordering::Relaxed), 19);
        assert_eq!(m.unanswered.load(Ordering::Relaxed), 1);
        assert_eq!(m.by_status[100].load(Ordering::Relaxed), 2);
    }
}

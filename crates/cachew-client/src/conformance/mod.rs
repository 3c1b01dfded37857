//! The conformance suite every [`Cache`] backend runs.
//!
//! Each `pub async fn` here checks one behaviour through the [`Cache`] trait
//! only, so the same list runs against the memory and disk backends and,
//! through an HTTP server, the remote one. A check panics (with a message
//! saying what it expected) when the backend misbehaves.
//!
//! Backends run the whole list with [`run_all`], giving a factory that builds
//! a fresh cache for a [`Setup`] (some checks need a short default TTL, a
//! short maximum TTL or a small capacity). What differs between backends —
//! how long to wait for an expiry, whether statistics exist — is a
//! [`Harness`] parameter, never a branch on the backend's type.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use cachew_client::conformance::{self, Harness, Setup};
//! use cachew_client::{Cache, MemoryCache};
//!
//! let factory = |setup: Setup| async move {
//!     let mut cache = MemoryCache::new(setup.capacity.unwrap_or(0));
//!     if let Some(ttl) = setup.default_ttl {
//!         cache = cache.with_default_ttl(ttl);
//!     }
//!     if let Some(ttl) = setup.max_ttl {
//!         cache = cache.with_max_ttl(ttl);
//!     }
//!     Arc::new(cache) as Arc<dyn Cache>
//! };
//! // One check; `conformance::run_all(&Harness::default(), factory)` runs them all.
//! let cache = factory(Setup::default()).await;
//! conformance::create_and_open(cache.as_ref()).await;
//! # });
//! ```

use std::fmt::Write as _;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::cache::Cache;

mod capacity;
mod conditional;
mod helpers;
mod metadata;
mod objects;

pub use capacity::*;
pub use conditional::*;
pub use metadata::*;
pub use objects::*;

/// What differs between backends, as parameters of the checks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Harness {
    /// The TTL the expiry checks use (and ask [`Setup`] for). Default 1 s.
    pub short_ttl: Duration,
    /// How long past `short_ttl` a check waits before expecting the object
    /// gone (clock granularity, transport latency). Default 300 ms.
    pub expiry_slack: Duration,
    /// Whether the backend reports statistics; if not, the stats check
    /// expects [`Error::StatsUnavailable`](crate::Error::StatsUnavailable). Default `true`.
    pub stats_available: bool,
    /// Whether the backend enforces a capacity (evicts, refuses objects
    /// larger than it). An object store has none (its bucket's lifecycle
    /// rules bound it): then [`run_all`] skips the eviction and size-limit
    /// checks, and the stats check expects a capacity of 0 (unlimited).
    /// Default `true`.
    pub has_capacity: bool,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness {
            short_ttl: Duration::from_secs(1),
            expiry_slack: Duration::from_millis(300),
            stats_available: true,
            has_capacity: true,
        }
    }
}

impl Harness {
    /// Sets [`Harness::short_ttl`].
    #[must_use]
    pub fn with_short_ttl(mut self, ttl: Duration) -> Self {
        self.short_ttl = ttl;
        self
    }

    /// Sets [`Harness::expiry_slack`].
    #[must_use]
    pub fn with_expiry_slack(mut self, slack: Duration) -> Self {
        self.expiry_slack = slack;
        self
    }

    /// Sets [`Harness::stats_available`].
    #[must_use]
    pub fn with_stats_available(mut self, available: bool) -> Self {
        self.stats_available = available;
        self
    }

    /// Sets [`Harness::has_capacity`].
    #[must_use]
    pub fn with_capacity(mut self, has_capacity: bool) -> Self {
        self.has_capacity = has_capacity;
        self
    }

    /// Whether `check` applies to a backend with this harness: without a
    /// capacity, the checks that configure [`SMALL_CAPACITY`] do not.
    pub fn applies(&self, check: &Check) -> bool {
        self.has_capacity || (check.setup)(self).capacity != Some(SMALL_CAPACITY)
    }

    /// How long an expiry check sleeps.
    fn expiry_wait(&self) -> Duration {
        self.short_ttl + self.expiry_slack
    }
}

/// How a check needs its fresh cache configured. `None` fields mean the
/// backend's ordinary configuration: a default TTL long enough that nothing
/// expires during the check, no TTL cap, room for a few MiB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Setup {
    /// The TTL of objects created without one.
    pub default_ttl: Option<Duration>,
    /// The cap on every object's TTL.
    pub max_ttl: Option<Duration>,
    /// The capacity in bytes.
    pub capacity: Option<u64>,
}

/// The signature of a check as listed in [`CHECKS`].
pub type CheckFn = for<'a> fn(&'a dyn Cache, &'a Harness) -> BoxFuture<'a, ()>;

/// One entry of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// The check's name, the name of its function.
    pub name: &'static str,
    /// What the check's cache needs.
    pub setup: fn(&Harness) -> Setup,
    /// Runs the check.
    pub run: CheckFn,
}

/// The capacity the eviction checks configure.
pub const SMALL_CAPACITY: u64 = 64 * 1024;
/// The capacity the stats check configures.
pub const STATS_CAPACITY: u64 = 8 << 20;

fn standard(_: &Harness) -> Setup {
    Setup::default()
}

fn short_default_ttl(h: &Harness) -> Setup {
    Setup {
        default_ttl: Some(h.short_ttl),
        ..Setup::default()
    }
}

fn short_max_ttl(h: &Harness) -> Setup {
    Setup {
        max_ttl: Some(h.short_ttl),
        ..Setup::default()
    }
}

fn small_capacity(_: &Harness) -> Setup {
    Setup {
        capacity: Some(SMALL_CAPACITY),
        ..Setup::default()
    }
}

fn stats_capacity(_: &Harness) -> Setup {
    Setup {
        capacity: Some(STATS_CAPACITY),
        ..Setup::default()
    }
}

macro_rules! check {
    ($name:ident) => {
        Check {
            name: stringify!($name),
            setup: standard,
            run: |cache, _| Box::pin($name(cache)),
        }
    };
    ($name:ident, harness, $setup:expr) => {
        Check {
            name: stringify!($name),
            setup: $setup,
            run: |cache, harness| Box::pin($name(cache, harness)),
        }
    };
    ($name:ident, $setup:expr) => {
        Check {
            name: stringify!($name),
            setup: $setup,
            run: |cache, _| Box::pin($name(cache)),
        }
    };
}

/// Every check, in the order [`run_all`] runs them.
pub const CHECKS: &[Check] = &[
    check!(create_and_open),
    check!(not_found),
    check!(overwrite_replaces),
    check!(multiple_writes),
    check!(empty_object),
    check!(invisible_until_committed),
    check!(abort_leaves_nothing),
    check!(drop_without_commit_leaves_nothing),
    check!(commit_and_abort_are_idempotent),
    check!(delete),
    check!(invalidate),
    check!(expiry, harness, standard),
    check!(default_ttl, harness, short_default_ttl),
    check!(max_ttl, harness, short_max_ttl),
    check!(headers_round_trip),
    check!(last_modified_default),
    check!(last_modified_explicit),
    check!(content_length),
    check!(namespace_isolation),
    check!(namespace_listing),
    check!(explicit_etag),
    check!(generated_etag),
    check!(invalid_etag_rejected),
    check!(if_match),
    check!(if_none_match),
    check!(stat_ignores_range),
    check!(ranges),
    check!(range_not_satisfiable),
    check!(if_range),
    check!(stats, harness, stats_capacity),
    check!(eviction_is_lru, small_capacity),
    check!(too_large_is_rejected, small_capacity),
    check!(concurrent_writes_and_reads),
];

/// A [`MemoryCache`](crate::MemoryCache) configured for `setup`, with room
/// for every check's objects (64 MiB) unless the check asks for less: the
/// factory the memory backend's own run uses, for servers and adapters to
/// wrap.
pub fn memory_backend(setup: &Setup) -> Arc<dyn Cache> {
    let mut cache = crate::MemoryCache::new(setup.capacity.unwrap_or(64 << 20));
    if let Some(ttl) = setup.default_ttl {
        cache = cache.with_default_ttl(ttl);
    }
    if let Some(ttl) = setup.max_ttl {
        cache = cache.with_max_ttl(ttl);
    }
    Arc::new(cache)
}

/// A [`DiskCache`](crate::DiskCache) in `root` configured for `setup`. No
/// default TTL unless the check asks for one, so nothing expires behind a
/// check's back.
pub fn disk_backend(root: &std::path::Path, setup: &Setup) -> Arc<dyn Cache> {
    let mut options = crate::DiskCacheOptions::default()
        .with_capacity(setup.capacity.unwrap_or(0))
        .with_default_ttl(setup.default_ttl.unwrap_or_default());
    if let Some(ttl) = setup.max_ttl {
        options = options.with_max_ttl(ttl);
    }
    Arc::new(crate::DiskCache::open_with(root, options).expect("open disk cache"))
}

/// Runs every check in [`CHECKS`] that [applies](Harness::applies), each on
/// a fresh cache from `factory`, and panics listing every check that failed
/// (with its message).
pub async fn run_all<F, Fut>(harness: &Harness, mut factory: F)
where
    F: FnMut(Setup) -> Fut,
    Fut: Future<Output = Arc<dyn Cache>>,
{
    let mut failures = Vec::new();
    let mut backend = String::new();
    for check in CHECKS.iter().filter(|check| harness.applies(check)) {
        let cache = factory((check.setup)(harness)).await;
        backend = cache.to_string();
        if let Err(message) = run_check(check, cache.as_ref(), harness).await {
            failures.push(format!("{}: {message}", check.name));
        }
    }
    if !failures.is_empty() {
        let mut report = format!(
            "{} of {} conformance checks failed on {backend}:",
            failures.len(),
            CHECKS.len()
        );
        for failure in &failures {
            let _ = write!(report, "\n  - {failure}");
        }
        panic!("{report}");
    }
}

/// Runs one check, turning its panic into the panic message.
pub async fn run_check(check: &Check, cache: &dyn Cache, harness: &Harness) -> Result<(), String> {
    match AssertUnwindSafe((check.run)(cache, harness))
        .catch_unwind()
        .await
    {
        Ok(()) => Ok(()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".to_owned())),
    }
}

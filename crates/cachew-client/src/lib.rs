//! The cachew-rs client facade.
//!
//! [`Cache`] is the one trait every backend implements: `MemoryCache`,
//! `DiskCache` (the embedded backend behind `--url file:///path`) and the
//! remote client for a Cachew server. Everything else — saving and restoring
//! directories, keys from files — is written once against `dyn Cache`.
//! [`parallel`] splits big downloads into concurrent ranged requests with
//! bounded memory (`PROTOCOL.md` §6), and [`git`] is the client of a server's
//! git endpoints (snapshots, bundles, ensure-refs; §5).
//!
//! **API boundary:** this crate re-exports the protocol types users need, so
//! depending on it alone is enough.

// Unix only: disk locking (`flock`), file identity (device and inode) and
// positional writes (`FileExt`) have no other implementation.
#[cfg(not(unix))]
compile_error!("cachew-client supports Unix-like systems only");

mod cache;
// Compiled for this crate's own unit tests too, so that `cargo test -p
// cachew-client` runs the suite against the embedded backends without a
// feature (`conformance_tests.rs`).
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(test)]
mod conformance_tests;
pub mod digest;
mod disk;
mod error;
pub mod git;
mod hashfiles;
mod journal;
mod memory;
pub mod parallel;
mod publish;
pub mod record;
mod remote;
mod restore;
mod save;
mod staging;

pub use cache::{AbortCause, Body, Cache, CacheExt, CacheWriter, Object, ObjectMeta};
pub use cachew_proto as proto;
pub use cachew_proto::{
    ByteRange, CreateOptions, EntityTag, EtagCondition, Key, Namespace, OpenOptions, Stats,
};
pub use digest::{tree_digest, TreeDigest};
pub use disk::{DiskCache, DiskCacheOptions, DiskCounters, SweepReport};
pub use error::{Error, Result};
pub use hashfiles::{hash_files, matched_files};
pub use memory::MemoryCache;
pub use remote::{RemoteCache, RemoteCacheBuilder};
pub use restore::{restore, RestoreOptions, RestoreOutcome};
pub use save::{save, Progress, SaveOptions, SaveOutcome};
pub use staging::{gc, remove_staging, Cleanup};

//! The sweep: remove every expired object under `objects/` — whichever
//! process wrote it, touched or not — and the temporary files of dead
//! writers; and the counters of what eviction and expiry removed.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::index::scan;
use super::lock::{clean_temp, FileId};
use super::trailer::{read_trailer, unix_ms};
use super::{DiskCache, Shared};
use crate::error::Result;

/// What one [`DiskCache::sweep`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Expired objects removed.
    pub expired: u64,
    /// Their bytes on disk.
    pub bytes: u64,
    /// Abandoned temporary upload files removed.
    pub temp_files: u64,
}

/// What a [`DiskCache`] removed since it was opened, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskCounters {
    /// Objects evicted to stay under the capacity.
    pub evictions: u64,
    /// Expired objects removed, by a sweep or when touched.
    pub expired: u64,
}

/// The live counters behind [`DiskCounters`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) evictions: AtomicU64,
    pub(super) expired: AtomicU64,
}

impl Counters {
    pub(super) fn evicted(&self, n: u64) {
        self.evictions.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn expired(&self, n: u64) {
        self.expired.fetch_add(n, Ordering::Relaxed);
    }
}

impl DiskCache {
    /// Removes every expired object and every abandoned temporary file.
    ///
    /// Each object file's trailer is read (the expiry lives there), so this
    /// also removes what a previous process or another process sharing the
    /// root wrote and nobody touched since. Removals check the file's
    /// identity, so an object replaced meanwhile is left alone; uploads in
    /// progress hold their lock and are left alone too. Blocking
    /// file-system work proportional to the number of objects: run it from
    /// `spawn_blocking` or a thread (`cachew serve` does so at start-up and
    /// every `--sweep-interval`).
    pub fn sweep(&self) -> Result<SweepReport> {
        let shared = &self.shared;
        let mut report = SweepReport {
            temp_files: clean_temp(&shared.tmp)? as u64,
            ..SweepReport::default()
        };
        let now = unix_ms(SystemTime::now());
        for (id, len, file_id, _) in scan(&shared.objects)? {
            let path = shared.object_path(&id.0, &id.1);
            let mut file = match File::open(&path) {
                Ok(file) => file,
                // Evicted, deleted or replaced since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "sweep: cannot open a cache object");
                    continue;
                }
            };
            let Ok(meta) = file.metadata() else { continue };
            if FileId::of(&meta) != file_id {
                continue;
            }
            // Corrupt and foreign files are `load`'s business: a sweep
            // removes only what it knows to be expired.
            let Ok(trailer) = read_trailer(&mut file, meta.len(), &id.1) else {
                continue;
            };
            if trailer.expires_ms.is_some_and(|at| at <= now) && shared.discard(&id, &path, file_id)
            {
                report.expired += 1;
                report.bytes += len;
            }
        }
        shared.counters.expired(report.expired);
        if report != SweepReport::default() {
            tracing::info!(
                root = %shared.root.display(),
                expired = report.expired,
                bytes = report.bytes,
                temp_files = report.temp_files,
                "swept the cache"
            );
        }
        Ok(report)
    }

    /// What eviction and expiry removed since this cache was opened (all
    /// handles of one [`DiskCache::open`] share the counts).
    pub fn counters(&self) -> DiskCounters {
        let counters: &Counters = &self.shared.counters;
        DiskCounters {
            evictions: counters.evictions.load(Ordering::Relaxed),
            expired: counters.expired.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    /// Removes the evicted objects' files; returns how many were removed.
    pub(super) fn remove_victims(&self, victims: Vec<(super::ObjectId, FileId)>) -> u64 {
        let mut removed = 0;
        for ((ns, key), file) in victims {
            let path = self.object_path(&ns, &key);
            match super::lock::remove_if_same(&path, file) {
                Ok(true) => {
                    removed += 1;
                    tracing::debug!(path = %path.display(), "evicted cache object");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not evict a cache object");
                }
            }
        }
        self.counters.evicted(removed);
        removed
    }
}

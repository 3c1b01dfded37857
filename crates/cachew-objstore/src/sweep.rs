//! [`sweep`]: deletes expired objects and orphaned sidecars under the
//! root, in one listing.

use std::time::{Duration, SystemTime};

use cachew_client::Result;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;

use crate::{meta, Shared, SIDECARS};

/// A sidecar younger than this may belong to an upload in progress.
const SIDECAR_GRACE: Duration = Duration::from_secs(3600);

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Objects listed (sidecars not counted).
    pub objects: u64,
    /// Expired objects deleted.
    pub expired: u64,
    /// Orphaned sidecars deleted.
    pub sidecars: u64,
}

pub(crate) async fn sweep(shared: &Shared) -> Result<SweepReport> {
    let now = SystemTime::now();
    let sidecars = shared.root.clone().join(SIDECARS);
    let mut report = SweepReport::default();
    let mut listing = shared.store.list(Some(&shared.root));
    while let Some(item) = listing.next().await {
        let item = item.map_err(|e| shared.error("LIST", e))?;
        let modified = SystemTime::from(item.last_modified);
        if item.location.prefix_matches(&sidecars) {
            if now.duration_since(modified).unwrap_or_default() >= SIDECAR_GRACE
                && orphaned(shared, &item.location).await?
            {
                delete(shared, &item.location).await?;
                report.sidecars += 1;
            }
            continue;
        }
        report.objects += 1;
        // With a TTL cap, an object stored longer ago than the cap has
        // expired whatever its record says: no HEAD needed.
        let past_cap = shared
            .options
            .max_ttl
            .is_some_and(|max| now.duration_since(modified).unwrap_or_default() >= max);
        let expired = past_cap
            || meta::expiry(shared, &item.location)
                .await?
                .is_some_and(|at| at <= now);
        if expired {
            delete(shared, &item.location).await?;
            report.expired += 1;
        }
    }
    Ok(report)
}

/// Whether the sidecar at `path` (`ROOT/_meta/NS/KEY.ID`) is no longer named
/// by its object.
async fn orphaned(shared: &Shared, path: &Path) -> Result<bool> {
    let Some(name) = path.filename() else {
        return Ok(false);
    };
    let Some((key, id)) = name.split_once('.') else {
        return Ok(true);
    };
    let namespace = path.parts().rev().nth(1);
    let Some(namespace) = namespace else {
        return Ok(true);
    };
    let object = shared.root.clone().join(namespace.as_ref()).join(key);
    Ok(!meta::references(shared, &object, id).await?)
}

async fn delete(shared: &Shared, path: &Path) -> Result<()> {
    match shared.store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(shared.error(&format!("DELETE of {path}"), e)),
    }
}

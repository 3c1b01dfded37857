//! Opening the cache backend `--url` names (`crate::url` decides which).

use std::path::PathBuf;
use std::sync::Arc;

use cachew_client::{Cache, DiskCache, Error, RemoteCache};

/// Where `--url` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A Cachew server.
    Remote(String),
    /// The embedded on-disk cache in this directory.
    Disk(PathBuf),
    /// An object store (`s3://`, `gs://`, `az://`), used directly.
    ObjectStore(String),
}

/// The TTL of objects created without one, in the object store as in the
/// disk cache (`DiskCacheOptions`' default).
pub(crate) const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

impl Target {
    /// Opens the backend.
    pub(crate) fn open(&self, authorization: Option<&str>) -> Result<Arc<dyn Cache>, Error> {
        match self {
            Target::Remote(url) => {
                let mut builder = crate::net::configure(RemoteCache::builder(url.as_str()));
                if let Some(auth) = authorization {
                    builder = builder.authorization(auth);
                }
                Ok(Arc::new(builder.build()?))
            }
            Target::Disk(path) => Ok(Arc::new(DiskCache::open(path)?)),
            Target::ObjectStore(url) => {
                let options =
                    cachew_objstore::ObjectStoreOptions::default().with_default_ttl(DEFAULT_TTL);
                Ok(Arc::new(cachew_objstore::open_url(url, options)?))
            }
        }
    }
}

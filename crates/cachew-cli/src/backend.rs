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
}

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
        }
    }
}

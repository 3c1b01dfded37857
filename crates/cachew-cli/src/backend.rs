//! Choosing the cache backend from `--url`.

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
    /// `http(s)://…` is a server; `file:///path` or a plain path is the
    /// embedded disk cache; any other scheme is an error.
    pub(crate) fn parse(url: &str) -> Result<Target, Error> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Target::Remote(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("file://") {
            let path = if let Some(path) = rest.strip_prefix("localhost/") {
                format!("/{path}")
            } else if rest.starts_with('/') {
                rest.to_owned()
            } else {
                return Err(Error::InvalidInput(format!(
                    "invalid --url {url:?}: a file URL needs an absolute path, e.g. file:///var/cache/cachew"
                )));
            };
            return Ok(Target::Disk(PathBuf::from(path)));
        }
        if url.contains("://") {
            return Err(Error::InvalidInput(format!(
                "invalid --url {url:?}: use http://, https://, file:///path or a plain directory path"
            )));
        }
        if url.is_empty() {
            return Err(Error::InvalidInput("empty --url".into()));
        }
        Ok(Target::Disk(PathBuf::from(url)))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert_eq!(
            Target::parse("http://127.0.0.1:8080").unwrap(),
            Target::Remote("http://127.0.0.1:8080".into())
        );
        assert_eq!(
            Target::parse("HTTPS://cache/x").unwrap(),
            Target::Remote("HTTPS://cache/x".into())
        );
        assert_eq!(
            Target::parse("file:///tmp/c").unwrap(),
            Target::Disk("/tmp/c".into())
        );
        assert_eq!(
            Target::parse("file://localhost/tmp/c").unwrap(),
            Target::Disk("/tmp/c".into())
        );
        assert_eq!(
            Target::parse("./cache").unwrap(),
            Target::Disk("./cache".into())
        );
        assert!(Target::parse("file://host/x").is_err());
        assert!(Target::parse("s3://bucket").is_err());
        assert!(Target::parse("").is_err());
    }
}

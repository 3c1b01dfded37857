//! Object-store URLs: `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX` and
//! `az://CONTAINER/PREFIX`, each behind its feature (`s3`, `gcs`,
//! `azure`), configured from the providers' standard environment
//! variables.
//!
//! - S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//!   `AWS_REGION`/`AWS_DEFAULT_REGION` (default `us-east-1`),
//!   `AWS_ENDPOINT_URL` for S3-compatible servers (plain `http://` is
//!   allowed for a loopback endpoint, or with `AWS_ALLOW_HTTP=true`), and
//!   the rest of what object_store's `AmazonS3Builder::from_env` reads
//!   (instance and web-identity credentials among them).
//! - GCS: `GOOGLE_SERVICE_ACCOUNT` (a key file) or
//!   `GOOGLE_APPLICATION_CREDENTIALS`, as `GoogleCloudStorageBuilder::from_env`.
//! - Azure: `AZURE_STORAGE_ACCOUNT_NAME` and `AZURE_STORAGE_ACCOUNT_KEY` (or
//!   the other `AZURE_*` variables of `MicrosoftAzureBuilder::from_env`).

#[cfg(feature = "cloud")]
use std::sync::Arc;

use cachew_client::{Error, Result};

use crate::{ObjectStoreCache, ObjectStoreOptions};

/// The URL schemes this crate knows, whether or not compiled in, with the
/// feature each needs.
const SCHEMES: &[(&str, &str)] = &[("s3", "s3"), ("gs", "gcs"), ("az", "azure")];

/// Whether `url` names an object store (`s3://`, `gs://`, `az://`), so a
/// caller can route it here (and get the error saying which feature is
/// missing) rather than treat it as a server URL.
pub fn is_object_store_url(url: &str) -> bool {
    split(url).is_some()
}

/// `(scheme, bucket, prefix)`.
fn split(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    SCHEMES
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(scheme))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    Some((scheme, bucket, prefix))
}

/// Opens the cache an object-store URL names. The bucket must exist; the
/// prefix (may be empty) is the cache's root.
pub fn open_url(url: &str, options: ObjectStoreOptions) -> Result<ObjectStoreCache> {
    let Some((scheme, bucket, prefix)) = split(url) else {
        return Err(Error::InvalidInput(format!(
            "{url:?} is not an object store URL (expected s3://BUCKET/PREFIX, \
             gs://BUCKET/PREFIX or az://CONTAINER/PREFIX)"
        )));
    };
    if bucket.is_empty() || bucket.contains(['@', '?', '#']) {
        return Err(Error::InvalidInput(format!(
            "{url:?}: expected a bucket name after {scheme}:// (credentials come \
             from the environment, not the URL)"
        )));
    }
    let scheme = scheme.to_ascii_lowercase();
    let description = format!("{scheme}://{bucket}/{prefix}");
    let store = build(&scheme, bucket)?;
    #[allow(unreachable_code)]
    ObjectStoreCache::new(store, prefix, description, options)
}

fn not_compiled(scheme: &str) -> Error {
    let feature = SCHEMES
        .iter()
        .find(|(s, _)| *s == scheme)
        .map_or("?", |(_, f)| *f);
    Error::InvalidInput(format!(
        "{scheme}:// URLs need cachew built with the `{feature}` feature"
    ))
}

#[cfg(feature = "cloud")]
fn connector() -> Result<crate::http_client::TransportConnector> {
    crate::http_client::TransportConnector::new()
        .map_err(|e| Error::Backend(format!("building the object store's HTTP client: {e}")))
}

#[cfg(feature = "cloud")]
fn store_error(scheme: &str, bucket: &str) -> impl Fn(object_store::Error) -> Error {
    let (scheme, bucket) = (scheme.to_owned(), bucket.to_owned());
    move |e| Error::InvalidInput(format!("configuring {scheme}://{bucket}: {e}"))
}

fn build(scheme: &str, bucket: &str) -> Result<std::sync::Arc<dyn object_store::ObjectStore>> {
    match scheme {
        #[cfg(feature = "s3")]
        "s3" => {
            use object_store::aws::AmazonS3Builder;
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_http_connector(connector()?);
            let endpoint = std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .unwrap_or_default();
            if is_loopback_http(&endpoint) {
                builder = builder.with_allow_http(true);
            }
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                builder = builder.with_region("us-east-1");
            }
            let store = builder.build().map_err(store_error(scheme, bucket))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "gcs")]
        "gs" => {
            use object_store::gcp::GoogleCloudStorageBuilder;
            let store = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_http_connector(connector()?)
                .build()
                .map_err(store_error(scheme, bucket))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "azure")]
        "az" => {
            use object_store::azure::MicrosoftAzureBuilder;
            let store = MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_http_connector(connector()?)
                .build()
                .map_err(store_error(scheme, bucket))?;
            Ok(Arc::new(store))
        }
        other => {
            let _ = bucket;
            Err(not_compiled(other))
        }
    }
}

/// Whether `endpoint` is plain HTTP to this machine (a test or sidecar
/// server), which needs no TLS.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        assert_eq!(split("s3://b/p/q"), Some(("s3", "b", "p/q")));
        assert_eq!(split("gs://b"), Some(("gs", "b", "")));
        assert_eq!(split("S3://b/"), Some(("S3", "b", "")));
        assert_eq!(split("https://b/p"), None);
        assert!(is_object_store_url("az://c/x"));
        assert!(!is_object_store_url("file:///tmp"));
    }

    #[test]
    fn bad_urls_are_refused_by_name() {
        let err = open_url("s3:///prefix", ObjectStoreOptions::default()).unwrap_err();
        assert!(err.to_string().contains("bucket name"), "{err}");
        let err = open_url("s3://key:secret@bucket/p", ObjectStoreOptions::default()).unwrap_err();
        assert!(err.to_string().contains("environment"), "{err}");
        let err = open_url("http://x/y", ObjectStoreOptions::default()).unwrap_err();
        assert!(err.to_string().contains("not an object store URL"), "{err}");
    }

    #[test]
    fn loopback_endpoints_may_be_plain_http() {
        assert!(is_loopback_http("http://127.0.0.1:8333"));
        assert!(is_loopback_http("http://localhost:9000/"));
        assert!(is_loopback_http("http://[::1]:9000"));
        assert!(!is_loopback_http("http://10.0.0.1:9000"));
        assert!(!is_loopback_http("https://127.0.0.1:9000"));
    }
}

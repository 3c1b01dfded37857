//! The object record as the store keeps it: the JSON of [`StoredRecord`],
//! base64url in the `cachew` user-metadata entry, or in a sidecar object
//! named by `cachew-ref` when it would not fit S3's 2 KB; and [`load`],
//! which reads an object's record (and body) back in one request.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use cachew_client::record::Record;
use cachew_client::{EntityTag, Error, Result};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use object_store::path::Path;
use object_store::{Attribute, AttributeValue, Attributes, GetOptions, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::{epoch_secs, Shared};

/// The user-metadata entry holding the encoded record.
pub(crate) const RECORD: &str = "cachew";
/// The user-metadata entry naming the record's sidecar.
pub(crate) const REFERENCE: &str = "cachew-ref";
/// The longest encoded record kept in user metadata: S3 allows 2 KB for
/// all user-metadata names and values together.
pub(crate) const INLINE_LIMIT: usize = 1900;

/// What is stored about an object besides its bytes (its size is the
/// store's).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredRecord {
    /// Format version, 1.
    v: u32,
    /// The raw (unquoted) strong ETag.
    etag: String,
    /// `Last-Modified`, seconds since the epoch.
    modified: u64,
    /// When the object expires, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
    /// The stored headers, in order.
    #[serde(default)]
    headers: Vec<StoredHeader>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredHeader {
    name: String,
    /// The value when it is UTF-8 ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// ... else its bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<String>,
}

impl StoredRecord {
    pub(crate) fn new(record: &Record, expires: Option<SystemTime>) -> StoredRecord {
        let headers = record
            .headers
            .iter()
            .map(|(name, value)| match value.to_str() {
                Ok(text) => StoredHeader {
                    name: name.as_str().to_owned(),
                    text: Some(text.to_owned()),
                    bytes: None,
                },
                Err(_) => StoredHeader {
                    name: name.as_str().to_owned(),
                    text: None,
                    bytes: Some(STANDARD.encode(value.as_bytes())),
                },
            })
            .collect();
        StoredRecord {
            v: 1,
            etag: record.etag.as_str().to_owned(),
            modified: epoch_secs(record.last_modified),
            expires: expires.map(epoch_secs),
            headers,
        }
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("a record always serializes"))
    }

    pub(crate) fn encode_inline(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.to_json())
    }

    fn decode(json: &[u8], what: &str) -> Result<StoredRecord> {
        let record: StoredRecord = serde_json::from_slice(json)
            .map_err(|e| Error::Backend(format!("{what}: the cachew record is not valid: {e}")))?;
        if record.v != 1 {
            return Err(Error::Backend(format!(
                "{what}: cachew record version {} is not supported (expected 1)",
                record.v
            )));
        }
        Ok(record)
    }

    fn decode_inline(value: &str, what: &str) -> Result<StoredRecord> {
        let json = URL_SAFE_NO_PAD.decode(value.trim()).map_err(|e| {
            Error::Backend(format!("{what}: the cachew record is not base64url: {e}"))
        })?;
        StoredRecord::decode(&json, what)
    }

    fn expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|at| epoch_secs(now) >= at)
    }

    fn into_record(self, size: u64, what: &str) -> Result<Record> {
        let etag = EntityTag::new(self.etag)
            .map_err(|e| Error::Backend(format!("{what}: the stored ETag is not valid: {e}")))?;
        let mut headers = HeaderMap::new();
        for h in self.headers {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                Error::Backend(format!(
                    "{what}: stored header name {:?} is not valid",
                    h.name
                ))
            })?;
            let bytes = match (h.text, h.bytes) {
                (Some(text), _) => text.into_bytes(),
                (None, Some(b64)) => STANDARD.decode(b64).map_err(|e| {
                    Error::Backend(format!("{what}: stored header {name} is not base64: {e}"))
                })?,
                (None, None) => Vec::new(),
            };
            let value = HeaderValue::from_bytes(&bytes).map_err(|_| {
                Error::Backend(format!("{what}: stored header {name} has an invalid value"))
            })?;
            headers.append(name, value);
        }
        Ok(Record {
            headers,
            etag,
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(self.modified),
            size,
        })
    }
}

/// The attributes that carry `record`, inline or through the sidecar `id`.
pub(crate) fn attributes(inline: Option<String>, sidecar_id: Option<&str>) -> Attributes {
    let mut attributes = Attributes::new();
    if let Some(value) = inline {
        attributes.insert(
            Attribute::Metadata(Cow::Borrowed(RECORD)),
            AttributeValue::from(value),
        );
    }
    if let Some(id) = sidecar_id {
        attributes.insert(
            Attribute::Metadata(Cow::Borrowed(REFERENCE)),
            AttributeValue::from(id.to_owned()),
        );
    }
    attributes
}

/// An object's record, its storage ETag (for pinning later reads), and
/// unless the load was a `HEAD`, its body.
pub(crate) struct Loaded {
    pub(crate) record: Record,
    pub(crate) storage_etag: Option<String>,
    pub(crate) body: Option<BoxStream<'static, object_store::Result<Bytes>>>,
}

/// Reads the object at `path` with `options`; an expired object is
/// [`Error::NotFound`].
pub(crate) async fn load(shared: &Shared, path: &Path, options: GetOptions) -> Result<Loaded> {
    let head = options.head;
    let result = shared.store.get_opts(path, options).await.map_err(|e| {
        let method = if head { "HEAD" } else { "GET" };
        shared.error(&format!("{method} of {path}"), e)
    })?;
    let what = format!("{path}");
    let metadata = |name: &'static str| {
        result
            .attributes
            .get(&Attribute::Metadata(Cow::Borrowed(name)))
            .map(|v| v.as_ref().to_owned())
    };
    let stored = match (metadata(RECORD), metadata(REFERENCE)) {
        (Some(value), _) => StoredRecord::decode_inline(&value, &what)?,
        (None, Some(id)) => {
            let sidecar = sidecar_of(shared, path, &id)?;
            let json = match shared.store.get(&sidecar).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .map_err(|e| shared.error(&format!("GET of {sidecar}"), e))?,
                // Swept or not yet visible: the object cannot be served.
                Err(object_store::Error::NotFound { .. }) => return Err(Error::NotFound),
                Err(e) => return Err(shared.error(&format!("GET of {sidecar}"), e)),
            };
            StoredRecord::decode(&json, &what)?
        }
        (None, None) => {
            return Err(Error::Backend(format!(
                "{what}: the object has no cachew record (not written by cachew?)"
            )))
        }
    };
    if stored.expired(SystemTime::now()) {
        return Err(Error::NotFound);
    }
    let storage_etag = result.meta.e_tag.clone();
    let size = result.meta.size;
    let record = stored.into_record(size, &what)?;
    let body = (!head).then(|| result.into_stream().boxed());
    Ok(Loaded {
        record,
        storage_etag,
        body,
    })
}

/// The sidecar path named by reference `id` of the object at `path`
/// (`ROOT/NS/KEY` → `ROOT/_meta/NS/KEY.ID`).
fn sidecar_of(shared: &Shared, path: &Path, id: &str) -> Result<Path> {
    let bad = || Error::Backend(format!("{path}: the sidecar reference {id:?} is not valid"));
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad());
    }
    let mut parts: Vec<_> = path.parts().collect();
    let key = parts.pop().ok_or_else(bad)?;
    let namespace = parts.pop().ok_or_else(bad)?;
    Ok(shared
        .root
        .clone()
        .join(crate::SIDECARS)
        .join(namespace.as_ref())
        .join(format!("{}.{id}", key.as_ref())))
}

/// Whether the stored record of the object at `path` names sidecar `id`
/// (for the sweep). Absent objects name none.
pub(crate) async fn references(shared: &Shared, path: &Path, id: &str) -> Result<bool> {
    let head = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    match shared.store.get_opts(path, head).await {
        Ok(result) => Ok(result
            .attributes
            .get(&Attribute::Metadata(Cow::Borrowed(REFERENCE)))
            .is_some_and(|v| v.as_ref() == id)),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(shared.error(&format!("HEAD of {path}"), e)),
    }
}

/// When the object at `path` expires, from its record (for the sweep);
/// `None` if it does not, or is absent.
pub(crate) async fn expiry(shared: &Shared, path: &Path) -> Result<Option<SystemTime>> {
    let head = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    let result = match shared.store.get_opts(path, head).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(shared.error(&format!("HEAD of {path}"), e)),
    };
    let what = path.to_string();
    let stored = match (
        result
            .attributes
            .get(&Attribute::Metadata(Cow::Borrowed(RECORD))),
        result
            .attributes
            .get(&Attribute::Metadata(Cow::Borrowed(REFERENCE))),
    ) {
        (Some(value), _) => StoredRecord::decode_inline(value.as_ref(), &what)?,
        (None, Some(id)) => {
            let sidecar = sidecar_of(shared, path, id.as_ref())?;
            match shared.store.get(&sidecar).await {
                Ok(r) => {
                    let json = r
                        .bytes()
                        .await
                        .map_err(|e| shared.error(&format!("GET of {sidecar}"), e))?;
                    StoredRecord::decode(&json, &what)?
                }
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(shared.error(&format!("GET of {sidecar}"), e)),
            }
        }
        (None, None) => return Ok(None),
    };
    Ok(stored
        .expires
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)))
}

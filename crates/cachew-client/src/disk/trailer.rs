//! The object file format: the body, then a metadata trailer (JSON, then
//! the JSON's and the body's lengths, then the magic `CACHEWD1`), as
//! documented on [`DiskCache`](super::DiskCache).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::time::{Duration, SystemTime};

use cachew_proto::{EntityTag, Key};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::Record;

/// Last 8 bytes of every object file.
const MAGIC: &[u8; 8] = b"CACHEWD1";
/// JSON length, body length, magic.
const FIXED_TRAILER: u64 = 24;
/// Metadata larger than this is corruption, not headers.
const MAX_META: u64 = 16 << 20;

/// The JSON part of an object file's trailer.
#[derive(Debug, Serialize, Deserialize)]
struct StoredMeta {
    /// The key, checked on read so a misplaced file is never served.
    key: String,
    etag: String,
    /// Seconds since the Unix epoch.
    last_modified: u64,
    /// Milliseconds since the Unix epoch.
    expires_ms: Option<u64>,
    /// The stored headers in order, repeated names included.
    headers: Vec<(String, StoredValue)>,
}

/// A header value: text when it is UTF-8, else its bytes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredValue {
    Text(String),
    Bytes(Vec<u8>),
}

/// A decoded trailer.
pub(super) struct Trailer {
    pub(super) record: Record,
    pub(super) expires_ms: Option<u64>,
}

pub(super) enum TrailerError {
    Io(io::Error),
    Corrupt(String),
    /// Written by another version of this format: not ours to serve or to
    /// remove.
    Foreign,
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn encode_trailer(
    key: &Key,
    record: &Record,
    expires: Option<SystemTime>,
) -> Result<Vec<u8>> {
    let headers = record
        .headers
        .iter()
        .map(|(name, value)| {
            let value = match value.to_str() {
                Ok(text) => StoredValue::Text(text.to_owned()),
                Err(_) => StoredValue::Bytes(value.as_bytes().to_vec()),
            };
            (name.as_str().to_owned(), value)
        })
        .collect();
    let meta = StoredMeta {
        key: key.to_hex(),
        etag: record.etag.as_str().to_owned(),
        last_modified: unix_ms(record.last_modified) / 1000,
        expires_ms: expires.map(unix_ms),
        headers,
    };
    let mut out = serde_json::to_vec(&meta)
        .map_err(|e| Error::Backend(format!("encode object metadata: {e}")))?;
    let json_len = out.len() as u64;
    out.extend_from_slice(&json_len.to_le_bytes());
    out.extend_from_slice(&record.size.to_le_bytes());
    out.extend_from_slice(MAGIC);
    Ok(out)
}

pub(super) fn read_trailer(
    file: &mut File,
    file_len: u64,
    key: &Key,
) -> Result<Trailer, TrailerError> {
    let corrupt = |why: &str| Err(TrailerError::Corrupt(why.to_owned()));
    if file_len < FIXED_TRAILER {
        return corrupt("shorter than a trailer");
    }
    let mut fixed = [0u8; FIXED_TRAILER as usize];
    file.seek(SeekFrom::Start(file_len - FIXED_TRAILER))
        .and_then(|_| file.read_exact(&mut fixed))
        .map_err(TrailerError::Io)?;
    if &fixed[16..] != MAGIC {
        if fixed[16..].starts_with(&MAGIC[..7]) {
            return Err(TrailerError::Foreign);
        }
        return corrupt("no trailer magic");
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&fixed[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let (json_len, size) = (word(0), word(8));
    if json_len > MAX_META
        || size
            .checked_add(json_len)
            .and_then(|n| n.checked_add(FIXED_TRAILER))
            != Some(file_len)
    {
        return corrupt("lengths do not add up to the file's");
    }
    let mut json = vec![0u8; json_len as usize];
    file.seek(SeekFrom::Start(size))
        .and_then(|_| file.read_exact(&mut json))
        .map_err(TrailerError::Io)?;
    let meta: StoredMeta = match serde_json::from_slice(&json) {
        Ok(meta) => meta,
        Err(_) => return corrupt("metadata is not valid JSON"),
    };
    if meta.key != key.to_hex() {
        return corrupt("metadata names another key");
    }
    let Ok(etag) = EntityTag::new(meta.etag) else {
        return corrupt("invalid stored ETag");
    };
    let mut headers = HeaderMap::new();
    for (name, value) in meta.headers {
        let value = match value {
            StoredValue::Text(text) => HeaderValue::from_str(&text),
            StoredValue::Bytes(bytes) => HeaderValue::from_bytes(&bytes),
        };
        match (HeaderName::from_bytes(name.as_bytes()), value) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => return corrupt("invalid stored header"),
        }
    }
    Ok(Trailer {
        record: Record {
            headers,
            etag,
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(meta.last_modified),
            size,
        },
        expires_ms: meta.expires_ms,
    })
}

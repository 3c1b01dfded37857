//! `--json`: one JSON object on stdout per command (`save`, `restore`,
//! `stat`, `stats`, `namespaces`), in the schema of `docs/JSON.md`.
//!
//! Status lines stay on stderr, so `cachew restore … --json | jq` reads
//! nothing but the object. Field names are stable: new fields may be
//! added, none is renamed or removed.

use std::time::Duration;

use cachew_client::{Key, ObjectMeta};
use serde_json::{json, Map, Value};

/// Schema version, bumped only for an incompatible change.
pub(crate) const VERSION: u64 = 1;

/// `"exact"`, `"fallback"` or `"miss"`: how a restore matched.
pub(crate) fn match_kind(index: Option<usize>) -> &'static str {
    match index {
        Some(0) => "exact",
        Some(_) => "fallback",
        None => "miss",
    }
}

/// The result of a `restore`.
#[derive(Debug, Default)]
pub(crate) struct RestoreReport<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) key_text: &'a str,
    pub(crate) key: Option<&'a Key>,
    /// Position of the key that hit (0 = primary), `None` on a miss.
    pub(crate) index: Option<usize>,
    pub(crate) matched_text: Option<&'a str>,
    pub(crate) matched: Option<&'a Key>,
    pub(crate) bytes: u64,
    pub(crate) file_bytes: u64,
    pub(crate) entries: u64,
    pub(crate) seconds: Duration,
    pub(crate) lookup_only: bool,
    pub(crate) verified: bool,
}

impl RestoreReport<'_> {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "version": VERSION,
            "command": "restore",
            "namespace": self.namespace,
            "key": self.key_text,
            "key_hex": self.key.map(Key::to_hex),
            "result": match_kind(self.index),
            "cache_hit": self.index == Some(0),
            "matched_key": self.matched_text,
            "matched_key_hex": self.matched.map(Key::to_hex),
            "bytes": self.bytes,
            "file_bytes": self.file_bytes,
            "entries": self.entries,
            "seconds": secs(self.seconds),
            "lookup_only": self.lookup_only,
            "verified": self.verified,
        })
    }
}

/// The result of a `save`.
#[derive(Debug, Default)]
pub(crate) struct SaveReport<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) key_text: &'a str,
    pub(crate) key: Option<&'a Key>,
    /// `"uploaded"`, `"unchanged"` or `"skipped"` (read-only).
    pub(crate) result: &'a str,
    pub(crate) bytes: u64,
    pub(crate) uncompressed_bytes: u64,
    pub(crate) entries: u64,
    pub(crate) seconds: Duration,
}

impl SaveReport<'_> {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "version": VERSION,
            "command": "save",
            "namespace": self.namespace,
            "key": self.key_text,
            "key_hex": self.key.map(Key::to_hex),
            "result": self.result,
            "bytes": self.bytes,
            "uncompressed_bytes": self.uncompressed_bytes,
            "entries": self.entries,
            "seconds": secs(self.seconds),
        })
    }
}

/// `stat`: the key and the headers, each name (lower case) to its values.
pub(crate) fn stat(namespace: &str, key_text: &str, key: &Key, meta: &ObjectMeta) -> Value {
    let mut headers = Map::new();
    for name in meta.headers.keys() {
        let values: Vec<Value> = meta
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::from(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        headers.insert(name.as_str().to_owned(), Value::from(values));
    }
    json!({
        "version": VERSION,
        "command": "stat",
        "namespace": namespace,
        "key": key_text,
        "key_hex": key.to_hex(),
        "bytes": meta.size,
        "headers": headers,
    })
}

/// `stats`.
pub(crate) fn stats(objects: i64, size: i64, capacity: i64) -> Value {
    json!({
        "version": VERSION,
        "command": "stats",
        "objects": objects,
        "bytes": size,
        "capacity": capacity,
    })
}

/// `namespaces`.
pub(crate) fn namespaces(names: &[String]) -> Value {
    json!({ "version": VERSION, "command": "namespaces", "namespaces": names })
}

/// Prints `value` as one line on stdout.
pub(crate) fn print(value: &Value) {
    println!("{value}");
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_fields() {
        let k = Key::new("k");
        let v = RestoreReport {
            namespace: "ns",
            key_text: "k",
            key: Some(&k),
            index: Some(1),
            matched_text: Some("old"),
            seconds: Duration::from_millis(1234),
            ..RestoreReport::default()
        }
        .to_json();
        assert_eq!(v["result"], "fallback");
        assert_eq!(v["cache_hit"], false);
        assert_eq!(v["key_hex"], k.to_hex());
        assert_eq!(v["matched_key"], "old");
        assert_eq!(v["seconds"], 1.234);
        assert_eq!(match_kind(None), "miss");
        assert_eq!(match_kind(Some(0)), "exact");
    }
}

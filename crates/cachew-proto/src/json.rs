use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Health and usage statistics of a cache (`GET /api/v1/stats`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Number of objects in the cache.
    pub objects: i64,
    /// Total size of all objects, in bytes.
    pub size: i64,
    /// Maximum size of the cache in bytes, 0 if unlimited.
    pub capacity: i64,
}

/// What a caller needs present on the server's git mirror
/// (`POST …/ensure-refs`). At least one field must be non-empty.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureGitRefsRequest {
    /// Required refs (e.g. `refs/heads/main`) and their expected SHA; an empty
    /// SHA means "the ref must exist at any SHA".
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub refs: BTreeMap<String, String>,
    /// Commits that must exist in the mirror's object database.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub commits: Vec<String>,
}

impl EnsureGitRefsRequest {
    /// Whether the request asks for nothing (the server answers 400).
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty() && self.commits.is_empty()
    }
}

/// The answer to [`EnsureGitRefsRequest`].
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureGitRefsResponse {
    /// The mirror's SHA for each requested ref, empty when it is still missing.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub refs: BTreeMap<String, String>,
    /// Requested commits still absent after any fetch.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub missing_commits: Vec<String>,
    /// Whether the server fetched from upstream.
    #[serde(default)]
    pub fetched: bool,
}

/// Go encodes nil maps and slices as `null`; treat that as empty.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_field_names() {
        let s = Stats {
            objects: 3,
            size: 42,
            capacity: 0,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"objects":3,"size":42,"capacity":0}"#
        );
        let back: Stats =
            serde_json::from_str(r#"{"objects":1,"size":2,"capacity":3,"extra":true}"#).unwrap();
        assert_eq!(
            back,
            Stats {
                objects: 1,
                size: 2,
                capacity: 3
            }
        );
    }

    #[test]
    fn ensure_refs_omits_empty_fields() {
        let mut req = EnsureGitRefsRequest::default();
        assert!(req.is_empty());
        req.commits.push("abc".into());
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"commits":["abc"]}"#
        );
        req.refs.insert("refs/heads/main".into(), String::new());
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"refs":{"refs/heads/main":""},"commits":["abc"]}"#
        );
        let resp = EnsureGitRefsResponse::default();
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"fetched":false}"#
        );
    }

    #[test]
    fn null_lists_decode_as_empty() {
        let resp: EnsureGitRefsResponse =
            serde_json::from_str(r#"{"refs":null,"missing_commits":null,"fetched":true}"#).unwrap();
        assert!(resp.refs.is_empty() && resp.missing_commits.is_empty() && resp.fetched);
        let resp: EnsureGitRefsResponse =
            serde_json::from_str(r#"{"refs":{"refs/heads/main":"abc"},"missing_commits":["d"]}"#)
                .unwrap();
        assert_eq!(resp.refs["refs/heads/main"], "abc");
        assert_eq!(resp.missing_commits, vec!["d".to_owned()]);
        assert!(!resp.fetched);
        let req: EnsureGitRefsRequest =
            serde_json::from_str(r#"{"refs":null,"commits":null}"#).unwrap();
        assert!(req.is_empty());
    }
}

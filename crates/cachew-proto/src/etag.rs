use std::fmt;
use std::str::FromStr;

use crate::error::{ProtoError, Reason};

/// A strong entity tag: its raw value (without quotes).
///
/// Raw values are restricted to `[A-Za-z0-9._\-:/+=]`, non-empty, so they
/// never need escaping; on the wire an ETag is the quoted form `"value"`
/// ([RFC 9110 §8.8.3](https://www.rfc-editor.org/rfc/rfc9110#section-8.8.3)).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EntityTag(String);

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/' | b'+' | b'=')
}

impl EntityTag {
    /// Validates a raw ETag value (no quotes).
    pub fn new(raw: impl Into<String>) -> Result<EntityTag, ProtoError> {
        let raw = raw.into();
        let reason = if raw.is_empty() {
            Some("it is empty")
        } else if !raw.bytes().all(allowed) {
            Some("it may contain only ASCII letters, digits and . _ - : / + =")
        } else {
            None
        };
        match reason {
            Some(r) => Err(ProtoError::InvalidEtag {
                value: raw,
                reason: Reason(r),
            }),
            None => Ok(EntityTag(raw)),
        }
    }

    /// Parses a single ETag header value such as `"abc"`. A weak tag
    /// (`W/"abc"`) is accepted and treated as its strong value, since stored
    /// ETags are always strong.
    pub fn parse_header(value: &str) -> Result<EntityTag, ProtoError> {
        let trimmed = value.trim();
        let unweak = trimmed.strip_prefix("W/").unwrap_or(trimmed);
        match unweak
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
        {
            Some(inner) => EntityTag::new(inner).map_err(|_| ProtoError::InvalidEtag {
                value: value.to_owned(),
                reason: Reason(
                    "the quoted value may contain only ASCII letters, digits and . _ - : / + =",
                ),
            }),
            None => Err(ProtoError::InvalidEtag {
                value: value.to_owned(),
                reason: Reason("expected a quoted entity tag such as \"abc\""),
            }),
        }
    }

    /// The raw value, without quotes.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The header form, `"value"`.
    pub fn to_header(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for EntityTag {
    /// Writes the header form, `"value"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

impl fmt::Debug for EntityTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntityTag({:?})", self.0)
    }
}

impl FromStr for EntityTag {
    type Err = ProtoError;

    /// Accepts either the header form (`"abc"`) or a raw value (`abc`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim_start().starts_with('"') || s.trim_start().starts_with("W/") {
            EntityTag::parse_header(s)
        } else {
            EntityTag::new(s)
        }
    }
}

/// The value of an `If-Match` or `If-None-Match` header: `*` or a list of tags
/// ([RFC 9110 §13.1.1](https://www.rfc-editor.org/rfc/rfc9110#section-13.1.1)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagCondition {
    /// `*`: matches any existing object.
    Any,
    /// A comma-separated list of tags; matches when one equals the stored tag.
    List(Vec<EntityTag>),
}

impl EtagCondition {
    /// A condition of a single tag.
    pub fn one(tag: EntityTag) -> EtagCondition {
        EtagCondition::List(vec![tag])
    }

    /// Parses a header value: `*` or `"a", W/"b"`.
    pub fn parse_header(value: &str) -> Result<EtagCondition, ProtoError> {
        if value.trim() == "*" {
            return Ok(EtagCondition::Any);
        }
        let tags = value
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(EntityTag::parse_header)
            .collect::<Result<Vec<_>, _>>()?;
        if tags.is_empty() {
            return Err(ProtoError::InvalidEtag {
                value: value.to_owned(),
                reason: Reason("expected * or a comma-separated list of quoted entity tags"),
            });
        }
        Ok(EtagCondition::List(tags))
    }

    /// Whether the condition matches an object whose stored tag is `stored`.
    pub fn matches(&self, stored: &EntityTag) -> bool {
        match self {
            EtagCondition::Any => true,
            EtagCondition::List(tags) => tags.iter().any(|t| t == stored),
        }
    }

    /// The header form.
    pub fn to_header(&self) -> String {
        match self {
            EtagCondition::Any => "*".to_owned(),
            EtagCondition::List(tags) => tags
                .iter()
                .map(EntityTag::to_header)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values() {
        for ok in ["abc", "a.b_c-d:e/f+g=h", "0", "sha256:ABCdef=="] {
            assert_eq!(EntityTag::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "a b", "\"a\"", "a,b", "é", "a\tb", "a;b"] {
            let err = EntityTag::new(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn header_round_trip() {
        let tag = EntityTag::new("v1").unwrap();
        assert_eq!(tag.to_header(), "\"v1\"");
        assert_eq!(tag.to_string(), "\"v1\"");
        assert_eq!(EntityTag::parse_header("\"v1\"").unwrap(), tag);
        assert_eq!(EntityTag::parse_header(" W/\"v1\" ").unwrap(), tag);
        assert!(EntityTag::parse_header("v1").is_err());
        assert!(EntityTag::parse_header("\"v1").is_err());
        assert!(EntityTag::parse_header("\"\"").is_err());
        assert_eq!("v1".parse::<EntityTag>().unwrap(), tag);
        assert_eq!("\"v1\"".parse::<EntityTag>().unwrap(), tag);
    }

    #[test]
    fn conditions() {
        let a = EntityTag::new("a").unwrap();
        let b = EntityTag::new("b").unwrap();
        assert_eq!(
            EtagCondition::parse_header("*").unwrap(),
            EtagCondition::Any
        );
        let list = EtagCondition::parse_header("\"a\", W/\"c\"").unwrap();
        assert!(list.matches(&a));
        assert!(!list.matches(&b));
        assert_eq!(list.to_header(), "\"a\", \"c\"");
        assert!(EtagCondition::Any.matches(&b));
        assert!(EtagCondition::parse_header("").is_err());
        assert!(EtagCondition::parse_header("a").is_err());
    }
}

use std::fmt;
use std::str::FromStr;

use crate::error::{ProtoError, Reason};

/// A logical partition of a cache (`PROTOCOL.md` §2).
///
/// Valid names match `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`; the default is `default`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    /// The namespace used when none is given.
    pub const DEFAULT: &'static str = "default";

    /// Validates `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Namespace, ProtoError> {
        let name = name.into();
        validate(&name)?;
        Ok(Namespace(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a namespace name without allocating (Go's `ValidateNamespace`).
pub(crate) fn validate(name: &str) -> Result<(), ProtoError> {
    let err = |reason| {
        Err(ProtoError::InvalidNamespace {
            name: name.to_owned(),
            reason: Reason(reason),
        })
    };
    let mut bytes = name.bytes();
    match bytes.next() {
        None => return err("it is empty"),
        Some(b) if !b.is_ascii_alphanumeric() => {
            return err("it must start with an ASCII letter or digit")
        }
        Some(_) => {}
    }
    if bytes.any(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-')) {
        return err("it may contain only ASCII letters, digits, '_' and '-'");
    }
    Ok(())
}

impl Default for Namespace {
    fn default() -> Namespace {
        Namespace(Namespace::DEFAULT.to_owned())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({:?})", self.0)
    }
}

impl FromStr for Namespace {
    type Err = ProtoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Namespace::new(s)
    }
}

impl TryFrom<String> for Namespace {
    type Error = ProtoError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Namespace::new(s)
    }
}

impl TryFrom<&str> for Namespace {
    type Error = ProtoError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Namespace::new(s)
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Namespace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Namespace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Namespace::new(name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let valid = [
            "default",
            "a",
            "A",
            "0",
            "9lives",
            "ci-cache",
            "ci_cache",
            "a-",
            "a_",
            "Z-_-9",
            "x".repeat(200).leak(),
        ];
        for name in valid {
            assert!(Namespace::new(name).is_ok(), "{name:?} should be valid");
        }
        let invalid = [
            ("", "empty"),
            ("-a", "start"),
            ("_a", "start"),
            (".a", "start"),
            ("a.b", "only"),
            ("a b", "only"),
            ("a/b", "only"),
            ("a:b", "only"),
            ("é", "start"),
            ("aé", "only"),
            ("a\n", "only"),
            (" a", "start"),
        ];
        for (name, why) in invalid {
            let err = Namespace::new(name).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{name:?}")),
                "{err} should quote {name:?}"
            );
            assert!(err.contains(why), "{err} should explain ({why})");
            assert!(
                err.contains("^[a-zA-Z0-9][a-zA-Z0-9_-]*$"),
                "{err} should name the rule"
            );
        }
    }

    #[test]
    fn default_and_serde() {
        assert_eq!(Namespace::default().as_str(), "default");
        let ns: Namespace = serde_json::from_str("\"ci\"").unwrap();
        assert_eq!(ns.as_str(), "ci");
        assert!(serde_json::from_str::<Namespace>("\"-x\"").is_err());
        assert_eq!(serde_json::to_string(&ns).unwrap(), "\"ci\"");
    }
}

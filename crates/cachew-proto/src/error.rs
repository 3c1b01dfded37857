use std::fmt;

/// A value that does not follow the protocol's rules.
///
/// Every variant quotes the rejected input and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A namespace name that does not match `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`.
    #[error("invalid namespace {name:?}: {reason} (expected a name matching ^[a-zA-Z0-9][a-zA-Z0-9_-]*$)")]
    InvalidNamespace {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: Reason,
    },
    /// An ETag value outside `[A-Za-z0-9._\-:/+=]+`, or a malformed ETag header.
    #[error("invalid ETag {value:?}: {reason}")]
    InvalidEtag {
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        reason: Reason,
    },
    /// A duration that Go's `time.ParseDuration` would not accept, or one
    /// that cannot be represented.
    #[error("invalid duration {input:?}: {reason} (expected Go duration syntax such as 90s, 1h30m or 1.5h)")]
    InvalidDuration {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: Reason,
    },
    /// A repository URL that cannot be mapped to a git endpoint.
    #[error("invalid repository URL {url:?}: {reason}")]
    InvalidRepoUrl {
        /// The rejected URL.
        url: String,
        /// What is wrong with it.
        reason: Reason,
    },
    /// A list-valued header (e.g. `x-cachew-tree-paths`) that is not a
    /// space-separated list of percent-encoded items.
    #[error("malformed list header {value:?}: {reason}")]
    InvalidHeaderList {
        /// The rejected header value.
        value: String,
        /// What is wrong with it.
        reason: Reason,
    },
    /// A bundle URL that is neither absolute nor root-relative.
    #[error("invalid bundle URL {url:?}: {reason}")]
    InvalidBundleUrl {
        /// The rejected URL.
        url: String,
        /// What is wrong with it.
        reason: Reason,
    },
}

/// A short, static explanation attached to a [`ProtoError`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub(crate) &'static str);

impl Reason {
    /// The explanation as text.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

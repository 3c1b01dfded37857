//! Cachew wire protocol types, with no I/O.
//!
//! This crate is the vocabulary every other cachew-rs crate shares: object
//! [`Key`]s and [`Namespace`]s, strong [`EntityTag`]s, the conditional and
//! range request options of the `/api/v1` object API ([`OpenOptions`]), header
//! names and the header filter lists, the JSON bodies ([`Stats`],
//! [`EnsureGitRefsRequest`], [`EnsureGitRefsResponse`]), Go duration syntax
//! ([`duration`]), the command line's key prefixes ([`prefix`]) and git endpoint
//! URLs ([`git`]), and the one URL redactor ([`redact_url`]).
//!
//! The rules implemented here are those of `PROTOCOL.md`, the wire contract
//! shared with the Go client and server.
//!
//! **Architecture invariant:** this crate depends on no I/O crate (no tokio,
//! no hyper); `cargo xtask ci` checks that.
//!
//! ```
//! use cachew_proto::{Key, Namespace};
//!
//! // Text that is not 64 hex digits is hashed with SHA-256.
//! let key: Key = "hello".parse().unwrap();
//! assert_eq!(
//!     key.to_string(),
//!     "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
//! );
//! let ns = Namespace::new("ci-cache_1").unwrap();
//! assert_eq!(ns.as_str(), "ci-cache_1");
//! assert!(Namespace::new("-bad").is_err());
//! ```

pub mod duration;
mod error;
mod etag;
pub mod git;
pub mod header;
mod json;
mod key;
mod namespace;
mod options;
pub mod prefix;
pub mod redact;

pub use error::{ProtoError, Reason};
pub use etag::{EntityTag, EtagCondition};
pub use json::{EnsureGitRefsRequest, EnsureGitRefsResponse, Stats};
pub use key::Key;
pub use namespace::Namespace;
pub use options::{ByteRange, CreateOptions, OpenOptions, Precondition, RangeResolution};
pub use redact::redact_url;

/// Result type of this crate.
pub type Result<T, E = ProtoError> = std::result::Result<T, E>;

//! Test helpers shared by the cachew-rs crates' tests, so that each crate's
//! tests use one definition instead of a copy or a `#[path]` include.
//!
//! - [`tree`]: snapshots and listings of directory trees, to compare a
//!   restored tree with its source, and small setters (mtime, mode).
//! - [`data`]: deterministic test data, compressible or not.
//! - [`shell`]: running the independent tools the tests check us against
//!   (GNU tar, zstd, git) through `sh`, and child-process test logs.
//! - [`s3`]: a real S3 server (SeaweedFS) on loopback for the object-store
//!   tests, skipped where `weed` is missing unless `CACHEW_REQUIRE_S3=1`.
//!
//! This crate depends on no cachew crate, so that any of them — even
//! `cachew-archive`'s own unit tests — can dev-depend on it without
//! building a second copy of itself. Not published.

pub mod data;
pub mod s3;
pub mod shell;
pub mod tree;

pub use data::{noise, random_bytes};
pub use shell::{child_log, gnu_list, is_root, sh, sh_in, zero_bomb_tar};
pub use tree::{assert_same_tree, chmod, fast_tempdir, list, set_mtime, snapshot, Node};

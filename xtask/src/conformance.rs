//! `cargo xtask conformance [--url URL] [--authorization V] [--backend memory|disk] [--filter TEXT]`:
//! runs the shared conformance suite through the remote client.
//!
//! The suite itself lives in `cachew_client::conformance`; the runner is the
//! `conformance` binary of the `cachew-tests` crate, so xtask stays free of
//! dependencies. Without `--url` the runner starts the reference server
//! (`cachew-server`) for every check; with it, it checks a live server such
//! as a `cachewd` deployment (checks that need a specially configured cache
//! are skipped and listed).

use std::process::Command;

/// Builds and runs the conformance runner with `args`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "run",
        "--quiet",
        "--package",
        "cachew-tests",
        "--bin",
        "conformance",
        "--",
    ])
    .args(args);
    crate::run(&mut cmd).map_err(|e| format!("conformance failed ({e})"))
}

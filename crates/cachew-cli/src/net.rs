//! Network flags: trust and the stall timeout, flattened into the global
//! flags (`cli.rs`) and applied wherever a remote cache is built
//! (`backend.rs`, `git_restore.rs`).
//!
//! Proxies (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`), `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` need no flag: the transport reads them as Go does
//! (`docs/NETWORK.md`).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use cachew_client::RemoteCacheBuilder;
use clap::Args;

/// `--ca-cert` and `--timeout`; each also read from `CACHEW_<FLAG>`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct NetArgs {
    /// PEM file of CA certificates to trust for https://, on top of the
    /// system store (e.g. a company CA).
    #[arg(long, value_name = "FILE", env = "CACHEW_CA_CERT", global = true)]
    pub(crate) ca_cert: Option<PathBuf>,

    /// Fail a transfer that delivers no bytes for this long, in Go
    /// duration syntax (e.g. 30s, 5m). Default 60s.
    #[arg(long, value_name = "DURATION", env = "CACHEW_TIMEOUT", global = true, value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = cachew_client::proto::duration::parse(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("the timeout must be positive".into());
    }
    Ok(d)
}

static NET: OnceLock<NetArgs> = OnceLock::new();

/// Records the parsed flags for [`configure`]; called once from `main`.
pub(crate) fn install(args: &NetArgs) {
    let _ = NET.set(args.clone());
}

/// Applies the flags to a remote cache about to be built.
pub(crate) fn configure(mut builder: RemoteCacheBuilder) -> RemoteCacheBuilder {
    let Some(net) = NET.get() else {
        return builder;
    };
    if let Some(ca) = &net.ca_cert {
        builder = builder.ca_certificate_file(ca);
    }
    if let Some(timeout) = net.timeout {
        builder = builder.idle_timeout(timeout);
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_use_go_duration_syntax() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}

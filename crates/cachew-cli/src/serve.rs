//! `cachew serve`: its flags (each also read from `CACHEW_<FLAG>`), the
//! start-up checks that keep an open server off the network, and running
//! the reference server over a directory — with its capacity, TTL cap,
//! periodic sweep and eviction metrics — until SIGTERM or SIGINT; or, with
//! `--store s3://…`, over an object store that any number of such
//! replicas share (`docs/SCALING.md`).
//!
//! The flags live here, not in `cli.rs`, so the server's surface can grow
//! without touching the Go-compatible client grammar.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cachew_client::{DiskCache, DiskCacheOptions};
use cachew_server::{Limits, MetricKind, Right, TlsConfig, Tokens};
use clap::builder::FalseyValueParser;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory};

use crate::cli::{Cli, Command};
use crate::Exit;
use anyhow::{anyhow, Context as _};

/// `serve --dir PATH | --store URL [--bind ADDR] …`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Directory holding the cache (created if missing).
    #[arg(
        long,
        env = "CACHEW_DIR",
        value_name = "PATH",
        required_unless_present = "store",
        conflicts_with = "store"
    )]
    pub(crate) dir: Option<PathBuf>,

    /// Serve from an object store instead of a directory:
    /// s3://BUCKET/PREFIX (credentials, region and AWS_ENDPOINT_URL from
    /// the standard AWS variables), gs://BUCKET/PREFIX, az://CONTAINER/PREFIX.
    /// Replicas on one store serve the same objects; --max-size does not
    /// apply (use the bucket's lifecycle rules).
    #[arg(long, env = "CACHEW_STORE", value_name = "URL")]
    pub(crate) store: Option<String>,

    /// Address to listen on. Any address but a loopback one needs
    /// --token-file (or --authorization), or --allow-anonymous.
    #[arg(
        long,
        env = "CACHEW_BIND",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub(crate) bind: String,

    /// Also serve the /git/ endpoints (snapshots, bundles, ensure-refs,
    /// and git's smart HTTP for `git clone`/`git fetch`) for the plain git
    /// repositories under DIR: repository URL
    /// `https://host/org/repo` is `DIR/host/org/repo`.
    #[arg(long, env = "CACHEW_GIT_ROOT", value_name = "DIR")]
    pub(crate) git_root: Option<PathBuf>,

    /// Accept only the bearer tokens in FILE: one per line, `TOKEN
    /// [read|write [NAMESPACE-GLOB]]` (a bare token may write everything;
    /// `#` comments). The global --authorization "Bearer TOKEN", if given,
    /// is accepted too, with write access to every namespace.
    #[arg(long, env = "CACHEW_TOKEN_FILE", value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,

    /// Serve a non-loopback address without tokens: anyone who can reach
    /// it can read and overwrite every object.
    #[arg(long, env = "CACHEW_ALLOW_ANONYMOUS", value_parser = FalseyValueParser::new())]
    pub(crate) allow_anonymous: bool,

    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(
        long,
        env = "CACHEW_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "CACHEW_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,

    /// Time a client has to send a request's headers (Go duration).
    #[arg(long, env = "CACHEW_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) header_timeout: Duration,

    /// Time a keep-alive connection may stay idle between requests.
    #[arg(long, env = "CACHEW_IDLE_TIMEOUT", default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) idle_timeout: Duration,

    /// Time an upload may go without sending a byte before it is aborted
    /// (and a download may wait for a client that stopped reading).
    #[arg(long, env = "CACHEW_BODY_TIMEOUT", default_value = "1m", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) body_timeout: Duration,

    /// On SIGTERM or SIGINT, time in-flight requests get to finish.
    #[arg(long, env = "CACHEW_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) shutdown_timeout: Duration,

    /// Open connections at most; more wait to be accepted.
    #[arg(long, env = "CACHEW_MAX_CONNECTIONS", default_value_t = cachew_server::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub(crate) max_connections: usize,

    /// Open connections from one client address at most; more are closed.
    /// Raise it when many clients share an address (NAT, a proxy).
    #[arg(long, env = "CACHEW_MAX_CONNECTIONS_PER_CLIENT", default_value_t = cachew_server::DEFAULT_MAX_CONNECTIONS_PER_CLIENT, value_name = "N")]
    pub(crate) max_connections_per_client: usize,

    /// Largest object an upload may create, e.g. 512MiB, 10GB (0 = no
    /// limit). Larger uploads get 413 and are discarded.
    #[arg(long, env = "CACHEW_MAX_OBJECT_SIZE", default_value = "0", value_parser = crate::size::parse_size, value_name = "SIZE")]
    pub(crate) max_object_size: u64,

    /// Bytes the cache may hold on disk, e.g. 3MiB or 20GB (`KiB`, `MiB`,
    /// `GiB`, `TiB` and bare `K`, `M`, `G`, `T` are binary; `KB`, `MB`, `GB`,
    /// `TB` decimal; 0 = no limit). Least recently read objects are evicted
    /// to make room.
    #[arg(long, env = "CACHEW_MAX_SIZE", default_value = "0", value_parser = crate::size::parse_size, value_name = "SIZE")]
    pub(crate) max_size: u64,

    /// Longest time to live an object may have; longer requested TTLs
    /// (and the 7-day default) are cut to it (0 = no cap).
    #[arg(long, env = "CACHEW_MAX_TTL", default_value = "0", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) max_ttl: Duration,

    /// How often to remove expired objects and abandoned uploads from the
    /// directory (also done at start-up; 0 = only at start-up).
    #[arg(long, env = "CACHEW_SWEEP_INTERVAL", default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) sweep_interval: Duration,

    /// Log every request at info level (method, path, status, bytes, ms,
    /// client, token id), whatever --log-level says.
    #[arg(long, env = "CACHEW_ACCESS_LOG", default_value = "true", value_parser = FalseyValueParser::new(), action = clap::ArgAction::Set, value_name = "BOOL")]
    pub(crate) access_log: bool,
}

/// The tracing directive `main` adds for `serve`, so the access log is
/// written even at the default `--log-level warn`.
pub(crate) fn log_directive(cli: &Cli) -> Option<&'static str> {
    match &cli.command {
        Command::Serve(args) if args.access_log => Some("cachew_server::access=info"),
        _ => None,
    }
}

/// The usage checks clap cannot express; a failure is reported and exits
/// like any other usage error.
pub(crate) fn check_usage(cli: Cli) -> Result<Cli, clap::Error> {
    let Command::Serve(args) = &cli.command else {
        return Ok(cli);
    };
    let authorization = cli.global.authorization.as_deref();
    if authorization.is_some_and(|a| cachew_server::bearer_token(a).is_none()) {
        return Err(usage_error(
            ErrorKind::InvalidValue,
            "for serve, --authorization must be \"Bearer TOKEN\": the server accepts that token",
        ));
    }
    let has_tokens = args.token_file.is_some() || authorization.is_some();
    if !has_tokens && !args.allow_anonymous && !is_loopback(&args.bind) {
        return Err(usage_error(
            ErrorKind::MissingRequiredArgument,
            &format!(
                "refusing to serve {} without access control: anyone who can reach it could \
                 read and overwrite every cached object (and so the files CI jobs restore). \
                 Give --token-file FILE, or --allow-anonymous if the network is trusted, \
                 or bind a loopback address such as 127.0.0.1:8080",
                args.bind
            ),
        ));
    }
    Ok(cli)
}

fn usage_error(kind: ErrorKind, message: &str) -> clap::Error {
    let mut cmd = Cli::command();
    cmd.build();
    match cmd.find_subcommand_mut("serve") {
        Some(serve) => serve.error(kind, message),
        None => cmd.error(kind, message),
    }
}

/// Whether every address `bind` names is a loopback one. An address that
/// does not resolve is left to fail when it is bound.
fn is_loopback(bind: &str) -> bool {
    match bind.to_socket_addrs() {
        Ok(addrs) => addrs.into_iter().all(|a| a.ip().is_loopback()),
        Err(_) => true,
    }
}

/// Runs the server until SIGTERM or SIGINT, then drains it and exits 0.
pub(crate) async fn run(args: ServeArgs, authorization: Option<&str>) -> anyhow::Result<Exit> {
    let mut tokens = match &args.token_file {
        Some(path) => {
            let tokens = Tokens::from_file(path)?;
            if tokens.is_empty() {
                return Err(anyhow!("{}: the token file holds no token", path.display()));
            }
            tokens
        }
        None => Tokens::new(),
    };
    if let Some(token) = authorization.and_then(cachew_server::bearer_token) {
        tokens.add("--authorization", token, Right::Write, "*");
    }
    let (served, mut builder, sweeper) = match (&args.store, &args.dir) {
        (Some(url), _) => {
            let options = cachew_objstore::ObjectStoreOptions::default()
                .with_default_ttl(crate::backend::DEFAULT_TTL)
                .with_max_ttl(args.max_ttl);
            let cache = cachew_objstore::open_url(url, options)?;
            let sweeper = tokio::spawn(sweep_store(cache.clone(), args.sweep_interval));
            let builder = cachew_server::Server::builder(Arc::new(cache));
            (url.clone(), builder, sweeper)
        }
        (None, Some(dir)) => {
            let (builder, sweeper) = disk_server(dir, &args)?;
            (dir.display().to_string(), builder, sweeper)
        }
        (None, None) => return Err(anyhow!("serve needs --dir PATH or --store URL")),
    };
    let limits = Limits::default()
        .with_header_timeout(args.header_timeout)
        .with_idle_timeout(args.idle_timeout)
        .with_body_timeout(args.body_timeout)
        .with_max_connections(args.max_connections)
        .with_max_connections_per_client(args.max_connections_per_client)
        .with_max_object_size((args.max_object_size > 0).then_some(args.max_object_size));
    builder = builder.limits(limits).grace_period(args.shutdown_timeout);
    let access = if tokens.is_empty() {
        "anonymous access".to_owned()
    } else {
        let n = tokens.len();
        builder = builder.tokens(tokens);
        format!("{n} token grant{}", if n == 1 { "" } else { "s" })
    };
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        builder = builder.tls(TlsConfig::from_pem_files(cert, key)?);
    }
    if let Some(root) = args.git_root {
        builder = builder.git_root(root);
    }
    builder = crate::observe::configure_server(builder)?;
    let signal = cachew_server::signal()?;
    let server = builder
        .bind(args.bind.as_str())
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    // Always said, even with --quiet: a script needs the address.
    eprintln!(
        "cachew: serving {served} at {} with {access} (SIGTERM or Ctrl-C to stop)",
        server.url()
    );
    let signal = signal.await;
    eprintln!(
        "cachew: {signal}: shutting down; in-flight requests get {}",
        cachew_proto::duration::format(args.shutdown_timeout)
    );
    sweeper.abort();
    server.shutdown().await;
    Ok(Exit::Success)
}

/// The server over the disk cache in `dir`, with its capacity, TTL cap,
/// sweep task and eviction metrics.
fn disk_server(
    dir: &std::path::Path,
    args: &ServeArgs,
) -> anyhow::Result<(cachew_server::ServerBuilder, tokio::task::JoinHandle<()>)> {
    let options = DiskCacheOptions::default()
        .with_capacity(args.max_size)
        .with_max_ttl(args.max_ttl);
    let cache = DiskCache::open_with(dir, options)?;
    let sweeper = tokio::spawn(sweep(cache.clone(), args.sweep_interval));
    let (evicted, expired) = (cache.clone(), cache.clone());
    let builder = cachew_server::Server::builder(Arc::new(cache))
        .metric(
            "cachew_evictions_total",
            "Objects evicted to stay under --max-size.",
            MetricKind::Counter,
            move || evicted.counters().evictions,
        )
        .metric(
            "cachew_expired_total",
            "Expired objects removed (by the sweep or when requested).",
            MetricKind::Counter,
            move || expired.counters().expired,
        );
    Ok((builder, sweeper))
}

/// Sweeps `cache` now and then every `every` (never again if zero); a
/// failed sweep is logged and retried at the next interval.
async fn sweep(cache: DiskCache, every: Duration) {
    loop {
        let handle = cache.clone();
        match tokio::task::spawn_blocking(move || handle.sweep()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "sweeping the cache failed"),
            Err(e) => tracing::warn!(error = %e, "the cache sweep stopped"),
        }
        if every.is_zero() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

/// Sweeps the object store now and then every `every`: expired objects
/// and orphaned sidecars (a bucket lifecycle rule can do it instead).
async fn sweep_store(cache: cachew_objstore::ObjectStoreCache, every: Duration) {
    loop {
        if let Err(e) = cache.sweep().await {
            tracing::warn!(error = %e, "sweeping the object store failed");
        }
        if every.is_zero() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    cachew_proto::duration::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(args).and_then(check_usage)
    }

    #[test]
    fn anonymous_is_refused_off_loopback_only() {
        let serve = ["cachew", "serve", "--dir", "/tmp/x"];
        assert!(parse(&serve).is_ok(), "loopback by default");
        let public = [&serve[..], &["--bind", "0.0.0.0:0"]].concat();
        let e = parse(&public).unwrap_err().to_string();
        assert!(
            e.contains("without access control") && e.contains("--token-file"),
            "{e}"
        );
        assert!(parse(&[&public[..], &["--allow-anonymous"]].concat()).is_ok());
        assert!(parse(&[&public[..], &["--token-file", "t"]].concat()).is_ok());
        let with_auth = [&["cachew", "--authorization", "Bearer x"][..], &public[1..]].concat();
        assert!(parse(&with_auth).is_ok());
        let basic = [&["cachew", "--authorization", "Basic x"][..], &serve[1..]].concat();
        assert!(parse(&basic)
            .unwrap_err()
            .to_string()
            .contains("Bearer TOKEN"));
        assert!(parse(&["cachew", "serve", "--dir", "d", "--bind", "[::1]:0"]).is_ok());
    }

    #[test]
    fn tls_needs_both_files_and_defaults_are_documented_ones() {
        assert!(parse(&["cachew", "serve", "--dir", "d", "--tls-cert", "c"]).is_err());
        let cli = parse(&["cachew", "serve", "--dir", "d"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(args.header_timeout, cachew_server::DEFAULT_HEADER_TIMEOUT);
        assert_eq!(args.idle_timeout, cachew_server::DEFAULT_IDLE_TIMEOUT);
        assert_eq!(args.body_timeout, cachew_server::DEFAULT_BODY_TIMEOUT);
        assert_eq!(args.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(args.max_object_size, 0);
        assert_eq!((args.max_size, args.max_ttl), (0, Duration::ZERO));
        assert_eq!(args.sweep_interval, Duration::from_secs(600));
        assert!(args.access_log);
    }
}

//! Runs the shared conformance suite (`cachew_client::conformance`) through
//! the remote `Cache` against a Cachew server; `cargo xtask conformance`
//! calls it.
//!
//! ```text
//! conformance [--url URL] [--authorization VALUE] [--backend memory|disk] [--filter TEXT]
//! ```
//!
//! Without `--url` it starts the reference server (`cachew-server`) on
//! `127.0.0.1:0` for every check, backed by a fresh memory (or disk) cache
//! configured as the check asks, so every check runs. With `--url` it checks
//! a live server, e.g. a `cachewd` deployment; checks that need a specially
//! configured cache (a short default or maximum TTL, a small capacity, a
//! known capacity for statistics) are reported as skipped, because a live
//! server's configuration is its own. `--authorization` (or
//! `CACHEW_AUTHORIZATION`) is sent with every request. Checks use fresh,
//! unique keys and namespaces, so a shared server is safe to check; they do
//! leave small objects behind, which expire with the server's default TTL.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use cachew_client::conformance::{self, Harness, Setup, CHECKS};
use cachew_client::{Cache, DiskCache, DiskCacheOptions, MemoryCache, RemoteCache};
use cachew_server::{RunningServer, Server};

const USAGE: &str = "usage: conformance [--url URL] [--authorization VALUE] [--backend memory|disk] [--filter TEXT]";

struct Args {
    url: Option<String>,
    authorization: Option<String>,
    backend: String,
    filter: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: None,
        authorization: std::env::var("CACHEW_AUTHORIZATION")
            .ok()
            .filter(|v| !v.is_empty()),
        backend: "memory".to_owned(),
        filter: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match name.as_str() {
            "--url" => args.url = Some(value()?),
            "--authorization" => args.authorization = Some(value()?),
            "--backend" => args.backend = value()?,
            "--filter" => args.filter = Some(value()?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if !matches!(args.backend.as_str(), "memory" | "disk") {
        return Err(format!(
            "--backend must be memory or disk, not {:?}",
            args.backend
        ));
    }
    Ok(args)
}

fn remote(url: &str, authorization: Option<&str>) -> Result<RemoteCache, String> {
    let mut builder = RemoteCache::builder(url);
    if let Some(value) = authorization {
        builder = builder.authorization(value);
    }
    builder.build().map_err(|e| e.to_string())
}

/// A backend for `setup`, as the crate's own conformance tests build them.
fn backend(kind: &str, setup: &Setup, dir: &std::path::Path) -> Result<Arc<dyn Cache>, String> {
    if kind == "disk" {
        let mut options = DiskCacheOptions::default()
            .with_capacity(setup.capacity.unwrap_or(0))
            .with_default_ttl(setup.default_ttl.unwrap_or_default());
        if let Some(ttl) = setup.max_ttl {
            options = options.with_max_ttl(ttl);
        }
        let cache = DiskCache::open_with(dir, options).map_err(|e| e.to_string())?;
        return Ok(Arc::new(cache));
    }
    let mut cache = MemoryCache::new(setup.capacity.unwrap_or(64 << 20));
    if let Some(ttl) = setup.default_ttl {
        cache = cache.with_default_ttl(ttl);
    }
    if let Some(ttl) = setup.max_ttl {
        cache = cache.with_max_ttl(ttl);
    }
    Ok(Arc::new(cache))
}

async fn run(args: Args) -> Result<(usize, usize, usize), String> {
    let harness = Harness::default();
    let scratch = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let target = match &args.url {
        Some(url) => {
            let cache = remote(url, args.authorization.as_deref())?;
            // A first request that fails says more than 33 failed checks.
            match cache
                .stat(
                    &cachew_client::Key::new("cachew-conformance/probe"),
                    &Default::default(),
                )
                .await
            {
                Ok(_) | Err(cachew_client::Error::NotFound) => {}
                Err(e) => return Err(format!("{url} does not answer the object API: {e}")),
            }
            format!("{cache}")
        }
        None => format!("the reference server over a {} cache", args.backend),
    };
    eprintln!("conformance: checking {target}");
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (n, check) in CHECKS.iter().enumerate() {
        if args
            .filter
            .as_ref()
            .is_some_and(|f| !check.name.contains(f.as_str()))
        {
            continue;
        }
        let setup = (check.setup)(&harness);
        let mut server: Option<RunningServer> = None;
        let cache: Arc<dyn Cache> = match &args.url {
            Some(url) => {
                if setup != Setup::default() {
                    println!(
                        "SKIP {:<36} needs a server configured with {setup:?}",
                        check.name
                    );
                    skipped += 1;
                    continue;
                }
                Arc::new(remote(url, args.authorization.as_deref())?)
            }
            None => {
                let dir = scratch.path().join(format!("check-{n}"));
                let running = Server::new(backend(&args.backend, &setup, &dir)?)
                    .bind("127.0.0.1:0")
                    .await
                    .map_err(|e| format!("start the reference server: {e}"))?;
                let cache = remote(&running.url(), args.authorization.as_deref())?;
                server = Some(running);
                Arc::new(cache)
            }
        };
        let started = Instant::now();
        let outcome = conformance::run_check(check, cache.as_ref(), &harness).await;
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(()) => {
                println!("PASS {:<36} {ms:>6} ms", check.name);
                passed += 1;
            }
            Err(message) => {
                println!(
                    "FAIL {:<36} {ms:>6} ms\n     {}",
                    check.name,
                    message.replace('\n', "\n     ")
                );
                failed += 1;
            }
        }
        if let Some(server) = server {
            server.shutdown().await;
        }
    }
    Ok((passed, failed, skipped))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok((passed, failed, skipped)) => {
            println!("conformance: {passed} passed, {failed} failed, {skipped} skipped");
            if failed == 0 && passed > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(msg) => {
            eprintln!("conformance: {msg}");
            ExitCode::FAILURE
        }
    }
}

//! The commands, each a small function over `dyn Cache`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cachew_client::{
    restore, save, Cache, CreateOptions, Error, Key, Namespace, OpenOptions, Progress,
    RestoreOptions, RestoreOutcome, SaveOptions, SaveOutcome,
};
use cachew_proto::header::go_quote;
use http::header::{HeaderName, HeaderValue, CONTENT_DISPOSITION};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::backend::Target;
use crate::cli::{Cli, Command, RestoreArgs, SaveArgs};
use crate::keys::Prefixes;
use crate::progress::{self, Live, Mode};
use crate::signals::{Interrupted, Signals};
use crate::Exit;

/// A command's failure, shown as `cachew: error: …`.
pub(crate) type Failure = Box<dyn std::error::Error + Send + Sync>;

type Outcome = Result<Exit, Failure>;

/// Everything a command needs besides its arguments.
struct Ctx {
    target: Target,
    authorization: Option<String>,
    prefixes: Prefixes,
    mode: Mode,
    best_effort: bool,
}

impl Ctx {
    fn cache(&self, namespace: &str) -> Result<Arc<dyn Cache>, Failure> {
        // The namespace is checked before anything touches the backend.
        let ns = Namespace::new(namespace)?;
        let cache = self.target.open(self.authorization.as_deref())?;
        Ok(cache.with_namespace(ns))
    }
}

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> Outcome {
    let ctx = Ctx {
        target: Target::parse(&cli.global.url)?,
        authorization: cli.global.authorization.clone(),
        prefixes: Prefixes::from_flags(&cli.global),
        mode: Mode::detect(cli.global.quiet),
        best_effort: cli.global.best_effort,
    };
    match cli.command {
        Command::Get {
            namespace,
            key,
            output,
        } => get(&ctx, &namespace, &key, output.as_deref()).await,
        Command::Stat { namespace, key } => {
            let cache = ctx.cache(&namespace)?;
            let meta = cache
                .stat(&ctx.prefixes.key(&key), &OpenOptions::default())
                .await?;
            let mut out = String::new();
            for (name, value) in &meta.headers {
                out.push_str(&format!(
                    "{}: {}\n",
                    name,
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
            print!("{out}");
            Ok(Exit::Success)
        }
        Command::Put {
            namespace,
            key,
            file,
            ttl,
            headers,
        } => put(&ctx, &namespace, &key, file.as_deref(), ttl, &headers).await,
        Command::Delete { namespace, key } => {
            let cache = ctx.cache(&namespace)?;
            let k = ctx.prefixes.key(&key);
            cache.delete(&k).await?;
            ctx.mode.status(&format!("deleted {namespace}/{k}"));
            Ok(Exit::Success)
        }
        Command::Invalidate { namespace, key } => {
            let cache = ctx.cache(&namespace)?;
            let k = ctx.prefixes.key(&key);
            cache.invalidate(&k).await?;
            ctx.mode.status(&format!("invalidated {namespace}/{k}"));
            Ok(Exit::Success)
        }
        Command::Namespaces => {
            let cache = ctx.target.open(ctx.authorization.as_deref())?;
            let mut out = String::new();
            for ns in cache.list_namespaces().await? {
                out.push_str(&ns);
                out.push('\n');
            }
            print!("{out}");
            Ok(Exit::Success)
        }
        Command::Stats => {
            let cache = ctx.target.open(ctx.authorization.as_deref())?;
            let stats = cache.stats().await?;
            println!("objects: {}", stats.objects);
            println!(
                "size: {} ({})",
                stats.size,
                progress::bytes(stats.size.max(0) as u64)
            );
            let capacity = if stats.capacity > 0 {
                format!(
                    "{} ({})",
                    stats.capacity,
                    progress::bytes(stats.capacity as u64)
                )
            } else {
                "0 (unlimited)".to_owned()
            };
            println!("capacity: {capacity}");
            Ok(Exit::Success)
        }
        Command::Save(args) => save_cmd(&ctx, args).await,
        Command::Restore(args) => restore_cmd(&ctx, args).await,
        Command::Serve {
            dir,
            bind,
            git_root,
        } => serve(&ctx, &dir, &bind, git_root).await,
        Command::Gc { dir, max_depth } => crate::gc::run(&dir, max_depth, ctx.mode),
        Command::Git(git) => {
            let git_ctx = crate::git_restore::GitContext {
                url: &cli.global.url,
                authorization: cli.global.authorization.as_deref(),
                quiet: cli.global.quiet,
            };
            crate::git_restore::run(&git_ctx, git)
                .await
                .map(|()| Exit::Success)
        }
    }
}

/// The error and its causes, without repeating text a cause already put
/// into its parent's message.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Short form of a key for progress lines.
fn short(key: &Key) -> String {
    key.to_hex()[..12].to_owned()
}

async fn get(ctx: &Ctx, namespace: &str, key: &str, output: Option<&Path>) -> Outcome {
    let cache = ctx.cache(namespace)?;
    let object = cache
        .open(&ctx.prefixes.key(key), &OpenOptions::default())
        .await?;
    if ctx.mode != Mode::Quiet {
        let mut text = String::new();
        for (name, value) in &object.meta.headers {
            text.push_str(&format!(
                "{}: {}\n",
                name,
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        eprint!("{text}");
    }
    let mut body = object.body;
    match output {
        None => {
            let mut stdout = tokio::io::stdout();
            tokio::io::copy(&mut body, &mut stdout).await?;
            stdout.flush().await?;
        }
        Some(path) => {
            let result = async {
                let mut file = tokio::fs::File::create(path)
                    .await
                    .map_err(|e| Error::io("create", path, e))?;
                tokio::io::copy(&mut body, &mut file).await?;
                file.sync_all()
                    .await
                    .map_err(|e| Error::io("sync", path, e))?;
                Ok::<_, Error>(())
            }
            .await;
            if let Err(e) = result {
                // A partial download is not left behind as if it were whole.
                let _ = tokio::fs::remove_file(path).await;
                return Err(e.into());
            }
        }
    }
    Ok(Exit::Success)
}

fn parse_headers(pairs: &[String]) -> Result<HeaderMap, Failure> {
    let mut map = HeaderMap::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("invalid header {pair:?}: want NAME=VALUE"))?;
        let name = HeaderName::try_from(name.trim())
            .map_err(|_| format!("invalid header name in {pair:?}"))?;
        let value = HeaderValue::try_from(value.trim())
            .map_err(|_| format!("invalid header value in {pair:?}"))?;
        map.append(name, value);
    }
    Ok(map)
}

async fn put(
    ctx: &Ctx,
    namespace: &str,
    key: &str,
    file: Option<&Path>,
    ttl: Option<std::time::Duration>,
    headers: &[String],
) -> Outcome {
    let mut headers = parse_headers(headers)?;
    let cache = ctx.cache(namespace)?;
    let mut reader: Box<dyn AsyncRead + Send + Unpin> = match file {
        Some(path) => {
            let f = tokio::fs::File::open(path)
                .await
                .map_err(|e| Error::io("open", path, e))?;
            if !headers.contains_key(CONTENT_DISPOSITION) {
                if let Some(name) = path.file_name() {
                    let value =
                        format!("attachment; filename={}", go_quote(&name.to_string_lossy()));
                    if let Ok(v) = HeaderValue::try_from(value) {
                        headers.insert(CONTENT_DISPOSITION, v);
                    }
                }
            }
            Box::new(f)
        }
        None => Box::new(tokio::io::stdin()),
    };
    let mut options = CreateOptions::default();
    options.ttl = ttl;
    let k = ctx.prefixes.key(key);
    let started = Instant::now();
    let mut writer = cache.create(&k, headers, &options).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let copied: Result<(), Error> = async {
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            writer.write_all(&buf[..n]).await?;
            total += n as u64;
        }
    }
    .await;
    if let Err(e) = copied {
        let _ = writer
            .abort(Box::new(std::io::Error::other(e.to_string())))
            .await;
        return Err(e.into());
    }
    writer.commit().await?;
    ctx.mode.status(&format!(
        "uploaded {} to {namespace}/{k} in {}",
        progress::bytes(total),
        progress::duration(started.elapsed())
    ));
    Ok(Exit::Success)
}

async fn save_cmd(ctx: &Ctx, args: SaveArgs) -> Outcome {
    let cache = ctx.cache(&args.namespace)?;
    let key = ctx.prefixes.key_from(&args.key)?;
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let progress = Progress::new();
    let mut options = SaveOptions::default()
        .with_excludes(args.exclude.iter().cloned())
        .with_headers(parse_headers(&args.headers)?)
        .with_zstd_level(args.zstd_level)
        .with_zstd_threads(args.zstd_threads)
        .with_skip_unchanged(args.skip_unchanged)
        .with_no_digest(args.no_digest)
        .with_progress(progress.clone());
    if let Some(ttl) = args.ttl {
        options = options.with_ttl(ttl);
    }
    let started = Instant::now();
    let live = Live::start(
        ctx.mode,
        format!("save {}/{}", args.namespace, short(&key)),
        progress,
    );
    // A signal drops the save: its writer aborts, so nothing is uploaded.
    let mut signals = Signals::install()?;
    let result = tokio::select! {
        r = save(&*cache, &key, &args.dir, &paths, &options) => r,
        signal = signals.recv() => {
            live.finish().await;
            return Err(Box::new(Interrupted { signal, outcome: "nothing was uploaded" }));
        }
    };
    live.finish().await;
    let elapsed = started.elapsed();
    let result = match result {
        Err(e) if ctx.best_effort && is_cache_error(&e) => {
            best_effort_warning(&e);
            return Ok(Exit::Success);
        }
        r => r,
    };
    match result? {
        SaveOutcome::Uploaded {
            entries,
            uncompressed_bytes,
            compressed_bytes,
            ..
        } => ctx.mode.status(&format!(
            "saved {} to {}/{key}: {} compressed from {} ({entries} entries) in {} ({})",
            args.dir.display(),
            args.namespace,
            progress::bytes(compressed_bytes),
            progress::bytes(uncompressed_bytes),
            progress::duration(elapsed),
            progress::rate(uncompressed_bytes, elapsed),
        )),
        SaveOutcome::Unchanged { digest, .. } => ctx.mode.status(&format!(
            "unchanged: {}/{key} already holds this tree (digest {digest}); nothing uploaded",
            args.namespace
        )),
        other => ctx.mode.status(&format!("saved: {other:?}")),
    }
    Ok(Exit::Success)
}

async fn restore_cmd(ctx: &Ctx, args: RestoreArgs) -> Outcome {
    let cache = ctx.cache(&args.namespace)?;
    let mut keys = vec![ctx.prefixes.key_from(&args.key)?];
    keys.extend(args.fallback_keys.iter().map(|k| ctx.prefixes.key(k)));
    let progress = Progress::new();
    let mut options = RestoreOptions::default()
        .with_zstd_threads(args.zstd_threads)
        .with_verify(args.verify)
        .with_lookup_only(args.lookup_only)
        .with_max_size(args.max_size)
        .with_progress(progress.clone());
    if matches!(ctx.target, Target::Remote(_)) && args.download_concurrency > 1 {
        // Objects of 64 MiB and more come from a server in parallel ranged
        // requests (PROTOCOL.md §6). Buffering is about 2 x concurrency x
        // chunk: the defaults (4 x 2 MiB, 16 MiB) keep a restore's peak RSS
        // near 100 MiB (4 x 4 MiB: 115 MiB; restore of the toolchain's lib
        // from the reference server), where 8 x 16 MiB could buffer 256 MiB.
        options = options.with_parallel(
            cachew_client::parallel::ParallelOptions::default()
                .with_concurrency(args.download_concurrency)
                .with_chunk_size(args.download_chunk_size_mb.max(1) << 20)
                .with_min_size(64 << 20),
        );
    }
    let started = Instant::now();
    let live = Live::start(
        ctx.mode,
        format!("restore {}/{}", args.namespace, short(&keys[0])),
        progress,
    );
    // A signal drops the restore: it removes its staging directory (main
    // waits for the extractor thread), so the target stays as it was.
    let mut signals = Signals::install()?;
    let result = tokio::select! {
        r = restore(&*cache, &keys, &args.dir, &options) => r,
        signal = signals.recv() => {
            live.finish().await;
            return Err(Box::new(Interrupted { signal, outcome: "the directory was left as it was" }));
        }
    };
    live.finish().await;
    let elapsed = started.elapsed();
    let result = match result {
        Err(e) if ctx.best_effort && is_cache_error(&e) => {
            best_effort_warning(&e);
            return Ok(Exit::Miss);
        }
        r => r,
    };
    match result? {
        RestoreOutcome::Hit {
            key,
            index,
            size,
            bytes,
            entries,
            verified,
            ..
        } => {
            let which = if index == 0 {
                String::new()
            } else {
                format!(" (fallback key {:?})", args.fallback_keys[index - 1])
            };
            if args.lookup_only {
                ctx.mode.status(&format!(
                    "hit: {}/{key}{which} exists ({})",
                    args.namespace,
                    progress::bytes(size)
                ));
            } else {
                let check = if verified.is_some() { ", verified" } else { "" };
                ctx.mode.status(&format!(
                    "restored {}/{key}{which} into {}: {} compressed, {} in {entries} entries{check} in {} ({})",
                    args.namespace,
                    args.dir.display(),
                    progress::bytes(size),
                    progress::bytes(bytes),
                    progress::duration(elapsed),
                    progress::rate(size, elapsed),
                ));
            }
            Ok(Exit::Success)
        }
        _ => {
            let tried: Vec<String> = keys.iter().map(Key::to_hex).collect();
            ctx.mode.status(&format!(
                "miss: no object for {}/{}",
                args.namespace,
                tried.join(", ")
            ));
            Ok(Exit::Miss)
        }
    }
}

/// Whether `--best-effort` turns `e` into a warning: anything but a
/// usage error (bad input or a protocol rule broken by the arguments).
fn is_cache_error(e: &Error) -> bool {
    !matches!(e, Error::InvalidInput(_) | Error::Protocol(_))
}

fn best_effort_warning(e: &Error) {
    eprintln!(
        "cachew: warning: {} (--best-effort: not failing the job)",
        describe(e)
    );
}

async fn serve(ctx: &Ctx, dir: &Path, bind: &str, git_root: Option<PathBuf>) -> Outcome {
    let cache = cachew_client::DiskCache::open(dir)?;
    let mut builder = cachew_server::Server::builder(Arc::new(cache));
    if let Some(root) = git_root {
        builder = builder.git_root(root);
    }
    let server = builder
        .bind(bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    // Always said, even with --quiet: a script needs the address.
    eprintln!(
        "cachew: serving {} at {} (Ctrl-C to stop)",
        dir.display(),
        server.url()
    );
    let _ = ctx;
    tokio::signal::ctrl_c().await?;
    eprintln!("cachew: shutting down");
    server.shutdown().await;
    Ok(Exit::Success)
}

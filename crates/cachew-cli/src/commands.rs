//! The commands, each a small function over `dyn Cache`; what they print
//! is in [`crate::output`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use cachew_client::{
    restore, save, Cache, CreateOptions, Error, Key, Namespace, OpenOptions, Progress,
    RestoreOptions, RestoreOutcome, SaveOptions, SaveOutcome,
};
use cachew_proto::header::go_quote;
use http::header::{HeaderName, HeaderValue, CONTENT_DISPOSITION};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::backend::Target;
use crate::cli::{expand_dir, Cleanup, Cli, Command, RestoreArgs, SaveArgs};
use crate::keys::Prefixes;
use crate::progress::{self, Live, Mode, Phase};
use crate::signals::{Interrupted, Signals};
use crate::{output, Exit, UsageError};

type Outcome = anyhow::Result<Exit>;

/// Everything a command needs besides its arguments.
struct Ctx {
    target: Target,
    authorization: Option<String>,
    prefixes: Prefixes,
    mode: Mode,
    /// How live progress is drawn: `mode`, or `Quiet` with `--no-progress`.
    live: Mode,
    /// `--best-effort`: cache errors become warnings.
    best_effort: bool,
}

impl Ctx {
    fn cache(&self, namespace: &str) -> anyhow::Result<Arc<dyn Cache>> {
        // The namespace is checked before anything touches the backend.
        let ns = Namespace::new(namespace)?;
        let cache = self.target.open(self.authorization.as_deref())?;
        Ok(cache.with_namespace(ns))
    }

    /// [`Ctx::cache`] for commands that only read: a `file://` cache
    /// directory that does not exist is an error, not created.
    fn cache_read(&self, namespace: &str) -> anyhow::Result<Arc<dyn Cache>> {
        let ns = Namespace::new(namespace)?;
        Ok(self.open_existing()?.with_namespace(ns))
    }

    /// The backend, refusing a missing `file://` directory.
    fn open_existing(&self) -> anyhow::Result<Arc<dyn Cache>> {
        crate::errors::check_disk_exists(&self.target)?;
        Ok(self.target.open(self.authorization.as_deref())?)
    }

    /// For lookups whose answer can be "nothing" (`restore`, `namespaces`,
    /// `stats`): a missing `file://` directory is an empty cache, so a
    /// first CI run's restore is a miss (exit 2); it is not created.
    fn open_or_empty(&self) -> anyhow::Result<Arc<dyn Cache>> {
        if crate::errors::check_disk_exists(&self.target).is_err() {
            return Ok(Arc::new(cachew_client::MemoryCache::new(0)));
        }
        Ok(self.target.open(self.authorization.as_deref())?)
    }
}

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> Outcome {
    let target = crate::url::parse(&cli.global.url).map_err(UsageError)?;
    let ctx = Ctx {
        target,
        authorization: cli.global.authorization.clone(),
        prefixes: Prefixes::from_flags(&cli.global),
        mode: Mode::detect(cli.global.quiet),
        live: Mode::detect(cli.global.quiet || cli.global.no_progress),
        best_effort: cli.global.best_effort,
    };
    if cli.global.read_only {
        if let Some(done) = crate::read_only::skip(&cli.command, ctx.mode) {
            return Ok(done);
        }
    }
    match cli.command {
        Command::Get {
            namespace,
            key,
            output,
        } => get(&ctx, &namespace, &key, output.as_deref()).await,
        Command::Stat {
            namespace,
            key,
            json,
        } => {
            let cache = ctx.cache_read(&namespace)?;
            let k = ctx.prefixes.key(&key);
            let meta = cache
                .stat(&k, &OpenOptions::default())
                .await
                .map_err(|e| crate::errors::object(e, &namespace, &ctx.prefixes.text(&key), &k))?;
            if json.json {
                crate::json::print(&crate::json::stat(
                    &namespace,
                    &ctx.prefixes.text(&key),
                    &k,
                    &meta,
                ));
            } else {
                print!("{}", output::headers(&meta.headers));
            }
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
            let cache = ctx.cache_read(&namespace)?;
            let k = ctx.prefixes.key(&key);
            cache
                .delete(&k)
                .await
                .map_err(|e| crate::errors::object(e, &namespace, &ctx.prefixes.text(&key), &k))?;
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
        Command::Namespaces(json) => {
            let cache = ctx.open_or_empty()?;
            let names = cache.list_namespaces().await?;
            if json.json {
                crate::json::print(&crate::json::namespaces(&names));
            } else {
                print!("{}", output::namespaces(&names));
            }
            Ok(Exit::Success)
        }
        Command::Stats(json) => {
            let cache = ctx.open_or_empty()?;
            let stats = cache.stats().await?;
            if json.json {
                let v = crate::json::stats(stats.objects, stats.size, stats.capacity);
                crate::json::print(&v);
                return Ok(Exit::Success);
            }
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
        Command::Completions { shell } => {
            crate::completions::completions(shell)?;
            Ok(Exit::Success)
        }
        Command::Man => {
            crate::completions::man()?;
            Ok(Exit::Success)
        }
        Command::Restore(args) => restore_cmd(&ctx, args).await,
        Command::Serve(args) => crate::serve::run(args, cli.global.authorization.as_deref()).await,
        Command::Gc { dir, max_depth } => crate::gc::run(&dir, max_depth, ctx.mode),
        Command::Git(git) => {
            let git_ctx = crate::git_restore::GitContext {
                url: &cli.global.url,
                authorization: cli.global.authorization.as_deref(),
                quiet: cli.global.quiet,
            };
            crate::git_restore::run(&git_ctx, git).await.map_err(|e| {
                match e.downcast::<UsageError>() {
                    Ok(usage) => anyhow::Error::new(*usage),
                    // Kept as the error itself: main exits 128 + signal.
                    Err(e) => match e.downcast::<Interrupted>() {
                        Ok(stop) => anyhow::Error::new(*stop),
                        Err(e) => anyhow!(e),
                    },
                }
            })?;
            Ok(Exit::Success)
        }
    }
}

/// Short form of a key for progress lines.
fn short(key: &Key) -> String {
    key.to_hex()[..12].to_owned()
}

async fn get(ctx: &Ctx, namespace: &str, key: &str, output: Option<&str>) -> Outcome {
    let cache = ctx.cache_read(namespace)?;
    let k = ctx.prefixes.key(key);
    let object = cache
        .open(&k, &OpenOptions::default())
        .await
        .map_err(|e| crate::errors::object(e, namespace, &ctx.prefixes.text(key), &k))?;
    if ctx.mode != Mode::Quiet {
        eprint!("{}", output::headers(&object.meta.headers));
    }
    let mut body = object.body;
    match output {
        // `-o -` is stdout, as the Go CLI's default.
        None | Some("-") => {
            let mut stdout = tokio::io::stdout();
            tokio::io::copy(&mut body, &mut stdout).await?;
            stdout.flush().await?;
        }
        Some(path) => crate::download::write_to(Path::new(path), &mut body).await?,
    }
    Ok(Exit::Success)
}

/// The headers of a map flag (`-H 'a=1;b=2'`); a later value for the same
/// name replaces an earlier one, as in the Go CLI's map.
fn parse_headers(occurrences: &[String]) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in crate::kong::map(occurrences).map_err(UsageError)? {
        let header = HeaderName::try_from(name.trim())
            .map_err(|_| UsageError(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::try_from(value.trim())
            .map_err(|_| UsageError(format!("invalid value for header {name:?}")))?;
        map.insert(header, value);
    }
    Ok(map)
}

async fn put(
    ctx: &Ctx,
    namespace: &str,
    key: &str,
    file: Option<&str>,
    ttl: Option<std::time::Duration>,
    headers: &[String],
) -> Outcome {
    let mut headers = parse_headers(headers)?;
    let cache = ctx.cache(namespace)?;
    let mut reader: Box<dyn AsyncRead + Send + Unpin> = match file {
        // No FILE or `-` is stdin, as the Go CLI's default.
        None | Some("-") => Box::new(tokio::io::stdin()),
        Some(path) => {
            let path = Path::new(path);
            crate::errors::check_put_file(path)?;
            let f = tokio::fs::File::open(path)
                .await
                .map_err(|e| Error::io("open", path, e))?;
            // Like Go, only a regular file names the download.
            let regular = f.metadata().await.is_ok_and(|m| m.is_file());
            if regular && !headers.contains_key(CONTENT_DISPOSITION) {
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
    let (key, key_text) = ctx.prefixes.key_from(&args.key)?;
    let dir = expand_dir(&args.dir);
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let progress = Progress::new();
    let mut options = SaveOptions::default()
        .with_excludes(crate::kong::list(&args.exclude))
        .with_headers(parse_headers(&args.headers)?)
        .with_zstd_level(args.zstd_level)
        .with_zstd_threads(args.zstd_threads)
        .with_skip_unchanged(args.skip_unchanged)
        .with_no_digest(args.no_digest)
        .with_progress(progress.clone());
    if let Some(ttl) = args.ttl {
        options = options.with_ttl(ttl);
    }
    output::archiving(ctx.mode, &dir);
    let started = Instant::now();
    let live = Live::start(
        ctx.live,
        Phase::Save,
        format!("save {}/{}", args.namespace, short(&key)),
        progress,
    );
    // A signal drops the save: its writer aborts, so nothing is uploaded.
    let mut signals = Signals::install()?;
    let result = tokio::select! {
        r = save(&*cache, &key, &dir, &paths, &options) => r,
        signal = signals.recv() => {
            live.finish().await;
            return Err(Interrupted { signal, outcome: "nothing was uploaded" }.into());
        }
    };
    let result = match result {
        Err(e) if ctx.best_effort && is_cache_error(&e) => {
            best_effort_warning(e);
            return Ok(Exit::Success);
        }
        r => r,
    };
    live.finish().await;
    let elapsed = started.elapsed();
    let outcome = result?;
    output::saved(ctx.mode, &key_text);
    let named = format!("{}/{key_text} ({key})", args.namespace);
    let mut report = crate::json::SaveReport {
        namespace: &args.namespace,
        key_text: &key_text,
        key: Some(&key),
        seconds: elapsed,
        ..Default::default()
    };
    let summary = match outcome {
        SaveOutcome::Uploaded {
            entries,
            uncompressed_bytes,
            compressed_bytes,
            ..
        } => {
            report.result = "uploaded";
            report.bytes = compressed_bytes;
            report.uncompressed_bytes = uncompressed_bytes;
            report.entries = entries;
            format!(
                "saved {} to {named}: {} compressed from {} ({entries} entries) in {} ({})",
                dir.display(),
                progress::bytes(compressed_bytes),
                progress::bytes(uncompressed_bytes),
                progress::duration(elapsed),
                progress::rate(compressed_bytes, elapsed),
            )
        }
        SaveOutcome::Unchanged { digest, .. } => {
            report.result = "unchanged";
            format!(
                "unchanged: {named} already holds this tree (digest {digest}); nothing uploaded"
            )
        }
        other => {
            report.result = "uploaded";
            format!("saved: {other:?}")
        }
    };
    ctx.mode.status(&summary);
    let unchanged = report.result == "unchanged";
    crate::gha::write(
        &crate::gha::Outputs {
            cache_hit: unchanged,
            primary_key: &key_text,
            matched_key: if unchanged { &key_text } else { "" },
        },
        &format!("cachew: {summary}"),
    );
    if args.json.json {
        crate::json::print(&report.to_json());
    }
    Ok(Exit::Success)
}

async fn restore_cmd(ctx: &Ctx, args: RestoreArgs) -> Outcome {
    let cache = ctx
        .open_or_empty()?
        .with_namespace(Namespace::new(&args.namespace)?);
    let (primary, primary_text) = ctx.prefixes.key_from(&args.key)?;
    let fallbacks = crate::kong::list(&args.fallback_keys);
    let mut keys = vec![primary];
    let mut texts = vec![primary_text];
    for raw in &fallbacks {
        texts.push(ctx.prefixes.text(raw));
        keys.push(ctx.prefixes.key(raw));
    }
    let dir = expand_dir(&args.dir);
    let progress = Progress::new();
    let mut options = RestoreOptions::default()
        .with_zstd_threads(args.zstd_threads)
        .with_verify(args.verify)
        .with_lookup_only(args.lookup_only)
        .with_progress(progress.clone())
        .with_max_size(args.max_size)
        .with_deferred_cleanup(true);
    if matches!(ctx.target, Target::Remote(_) | Target::ObjectStore(_))
        && args.download_concurrency > 1
    {
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
    if !args.lookup_only {
        output::restoring(ctx.mode, &dir);
    }
    let started = Instant::now();
    let phase = if args.verify {
        Phase::RestoreVerify
    } else {
        Phase::Restore
    };
    let live = Live::start(
        if args.lookup_only {
            Mode::Quiet
        } else {
            ctx.live
        },
        phase,
        format!("restore {}/{}", args.namespace, short(&keys[0])),
        progress,
    );
    // A signal drops the restore: it removes its staging directory (main
    // waits for the extractor thread), so the target stays as it was.
    let mut signals = Signals::install()?;
    let result = tokio::select! {
        r = restore(&*cache, &keys, &dir, &options) => r,
        signal = signals.recv() => {
            live.finish().await;
            return Err(Interrupted { signal, outcome: "the directory was left as it was" }.into());
        }
    };
    let result = match result {
        Err(e) if ctx.best_effort && is_cache_error(&e) => {
            best_effort_warning(e);
            return Ok(Exit::Miss);
        }
        r => r,
    };
    live.finish().await;
    let elapsed = started.elapsed();
    let mut report = crate::json::RestoreReport {
        namespace: &args.namespace,
        key_text: &texts[0],
        key: Some(&keys[0]),
        seconds: elapsed,
        lookup_only: args.lookup_only,
        ..Default::default()
    };
    let mut displaced = None;
    let (exit, summary) = match result? {
        RestoreOutcome::Hit {
            key,
            index,
            size,
            bytes,
            entries,
            verified,
            displaced: old,
            ..
        } => {
            displaced = old;
            let which = if index == 0 {
                String::new()
            } else {
                format!(" (fallback key {:?})", fallbacks[index - 1])
            };
            let named = format!("{}/{} ({key}){which}", args.namespace, texts[index]);
            report.index = Some(index);
            report.matched_text = Some(&texts[index]);
            report.matched = Some(&keys[index]);
            report.bytes = size;
            report.file_bytes = bytes;
            report.entries = entries;
            report.verified = verified.is_some();
            let summary = if args.lookup_only {
                format!("hit: {named} exists ({})", progress::bytes(size))
            } else {
                output::restored(ctx.mode, &texts[index]);
                let check = if verified.is_some() { ", verified" } else { "" };
                format!(
                    "restored {named} into {}: {} compressed, {} in {entries} entries{check} in {} ({})",
                    dir.display(),
                    progress::bytes(size),
                    progress::bytes(bytes),
                    progress::duration(elapsed),
                    progress::rate(size, elapsed),
                )
            };
            (Exit::Success, summary)
        }
        _ => {
            output::miss(ctx.mode, &texts.join(", "));
            let tried: Vec<String> = keys
                .iter()
                .zip(&texts)
                .map(|(k, t)| {
                    if *t == k.to_hex() {
                        t.clone()
                    } else {
                        format!("{t} ({k})")
                    }
                })
                .collect();
            let summary = format!(
                "miss: no object for {}/{}",
                args.namespace,
                tried.join(", ")
            );
            (Exit::Miss, summary)
        }
    };
    ctx.mode.status(&summary);
    crate::gha::write(
        &crate::gha::Outputs {
            cache_hit: report.index == Some(0),
            primary_key: &texts[0],
            matched_key: report.matched_text.unwrap_or(""),
        },
        &format!("cachew: {summary}"),
    );
    if args.json.json {
        crate::json::print(&report.to_json());
    }
    // The target is restored and the outcome printed: the old entries it
    // displaced go off the critical path (`cleanup.rs`).
    if let Some(staging) = displaced {
        match args.cleanup {
            Cleanup::Background => crate::cleanup::hand_off(&staging),
            Cleanup::Sync => crate::cleanup::remove_now(&staging),
        }
    }
    Ok(exit)
}

/// Whether `--best-effort` turns `e` into a warning: anything but a
/// usage error (bad input or a protocol rule broken by the arguments).
fn is_cache_error(e: &Error) -> bool {
    !matches!(e, Error::InvalidInput(_) | Error::Protocol(_))
}

fn best_effort_warning(e: Error) {
    eprintln!(
        "cachew: warning: {:#} (--best-effort: not failing the job)",
        anyhow::Error::from(e)
    );
}

//! The command line grammar (clap derive), compatible with the Go `cachew`
//! CLI (`PROTOCOL.md` §7) plus cachew-rs additions.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::FalseyValueParser;
use clap::{ArgGroup, Args, Parser, Subcommand};

/// cachew: save and restore CI caches with a Cachew server (or a local
/// directory).
#[derive(Debug, Parser)]
#[command(
    name = "cachew",
    version,
    about = "Save and restore CI caches with a Cachew server or a local directory",
    long_about = "Save and restore CI caches with a Cachew server or a local directory.\n\n\
        Objects live under a namespace and a key. Keys given as text are hashed \
        (SHA-256) unless they are 64 hex digits; --platform and --daily/--hourly \
        prefix the key text first, exactly like the Go cachew CLI.\n\n\
        Exit codes: 0 success, 1 error (including usage errors), 2 restore miss.",
    after_help = "Examples:\n  \
        cachew --url file:///tmp/cache save deps . --key \"$(date +%Y-%m)\" -- node_modules\n  \
        cachew restore deps . -H '**/package-lock.json' || npm ci\n  \
        CACHEW_URL=http://cachew.internal:8080 cachew stat default my-key"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command takes; each is also read from `CACHEW_<FLAG>`.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Cache to use: a Cachew server URL (http:// or https://), or
    /// file:///path or a plain path for the embedded on-disk cache.
    #[arg(
        long,
        env = "CACHEW_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub(crate) url: String,

    /// Authorization header value sent with every request (e.g. "Bearer TOKEN").
    #[arg(
        long,
        env = "CACHEW_AUTHORIZATION",
        global = true,
        hide_env_values = true
    )]
    pub(crate) authorization: Option<String>,

    /// Prefix keys with the platform, Go style: "linux-amd64-KEY".
    #[arg(long, env = "CACHEW_PLATFORM", global = true, value_parser = FalseyValueParser::new())]
    pub(crate) platform: bool,

    /// Prefix keys with the local date: "YYYY-MM-DD-KEY".
    #[arg(long, env = "CACHEW_DAILY", global = true, value_parser = FalseyValueParser::new(), conflicts_with = "hourly")]
    pub(crate) daily: bool,

    /// Prefix keys with the local date and hour: "YYYY-MM-DD-HH-KEY".
    #[arg(long, env = "CACHEW_HOURLY", global = true, value_parser = FalseyValueParser::new())]
    pub(crate) hourly: bool,

    /// Print nothing but errors (no progress, no summary line).
    #[arg(long, short = 'q', env = "CACHEW_QUIET", global = true, value_parser = FalseyValueParser::new())]
    pub(crate) quiet: bool,

    /// Log level for diagnostics on stderr: error, warn, info, debug, trace,
    /// or a tracing filter such as "cachew_transport=debug".
    #[arg(long, env = "CACHEW_LOG_LEVEL", default_value = "warn", global = true)]
    pub(crate) log_level: String,

    /// Cache errors (server down, corrupt object, failed upload) are
    /// warnings: save exits 0, restore exits 2 (miss). Never usage errors.
    #[arg(long, env = "CACHEW_BEST_EFFORT", global = true, value_parser = FalseyValueParser::new())]
    pub(crate) best_effort: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Download an object: body to stdout (or -o FILE), headers to stderr.
    #[command(after_help = "Example:\n  cachew get default my-key -o artifact.bin")]
    Get {
        /// Namespace, e.g. "default".
        namespace: String,
        /// Key text (hashed unless 64 hex digits).
        key: String,
        /// Write the body to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },

    /// Print an object's headers to stdout.
    #[command(after_help = "Example:\n  cachew stat default my-key")]
    Stat {
        /// Namespace.
        namespace: String,
        /// Key text.
        key: String,
    },

    /// Upload an object from FILE or stdin.
    #[command(after_help = "Examples:\n  \
        cachew put default my-key artifact.bin --ttl 24h -H x-build=42\n  \
        tar -cf - dir | cachew put default my-key")]
    Put {
        /// Namespace.
        namespace: String,
        /// Key text.
        key: String,
        /// File to upload (default: stdin). Its name becomes the
        /// Content-Disposition filename.
        file: Option<PathBuf>,
        /// Time to live, Go duration syntax (e.g. 90s, 1h30m); 0 = server default.
        #[arg(long, value_parser = parse_ttl, value_name = "DURATION")]
        ttl: Option<Duration>,
        /// Extra header to store with the object, NAME=VALUE (repeatable).
        #[arg(short = 'H', long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
    },

    /// Delete an object (an error if it does not exist).
    #[command(after_help = "Example:\n  cachew delete default my-key")]
    Delete {
        /// Namespace.
        namespace: String,
        /// Key text.
        key: String,
    },

    /// Drop an object if present (absent keys are fine).
    #[command(after_help = "Example:\n  cachew invalidate default my-key")]
    Invalidate {
        /// Namespace.
        namespace: String,
        /// Key text.
        key: String,
    },

    /// List the namespaces that hold objects, one per line.
    #[command(after_help = "Example:\n  cachew namespaces")]
    Namespaces,

    /// Print the cache's usage statistics.
    #[command(after_help = "Example:\n  cachew stats")]
    Stats,

    /// Archive paths of DIR (tar + zstd) and upload them under a key.
    #[command(
        group(ArgGroup::new("keysource").required(true).args(["key", "hash"])),
        after_help = "Examples:\n  \
        cachew save rust . target ~/.cargo/registry -H '**/Cargo.lock' --exclude '*.rlib'\n  \
        cachew --platform --daily save deps node_modules --key npm --ttl 72h\n  \
        cachew save deps . --key npm --skip-unchanged"
    )]
    Save(SaveArgs),

    /// Download and extract a saved directory into DIR. Exit 0 hit, 2 miss.
    #[command(
        group(ArgGroup::new("keysource").required(true).args(["key", "hash"])),
        after_help = "Examples:\n  \
        cachew restore rust . -H '**/Cargo.lock' --fallback-key rust-main || cargo build\n  \
        cachew restore deps node_modules --key npm --lookup-only && echo cached"
    )]
    Restore(RestoreArgs),

    /// Git repositories from the server's snapshots (`git restore URL DIR`).
    #[command(subcommand)]
    Git(crate::git_restore::GitCommand),

    /// Serve a directory-backed cache over the Cachew v1 API.
    #[command(after_help = "Example:\n  \
        cachew serve --dir /var/cache/cachew --bind 0.0.0.0:8080\n  \
        CACHEW_URL=http://127.0.0.1:8080 cachew namespaces")]
    Serve {
        /// Directory holding the cache (created if missing).
        #[arg(long, value_name = "PATH")]
        dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        bind: String,
        /// Also serve the /git/ endpoints (snapshots, bundles, ensure-refs)
        /// for the plain git repositories under DIR: repository URL
        /// `https://host/org/repo` is `DIR/host/org/repo`.
        #[arg(long, value_name = "DIR")]
        git_root: Option<PathBuf>,
    },

    /// Remove stale staging that killed restores left under DIR.
    Gc {
        /// Directory to clean (and its subdirectories).
        dir: PathBuf,
        /// How many levels of subdirectories to look in.
        #[arg(long, default_value_t = 8, value_name = "N")]
        max_depth: usize,
    },
}

/// `save NS DIR [PATHS…] (--key K | -H GLOB…)`.
#[derive(Debug, Args)]
pub(crate) struct SaveArgs {
    /// Namespace.
    pub(crate) namespace: String,
    /// Base directory; PATHS are relative to it.
    pub(crate) dir: PathBuf,
    /// Paths inside DIR to archive (default: "." — all of DIR).
    pub(crate) paths: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) key: KeySource,
    /// Time to live, Go duration syntax (e.g. 72h); 0 = server default.
    #[arg(long, value_parser = parse_ttl, value_name = "DURATION")]
    pub(crate) ttl: Option<Duration>,
    /// Leave out entries matching PATTERN (GNU tar --exclude; repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub(crate) exclude: Vec<String>,
    /// Compression and hashing threads; 0 = all cores.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) zstd_threads: usize,
    /// zstd compression level (1-19).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19), value_name = "N")]
    pub(crate) zstd_level: i32,
    /// Extra header to store with the object, NAME=VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub(crate) headers: Vec<String>,
    /// Stat the key first; skip the upload if the stored tree has the same
    /// digest (contents, modes, links; not mtimes).
    #[arg(long, conflicts_with = "no_digest")]
    pub(crate) skip_unchanged: bool,
    /// Do not compute the tree digest (saves hashing the file contents; the
    /// archive gets no digest trailer, so --skip-unchanged and
    /// restore --verify cannot use this object).
    #[arg(long)]
    pub(crate) no_digest: bool,
}

/// `restore NS DIR (--key K | -H GLOB…)`.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// Namespace.
    pub(crate) namespace: String,
    /// Directory to restore into (created if missing; staged beside it).
    pub(crate) dir: PathBuf,
    #[command(flatten)]
    pub(crate) key: KeySource,
    /// Key to try if the primary key misses (repeatable, tried in order).
    #[arg(long = "fallback-key", value_name = "KEY")]
    pub(crate) fallback_keys: Vec<String>,
    /// Only check whether a key exists: exit 0 hit, 2 miss; nothing is downloaded.
    #[arg(long)]
    pub(crate) lookup_only: bool,
    /// Check the restored tree against the digest stored at save time.
    #[arg(long)]
    pub(crate) verify: bool,
    /// Extraction threads; 0 = all cores.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) zstd_threads: usize,
    /// Parallel ranged requests for objects of 64 MiB and more from a
    /// server; 1 = one plain GET.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub(crate) download_concurrency: usize,
    /// Size of each ranged request, in MiB. Up to twice the concurrency of
    /// them are held in memory.
    #[arg(long, default_value_t = 2, value_name = "MIB")]
    pub(crate) download_chunk_size_mb: u64,
    /// Refuse archives that unpack to more than SIZE (e.g. 20G; K/M/G/T
    /// are powers of 1024): a guard against zstd bombs.
    #[arg(long, env = "CACHEW_MAX_SIZE", value_parser = parse_size, value_name = "SIZE")]
    pub(crate) max_size: Option<u64>,
}

/// Where a save/restore key comes from: `--key K` or `-H GLOB…`.
#[derive(Debug, Args)]
pub(crate) struct KeySource {
    /// Key text (hashed unless 64 hex digits).
    #[arg(long, value_name = "KEY")]
    pub(crate) key: Option<String>,
    /// Compute the key from the files matching GLOB (doublestar, relative to
    /// the current directory; repeatable).
    #[arg(short = 'H', long = "hash", value_name = "GLOB")]
    pub(crate) hash: Vec<String>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if "kKmMgGtT".contains(c) => (
            &t[..i],
            10 * (1 + "kmgt".find(c.to_ascii_lowercase()).unwrap_or(0) as u32),
        ),
        _ => (t, 0),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("invalid size {s:?}: want bytes, or a number with K, M, G or T"))
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    cachew_proto::duration::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_and_hash_conflict_and_one_is_required() {
        let both = Cli::try_parse_from(["cachew", "save", "ns", ".", "--key", "k", "-H", "*.lock"]);
        assert!(both.is_err());
        let neither = Cli::try_parse_from(["cachew", "restore", "ns", "."]);
        assert!(neither.is_err());
        let hashes =
            Cli::try_parse_from(["cachew", "save", "ns", ".", "-H", "a", "-H", "b"]).unwrap();
        let Command::Save(save) = hashes.command else {
            panic!("expected save");
        };
        assert_eq!(save.key.hash, ["a", "b"]);
        assert_eq!(save.paths, Vec::<PathBuf>::new());
    }

    #[test]
    fn ttl_uses_go_durations() {
        let cli = Cli::try_parse_from(["cachew", "put", "ns", "k", "--ttl", "1h30m"]).unwrap();
        let Command::Put { ttl, .. } = cli.command else {
            panic!("expected put");
        };
        assert_eq!(ttl, Some(Duration::from_secs(5400)));
        assert!(Cli::try_parse_from(["cachew", "put", "ns", "k", "--ttl", "1 day"]).is_err());
    }

    #[test]
    fn daily_and_hourly_exclude_each_other() {
        assert!(Cli::try_parse_from(["cachew", "--daily", "--hourly", "namespaces"]).is_err());
        let cli = Cli::try_parse_from(["cachew", "namespaces", "--daily", "--platform"]).unwrap();
        assert!(cli.global.daily && cli.global.platform && !cli.global.hourly);
    }
}

//! The command line grammar (clap derive) and its parse: the Go `cachew`
//! CLI's flags and defaults (`PROTOCOL.md` §7), its `CACHEW_*` variables
//! ([`crate::envars`]) and kong's value rules ([`crate::kong`]), plus the
//! cachew-rs extensions listed in `docs/MIGRATING.md`.
//!
//! List and map flags are collected raw (one string per occurrence) and
//! split afterwards, the way kong splits them; kong's `xor` groups
//! (`--daily`/`--hourly`, `--key`/`--hash-files`) are checked here rather
//! than by clap, because kong counts a flag set by a variable as set.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::envars::{self, Sources};

/// cachew: save and restore CI caches with a Cachew server (or a local
/// directory).
#[derive(Debug, Parser)]
#[command(
    name = "cachew",
    version = crate::completions::VERSION,
    about = "Save and restore CI caches with a Cachew server or a local directory",
    long_about = "Save and restore CI caches with a Cachew server or a local directory.\n\n\
        Objects live under a namespace and a key. Keys given as text are hashed \
        (SHA-256) unless they are 64 hex digits; --platform and --daily/--hourly \
        prefix the key text first, exactly like the Go cachew CLI. Every flag is \
        also read from CACHEW_<FLAG> (e.g. CACHEW_URL, CACHEW_HASH_FILES); the \
        command line wins.\n\n\
        Exit codes: 0 success, 1 error, 2 restore miss, 80 usage error.",
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

/// Flags every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// Cache to use: a Cachew server URL (http:// or https://), or
    /// file:///path (or a path starting with /, ./, ../ or ~) for the
    /// embedded on-disk cache.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    pub(crate) url: String,

    /// Authorization header value sent with every request (e.g. "Bearer TOKEN").
    #[arg(long, global = true, value_name = "VALUE")]
    pub(crate) authorization: Option<String>,

    /// Prefix keys with the platform, Go style: "linux-amd64-KEY".
    #[arg(long, global = true)]
    pub(crate) platform: bool,

    /// Prefix keys with the local date: "YYYY-MM-DD-KEY". Excludes --hourly.
    #[arg(long, global = true)]
    pub(crate) daily: bool,

    /// Prefix keys with the local date and hour: "YYYY-MM-DD-HH-KEY".
    #[arg(long, global = true)]
    pub(crate) hourly: bool,

    /// Print nothing but errors (no progress, no status lines). Extension.
    #[arg(long, short = 'q', global = true)]
    pub(crate) quiet: bool,

    /// Log level on stderr: debug, info, warn or error (Go's slog levels,
    /// also with an offset such as INFO+2), or a tracing filter such as
    /// "cachew_transport=debug" (extension). RUST_LOG, when set, replaces
    /// it; NO_COLOR turns colour off.
    #[arg(long, default_value = "info", global = true, value_name = "LEVEL", value_parser = crate::observe::parse_log_level)]
    pub(crate) log_level: String,

    #[command(flatten)]
    pub(crate) net: crate::net::NetArgs,

    #[command(flatten)]
    pub(crate) observe: crate::observe::ObserveArgs,

    /// Restore only: save, put, delete and invalidate are skipped with a
    /// warning and exit 0 (e.g. for pull-request builds). Extension.
    #[arg(long, global = true)]
    pub(crate) read_only: bool,

    /// No progress bar (terminal) or progress lines (every 10 s otherwise);
    /// status lines stay. Sizes and rates there, on save and restore alike,
    /// are compressed bytes over the wire. Extension.
    #[arg(long, global = true)]
    pub(crate) no_progress: bool,

    /// Cache errors (server down, corrupt object, failed upload) are
    /// warnings: save exits 0, restore exits 2 (miss). Never usage errors.
    /// Extension.
    #[arg(long, global = true)]
    pub(crate) best_effort: bool,
}

/// `--json`, on the commands that report a result.
#[derive(Debug, Args, Clone, Copy)]
pub(crate) struct JsonFlag {
    /// Print the result as one JSON object on stdout (docs/JSON.md). Extension.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Download an object: body to stdout (or -o FILE), headers to stderr.
    #[command(after_help = "Example:\n  cachew get default my-key -o artifact.bin")]
    Get {
        /// Namespace, e.g. "default".
        #[arg(value_parser = parse_namespace)]
        namespace: String,
        /// Key text (hashed unless 64 hex digits).
        key: String,
        /// Write the body to FILE instead of stdout ("-" is stdout).
        #[arg(short, long, value_name = "FILE")]
        output: Option<String>,
    },

    /// Print an object's headers to stdout.
    #[command(after_help = "Example:\n  cachew stat default my-key")]
    Stat {
        /// Namespace.
        #[arg(value_parser = parse_namespace)]
        namespace: String,
        /// Key text.
        key: String,
        #[command(flatten)]
        json: JsonFlag,
    },

    /// Upload an object from FILE or stdin.
    #[command(after_help = "Examples:\n  \
        cachew put default my-key artifact.bin --ttl 24h -H x-build=42\n  \
        tar -cf - dir | cachew put default my-key")]
    Put {
        /// Namespace.
        #[arg(value_parser = parse_namespace)]
        namespace: String,
        /// Key text.
        key: String,
        /// File to upload ("-" or absent: stdin). A regular file's name
        /// becomes the Content-Disposition filename.
        file: Option<String>,
        /// Time to live, Go duration syntax (e.g. 90s, 1h30m); 0 = server default.
        #[arg(long, value_parser = parse_ttl, value_name = "DURATION")]
        ttl: Option<Duration>,
        /// Headers to store with the object, NAME=VALUE; several are
        /// separated by ";" (repeatable). -H is --headers here, as in the
        /// Go CLI; on save and restore it is --hash-files.
        #[arg(short = 'H', long = "headers", visible_alias = "header", value_name = "NAME=VALUE", value_parser = crate::kong::map_occurrence)]
        headers: Vec<String>,
    },

    /// Delete an object (an error if it does not exist).
    #[command(after_help = "Example:\n  cachew delete default my-key")]
    Delete {
        /// Namespace.
        #[arg(value_parser = parse_namespace)]
        namespace: String,
        /// Key text.
        key: String,
    },

    /// Drop an object if present (absent keys are fine). Extension.
    #[command(after_help = "Example:\n  cachew invalidate default my-key")]
    Invalidate {
        /// Namespace.
        #[arg(value_parser = parse_namespace)]
        namespace: String,
        /// Key text.
        key: String,
    },

    /// List the namespaces that hold objects, one per line.
    #[command(after_help = "Example:\n  cachew namespaces")]
    Namespaces(JsonFlag),

    /// Print the cache's usage statistics. Extension.
    #[command(after_help = "Example:\n  cachew stats")]
    Stats(JsonFlag),

    /// Archive paths of DIR (tar + zstd) and upload them under a key.
    #[command(after_help = "Examples:\n  \
        cachew save rust . target -H '**/Cargo.lock' --exclude '*.rlib,*.rmeta'\n  \
        cachew save cargo ~/.cargo registry/index registry/cache -H Cargo.lock\n  \
        cachew --platform --daily save deps node_modules --key npm --ttl 72h\n  \
        cachew save deps . --key npm --skip-unchanged")]
    Save(SaveArgs),

    /// Download and extract a saved directory into DIR. Exit 0 hit, 2 miss.
    #[command(after_help = "Examples:\n  \
        cachew restore rust . -H '**/Cargo.lock' --fallback-key rust-main || cargo build\n  \
        cachew restore deps node_modules --key npm --lookup-only && echo cached")]
    Restore(RestoreArgs),

    /// Git repositories from the server's snapshots (`git restore URL DIR`).
    #[command(subcommand)]
    Git(crate::git_restore::GitCommand),

    /// Serve a directory-backed cache over the Cachew v1 API. Extension.
    #[command(after_help = "Examples:\n  \
        cachew serve --dir /var/cache/cachew\n  \
        cachew serve --dir /var/cache/cachew --bind 0.0.0.0:8443 --token-file /etc/cachew/tokens \\\n    \
        --tls-cert /etc/cachew/cert.pem --tls-key /etc/cachew/key.pem\n\n\
        See docs/SERVER.md for the token file format, limits and the access log.")]
    Serve(crate::serve::ServeArgs),

    /// Print a shell completion script on stdout. Extension.
    #[command(after_help = "Examples:\n  \
        cachew completions bash > /etc/bash_completion.d/cachew\n  \
        cachew completions zsh > \"${fpath[1]}/_cachew\"\n  \
        cachew completions fish > ~/.config/fish/completions/cachew.fish")]
    Completions {
        /// The shell.
        shell: crate::completions::Shell,
    },

    /// Print the man page (roff) on stdout.
    #[command(hide = true)]
    Man,

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
    #[arg(value_parser = parse_namespace)]
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
    /// Leave out entries matching PATTERN (GNU tar --exclude); several are
    /// separated by "," (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub(crate) exclude: Vec<String>,
    /// Compression and hashing threads; 0 = all cores.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) zstd_threads: usize,
    /// zstd compression level (1-19). Extension.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19), value_name = "N")]
    pub(crate) zstd_level: i32,
    /// Headers to store with the object, NAME=VALUE; several are separated
    /// by ";" (repeatable). Extension.
    #[arg(long = "headers", visible_alias = "header", value_name = "NAME=VALUE", value_parser = crate::kong::map_occurrence)]
    pub(crate) headers: Vec<String>,
    /// Stat the key first; skip the upload if the stored tree has the same
    /// digest (contents, modes, links; not mtimes). Extension.
    #[arg(long)]
    pub(crate) skip_unchanged: bool,
    /// Do not compute the tree digest (saves hashing the file contents; the
    /// archive gets no digest trailer, so --skip-unchanged and
    /// restore --verify cannot use this object). Extension.
    #[arg(long)]
    pub(crate) no_digest: bool,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

/// `restore NS DIR (--key K | -H GLOB…)`.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// Namespace.
    #[arg(value_parser = parse_namespace)]
    pub(crate) namespace: String,
    /// Directory to restore into (created if missing; staged beside it).
    pub(crate) dir: PathBuf,
    #[command(flatten)]
    pub(crate) key: KeySource,
    /// Exact keys to try if the primary key misses, in order; several are
    /// separated by "," (repeatable). Not prefixes: the server stores
    /// hashed keys and cannot list them. Extension.
    #[arg(long = "fallback-key", value_name = "KEY")]
    pub(crate) fallback_keys: Vec<String>,
    /// Only check whether a key exists: exit 0 hit, 2 miss; nothing is
    /// downloaded. Extension.
    #[arg(long)]
    pub(crate) lookup_only: bool,
    /// Check the restored tree against the digest stored at save time. Extension.
    #[arg(long)]
    pub(crate) verify: bool,
    /// Extraction threads; 0 = all cores.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) zstd_threads: usize,
    /// Parallel ranged requests for objects of 64 MiB and more from a
    /// server; 1 = one plain GET. Extension.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub(crate) download_concurrency: usize,
    /// Size of each ranged request, in MiB. Up to twice the concurrency of
    /// them are held in memory. Extension.
    #[arg(long, default_value_t = 2, value_name = "MIB")]
    pub(crate) download_chunk_size_mb: u64,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
    /// Refuse archives that unpack to more than SIZE (e.g. 20G; K/M/G/T
    /// and KiB/MiB/… are powers of 1024, KB/MB/… of 1000): a guard against
    /// zstd bombs.
    #[arg(long, env = "CACHEW_MAX_SIZE", value_parser = crate::size::parse_size, value_name = "SIZE")]
    pub(crate) max_size: Option<u64>,
    /// Who removes the old entries an in-place restore displaced:
    /// `background` (a detached `cachew` process, after this one exits) or
    /// `sync` (this process, before it exits). Hidden; also
    /// `CACHEW_CLEANUP` (`crate::cleanup`).
    #[arg(long, hide = true, value_enum, default_value_t = Cleanup::Background, value_name = "WHEN")]
    pub(crate) cleanup: Cleanup,
}

/// `restore --cleanup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Cleanup {
    /// Handed to a detached child process.
    Background,
    /// Before the restore's process exits.
    Sync,
}

/// Where a save/restore key comes from: `--key K` or `-H GLOB…`.
#[derive(Debug, Args)]
pub(crate) struct KeySource {
    /// Key text (hashed unless 64 hex digits). Excludes -H.
    #[arg(long, value_name = "KEY")]
    pub(crate) key: Option<String>,
    /// Compute the key from the files matching GLOB (doublestar, relative to
    /// the current directory); several are separated by "," (repeatable).
    #[arg(short = 'H', long = "hash-files", alias = "hash", value_name = "GLOB")]
    pub(crate) hash_files: Vec<String>,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    cachew_proto::duration::parse(s).map_err(|e| e.to_string())
}

fn parse_namespace(s: &str) -> Result<String, String> {
    cachew_client::Namespace::new(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// Why a command line was refused: clap's own error (printed as clap
/// formats it, with usage) or one of ours.
#[derive(Debug)]
pub(crate) enum ParseFailure {
    /// Unknown flag, bad value, `--help`, `--version`, …
    Clap(clap::Error),
    /// A bad `CACHEW_*` variable or a kong group rule.
    Usage(String),
}

/// Parses `argv` (program name first) with variables from `lookup`.
pub(crate) fn parse<I, T>(
    argv: I,
    lookup: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Cli, ParseFailure>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let (mut cmd, sources) = envars::apply(hide_unused_globals(Cli::command()), lookup)
        .map_err(|e| ParseFailure::Usage(e.message))?;
    let matches = cmd
        .try_get_matches_from_mut(argv)
        .map_err(ParseFailure::Clap)?;
    let cli = Cli::from_arg_matches(&matches).map_err(ParseFailure::Clap)?;
    check_groups(&cli, &matches, &sources).map_err(ParseFailure::Usage)?;
    Ok(cli)
}

/// Global flags `serve` ignores (it serves whatever is asked; no keys, no
/// `--url`): hidden from `serve --help`, still accepted.
const NOT_FOR_SERVE: [&str; 6] = [
    "url",
    "platform",
    "daily",
    "hourly",
    "read_only",
    "no_progress",
];

fn hide_unused_globals(cmd: clap::Command) -> clap::Command {
    // clap copies a global flag into a subcommand only where the subcommand
    // has no argument of that id: a hidden local copy takes its place.
    let copies: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| NOT_FOR_SERVE.contains(&a.get_id().as_str()))
        .map(|a| a.clone().global(false).hide(true))
        .collect();
    cmd.mut_subcommand("serve", |s| s.args(copies))
}

/// Whether flag `id` was set, in kong's sense: on the command line, or by
/// its variable (whatever the value).
fn is_set(matches: &ArgMatches, sources: &Sources, path: &str, id: &str) -> bool {
    matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        || sources.came_from_env(path, id)
}

/// kong's `xor` groups, and our rule that a key is never empty.
fn check_groups(cli: &Cli, matches: &ArgMatches, sources: &Sources) -> Result<(), String> {
    if is_set(matches, sources, "", "daily") && is_set(matches, sources, "", "hourly") {
        return Err("--daily and --hourly can't be used together".into());
    }
    let (name, sub, key) = match (&cli.command, matches.subcommand()) {
        (Command::Save(a), Some((name, sub))) => (name, sub, &a.key),
        (Command::Restore(a), Some((name, sub))) => (name, sub, &a.key),
        _ => return Ok(()),
    };
    match (
        is_set(sub, sources, name, "key"),
        is_set(sub, sources, name, "hash_files"),
    ) {
        (true, true) => Err("--key and --hash-files can't be used together".into()),
        (false, false) => Err("missing flags: --key=KEY or -H/--hash-files=GLOB,...".into()),
        (true, false) if key.key.as_deref() == Some("") => {
            Err("--key is empty: give the key text".into())
        }
        (false, true) if crate::kong::list(&key.hash_files).is_empty() => {
            Err("-H/--hash-files has no patterns: give at least one glob".into())
        }
        _ => Ok(()),
    }
}

/// A directory argument as kong's `type:"path"` makes it: `~` and `~/…`
/// from `$HOME`, anything relative from the current directory, cleaned
/// lexically (`a/./b/../c` is `a/c`).
pub(crate) fn expand_dir(p: &Path) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    let joined = match p.strip_prefix("~") {
        Ok(rest) if home().is_some() => home().unwrap_or_default().join(rest),
        _ if p.is_absolute() => p.to_path_buf(),
        _ => match std::env::current_dir() {
            Ok(cwd) => cwd.join(p),
            Err(_) => return p.to_path_buf(),
        },
    };
    clean(&joined)
}

fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Cli, ParseFailure> {
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        parse(
            std::iter::once("cachew").chain(args.iter().copied()),
            &lookup,
        )
    }

    fn save(args: &[&str], env: &[(&str, &str)]) -> SaveArgs {
        match parse_with(args, env).unwrap().command {
            Command::Save(s) => s,
            other => panic!("expected save, got {other:?}"),
        }
    }

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
        hide_unused_globals(Cli::command()).debug_assert();
        let (cmd, _) = envars::apply(Cli::command(), &|_| None).unwrap();
        cmd.debug_assert();
    }

    #[test]
    fn key_and_hash_files_exclude_each_other_and_one_is_required() {
        assert!(parse_with(&["save", "ns", ".", "--key", "k", "-H", "*.lock"], &[]).is_err());
        assert!(parse_with(&["restore", "ns", "."], &[]).is_err());
        assert!(parse_with(&["save", "ns", ".", "--key", ""], &[]).is_err());
        let s = save(&["save", "ns", ".", "-H", "a", "--hash-files", "b,c"], &[]);
        assert_eq!(crate::kong::list(&s.key.hash_files), ["a", "b", "c"]);
        assert_eq!(s.paths, Vec::<PathBuf>::new());
        // The hidden old spelling still works.
        let s = save(&["save", "ns", ".", "--hash", "a"], &[]);
        assert_eq!(s.key.hash_files, ["a"]);
        // A variable sets the flag, for the required rule and the xor.
        let s = save(&["save", "ns", "."], &[("CACHEW_KEY", "k")]);
        assert_eq!(s.key.key.as_deref(), Some("k"));
        assert!(parse_with(&["save", "ns", ".", "-H", "x"], &[("CACHEW_KEY", "k")]).is_err());
    }

    #[test]
    fn command_line_wins_over_variables() {
        let s = save(
            &["save", "ns", ".", "--key", "k", "--exclude", "a"],
            &[("CACHEW_EXCLUDE", "b,c"), ("CACHEW_TTL", "1h")],
        );
        assert_eq!(s.exclude, ["a"]);
        assert_eq!(s.ttl, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn ttl_uses_go_durations() {
        let cli = parse_with(&["put", "ns", "k", "--ttl", "1h30m"], &[]).unwrap();
        let Command::Put { ttl, .. } = cli.command else {
            panic!("expected put");
        };
        assert_eq!(ttl, Some(Duration::from_secs(5400)));
        assert!(parse_with(&["put", "ns", "k", "--ttl", "1 day"], &[]).is_err());
    }

    #[test]
    fn bad_variables_name_themselves_whatever_the_command() {
        for (var, value) in [
            ("CACHEW_TTL", "1x"),
            ("CACHEW_NO_BUNDLE", "maybe"),
            ("CACHEW_PLATFORM", "T"),
            ("CACHEW_HEADERS", "novalue"),
        ] {
            match parse_with(&["namespaces"], &[(var, value)]) {
                Err(ParseFailure::Usage(m)) => assert!(m.starts_with(var), "{m}"),
                other => panic!("{var}: {other:?}"),
            }
        }
    }

    #[test]
    fn log_levels() {
        let level = |args: &[&str]| parse_with(args, &[]).map(|c| c.global.log_level);
        assert_eq!(level(&["namespaces"]).unwrap(), "info");
        assert_eq!(
            level(&["--log-level", "DEBUG", "namespaces"]).unwrap(),
            "debug"
        );
        assert!(level(&["--log-level", "cachew_transport=debug", "namespaces"]).is_ok());
        assert!(level(&["--log-level", "x=notalevel", "namespaces"]).is_err());
    }

    #[test]
    fn booleans() {
        let g = |args: &[&str], env: &[(&str, &str)]| parse_with(args, env).unwrap().global;
        assert!(g(&["--platform", "namespaces"], &[]).platform);
        assert!(!g(&["--platform=false", "namespaces"], &[]).platform);
        assert!(g(&["namespaces"], &[("CACHEW_PLATFORM", "YES")]).platform);
        assert!(!g(&["namespaces"], &[("CACHEW_PLATFORM", "0")]).platform);
        // Command line wins over the variable.
        assert!(
            !g(
                &["namespaces", "--platform=no"],
                &[("CACHEW_PLATFORM", "1")]
            )
            .platform
        );
    }

    #[test]
    fn daily_and_hourly_exclude_each_other_even_when_false() {
        assert!(parse_with(&["--daily", "--hourly", "namespaces"], &[]).is_err());
        assert!(parse_with(&["--daily=false", "--hourly", "namespaces"], &[]).is_err());
        assert!(parse_with(&["--hourly", "namespaces"], &[("CACHEW_DAILY", "true")]).is_err());
        let cli = parse_with(&["namespaces", "--daily", "--platform"], &[]).unwrap();
        assert!(cli.global.daily && cli.global.platform && !cli.global.hourly);
    }

    #[test]
    fn directories_expand_like_kong_paths() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(expand_dir(Path::new("a/./b/../c")), cwd.join("a/c"));
        assert_eq!(expand_dir(Path::new("/x/y/")), PathBuf::from("/x/y"));
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(expand_dir(Path::new("~/d")), PathBuf::from(&home).join("d"));
            assert_eq!(expand_dir(Path::new("~")), PathBuf::from(&home));
        }
    }
}

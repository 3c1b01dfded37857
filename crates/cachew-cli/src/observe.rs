//! Diagnostics on stderr: human-readable lines by default, JSON lines
//! with `--log-json` (for CI log collectors), filtered by `--log-level`.

use clap::builder::FalseyValueParser;
use clap::Args;

/// `--log-json`, also read from `CACHEW_LOG_JSON`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ObserveArgs {
    /// Write diagnostics on stderr as JSON lines (one object per event,
    /// with its span context) instead of text.
    #[arg(long, env = "CACHEW_LOG_JSON", global = true, value_parser = FalseyValueParser::new())]
    pub(crate) log_json: bool,
}

/// Installs the global subscriber; an unparsable level falls back to `warn`.
pub(crate) fn init_logging(level: &str, args: &ObserveArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if args.log_json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

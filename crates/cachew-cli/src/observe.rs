//! Diagnostics and telemetry: human-readable lines on stderr by default,
//! JSON lines with `--log-json` (shaped as the Go CLI's, keys renamed by
//! `--log-remap`; `log_json.rs`), both filtered by `--log-level` (Go's
//! slog levels); `--log-headers` for `cachew serve`'s request logs; and,
//! with the cargo feature `otel`, span export over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set, with W3C `traceparent` on every request to the Cachew server.

mod log_json;

use std::sync::OnceLock;

use clap::Args;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The Go CLI's `logging.Config` flags but `--log-level` (in `cli.rs`),
/// each also read from `CACHEW_<FLAG>`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ObserveArgs {
    /// Write diagnostics on stderr as JSON lines (Go's keys: time, level,
    /// msg, then attributes) instead of text.
    #[arg(long, global = true)]
    pub(crate) log_json: bool,

    /// Remap JSON log field names from old to new (e.g.
    /// "msg=message;time=timestamp"); no effect on text logs.
    #[arg(long, global = true, value_name = "OLD=NEW", value_parser = crate::kong::map_occurrence)]
    pub(crate) log_remap: Vec<String>,

    /// serve: log these inbound request headers as the given attribute
    /// (e.g. "X-Request-Id=request_id") on the request's log lines;
    /// credential headers are logged redacted. No effect on other commands.
    #[arg(long, global = true, value_name = "HEADER=ATTR", value_parser = parse_log_headers)]
    pub(crate) log_headers: Vec<String>,
}

/// One `--log-headers` occurrence: `HEADER=ATTR` entries with valid
/// header names and non-empty attributes.
fn parse_log_headers(s: &str) -> Result<String, String> {
    for (header, attr) in crate::kong::map(&[s.to_owned()])? {
        if http::HeaderName::from_bytes(header.trim().as_bytes()).is_err() {
            return Err(format!("{header:?} is not a header name"));
        }
        if attr.trim().is_empty() {
            return Err(format!("{header:?} needs an attribute name (HEADER=ATTR)"));
        }
    }
    Ok(s.to_owned())
}

/// A level in Go's slog syntax — `debug`, `info`, `warn`, `error` in any
/// case, optionally with an offset (`INFO+2`, `debug-4`) — as its number
/// (`DEBUG` -4, `INFO` 0, `WARN` 4, `ERROR` 8). `Ok(None)` when `s` is no
/// level name at all; an error for a level name with a bad offset.
fn go_level(s: &str) -> Result<Option<i64>, String> {
    let (name, offset) = match s.find(['+', '-']) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let base = match name.to_ascii_lowercase().as_str() {
        "debug" => -4,
        "info" => 0,
        "warn" => 4,
        "error" => 8,
        _ => return Ok(None),
    };
    let offset = match offset {
        None => 0,
        Some(o) => o
            .parse::<i64>()
            .map_err(|_| format!("{s:?}: the offset after {name:?} must be a number"))?,
    };
    Ok(Some(base + offset))
}

/// Go's name of level `l` (`slog.Level.String`), lower case.
fn go_level_name(l: i64) -> String {
    let (base, value) = match l {
        l if l < 0 => ("debug", l + 4),
        l if l < 4 => ("info", l),
        l if l < 8 => ("warn", l - 4),
        l => ("error", l - 8),
    };
    if value == 0 {
        base.to_owned()
    } else {
        format!("{base}{value:+}")
    }
}

/// The `--log-level` value parser: a Go slog level, kept as Go names it
/// (`INFO+4` is `warn`), or a tracing filter such as
/// `cachew_transport=debug` (an extension).
pub(crate) fn parse_log_level(s: &str) -> Result<String, String> {
    if let Some(level) = go_level(s)? {
        return Ok(go_level_name(level));
    }
    // A bare word would be a target name to tracing (`verbose` would mean
    // "only target verbose"): a typo of a level, refused as kong does.
    let lower = s.to_ascii_lowercase();
    if !s.contains('=') && lower != "trace" && lower != "off" {
        return Err(format!(
            "{s:?}: want debug, info, warn or error (or a tracing filter such as cachew_transport=debug)"
        ));
    }
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("want debug, info, warn or error (or a tracing filter): {e}"))
}

/// The tracing filter for a `--log-level` value: a Go level lets through
/// the events at or above it (below `DEBUG`, our trace events too; above
/// `ERROR`, nothing); anything else is a filter already.
fn filter_directive(level: &str) -> String {
    match go_level(level) {
        Ok(Some(l)) => match l {
            l if l < -4 => "trace",
            l if l <= -4 => "debug",
            l if l <= 0 => "info",
            l if l <= 4 => "warn",
            l if l <= 8 => "error",
            _ => "off",
        }
        .to_owned(),
        _ => level.to_owned(),
    }
}

static HEADERS: OnceLock<Vec<String>> = OnceLock::new();

/// Applies `--log-headers` to the server `cachew serve` builds.
pub(crate) fn configure_server(
    builder: cachew_server::ServerBuilder,
) -> anyhow::Result<cachew_server::ServerBuilder> {
    let Some(occurrences) = HEADERS.get().filter(|o| !o.is_empty()) else {
        return Ok(builder);
    };
    let pairs = crate::kong::map(occurrences).map_err(|e| anyhow::anyhow!("--log-headers: {e}"))?;
    Ok(builder.log_headers(cachew_server::LogHeaders::new(pairs)?))
}

/// Flushes exported spans when dropped (at the end of `main`).
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("cachew: warning: exporting spans: {e}");
            }
        }
    }
}

/// Installs the global subscriber, writing on stderr above any progress
/// bar. `RUST_LOG`, when set, replaces `--log-level` (and `extra`, one more
/// directive such as serve's access log); an unparsable level falls back
/// to `info`. Colour only on a terminal and without `NO_COLOR`.
pub(crate) fn init_logging(level: &str, extra: Option<&str>, args: &ObserveArgs) -> Telemetry {
    let _ = HEADERS.set(args.log_headers.clone());
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let mut filter = rust_log
        .as_deref()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::try_new(filter_directive(level))
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        });
    if rust_log.is_none() {
        if let Some(directive) = extra.and_then(|d| d.parse().ok()) {
            filter = filter.add_directive(directive);
        }
    }
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let fmt = if args.log_json {
        // Validated by the parser; a bad entry cannot reach here.
        let remap = crate::kong::map(&args.log_remap).unwrap_or_default();
        log_json::JsonLayer::new(remap).with_filter(filter).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(crate::progress::LogWriter)
            // Colour codes only for a terminal: server logs go to files.
            .with_ansi(!no_color && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .with_filter(filter)
            .boxed()
    };
    let registry = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "otel")]
    {
        let (layer, provider) = otel::layer();
        let _ = registry.with(layer).try_init();
        Telemetry { provider }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = registry.try_init();
        Telemetry::default()
    }
}

/// The span every command runs in (the root of its exported trace), named
/// by the command's variant only (its arguments may hold secrets).
pub(crate) fn command_span(command: &impl std::fmt::Debug) -> tracing::Span {
    let debug = format!("{command:?}");
    let name: String = debug
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    tracing::info_span!("cachew", command = %name)
}

#[cfg(feature = "otel")]
mod otel {
    use std::sync::OnceLock;

    use bytes::Bytes;
    use cachew_transport::{HttpClient, RequestBody};
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_http::HttpError;
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing::instrument::WithSubscriber as _;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    /// The OTLP exporter's HTTP client: cachew-transport (trust, proxies,
    /// timeouts as for the cache) on a runtime of its own, since the batch
    /// processor exports from its own thread and may flush after `main`'s
    /// runtime is gone.
    #[derive(Debug)]
    struct Exporter {
        http: HttpClient,
        runtime: OnceLock<tokio::runtime::Runtime>,
    }

    #[async_trait::async_trait]
    impl opentelemetry_http::HttpClient for Exporter {
        async fn send_bytes(
            &self,
            request: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, HttpError> {
            let runtime = self.runtime.get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("cachew-otlp")
                    .enable_all()
                    .build()
                    .expect("an OTLP export runtime")
            });
            let http = self.http.clone();
            let (parts, body) = request.into_parts();
            let request = http::Request::from_parts(parts, RequestBody::full(body));
            // The export's own requests are not traced: exporting them
            // would make every batch produce the next one.
            let send = async move {
                let resp = http.send(request).await?;
                let (parts, body) = resp.into_parts();
                let body = body.bytes_limited(4 << 20).await?;
                Ok::<_, cachew_transport::Error>(http::Response::from_parts(parts, body))
            }
            .with_subscriber(tracing::subscriber::NoSubscriber::default());
            Ok(runtime.spawn(send).await??)
        }
    }

    fn endpoint_configured() -> bool {
        [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
    }

    /// The OpenTelemetry layer (info-level spans and above, whatever
    /// `--log-level` says) and its provider, when an endpoint is configured.
    pub(super) fn layer<S>() -> (Option<impl Layer<S>>, Option<SdkTracerProvider>)
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        if !endpoint_configured() {
            return (None, None);
        }
        let http = match HttpClient::builder().max_retries(1).build() {
            Ok(http) => http,
            Err(e) => {
                eprintln!("cachew: warning: no span export: {e}");
                return (None, None);
            }
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Exporter {
                http,
                runtime: OnceLock::new(),
            })
            .with_timeout(std::time::Duration::from_secs(10))
            .build();
        let exporter = match exporter {
            Ok(exporter) => exporter,
            Err(e) => {
                eprintln!("cachew: warning: no span export: {e}");
                return (None, None);
            }
        };
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("cachew")
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("cachew");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(LevelFilter::INFO);
        (Some(layer), Some(provider))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_slog() {
        for (given, name, directive) in [
            ("INFO", "info", "info"),
            ("debug", "debug", "debug"),
            ("Warn", "warn", "warn"),
            ("ERROR", "error", "error"),
            ("INFO+4", "warn", "warn"),
            ("info+2", "info+2", "warn"),
            ("warn-1", "info+3", "warn"),
            ("DEBUG-4", "debug-4", "trace"),
            ("error+1", "error+1", "off"),
            ("debug+4", "info", "info"),
        ] {
            let parsed = parse_log_level(given).unwrap();
            assert_eq!(parsed, name, "{given}");
            assert_eq!(filter_directive(&parsed), directive, "{given}");
        }
        assert!(parse_log_level("info+x").is_err());
        assert!(parse_log_level("warn-").is_err());
        // Not a level name: a tracing filter (an extension), kept as is.
        assert_eq!(
            parse_log_level("cachew_transport=debug").unwrap(),
            "cachew_transport=debug"
        );
        assert_eq!(
            filter_directive("cachew_transport=debug"),
            "cachew_transport=debug"
        );
        assert!(parse_log_level("x=notalevel").is_err());
        assert!(parse_log_level("verbose").is_err());
        assert_eq!(parse_log_level("trace").unwrap(), "trace");
    }

    #[test]
    fn log_headers_entries_are_checked() {
        assert!(parse_log_headers("X-Request-Id=request_id;Authorization=auth").is_ok());
        assert!(parse_log_headers("Bad Header=x")
            .unwrap_err()
            .contains("not a header name"));
        assert!(parse_log_headers("X-Id=")
            .unwrap_err()
            .contains("attribute"));
        assert!(parse_log_headers("X-Id").is_err());
    }
}

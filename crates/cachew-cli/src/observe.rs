//! Diagnostics and telemetry: human-readable lines on stderr by default,
//! JSON lines with `--log-json` (for CI log collectors), both filtered by
//! `--log-level`; and, with the cargo feature `otel`, span export over
//! OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, with W3C `traceparent`
//! on every request to the Cachew server.

use clap::Args;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// `--log-json`, also read from `CACHEW_LOG_JSON`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ObserveArgs {
    /// Write diagnostics on stderr as JSON lines (one object per event,
    /// with its span context) instead of text.
    #[arg(long, global = true)]
    pub(crate) log_json: bool,
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
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let mut filter = rust_log
        .as_deref()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::try_new(level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        });
    if rust_log.is_none() {
        if let Some(directive) = extra.and_then(|d| d.parse().ok()) {
            filter = filter.add_directive(directive);
        }
    }
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(crate::progress::LogWriter)
        // Colour codes only for a terminal: server logs go to files.
        .with_ansi(!no_color && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = if args.log_json {
        fmt.json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        fmt.with_target(false).with_filter(filter).boxed()
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

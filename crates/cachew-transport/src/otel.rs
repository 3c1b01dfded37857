//! OpenTelemetry context propagation (cargo feature `otel`).

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::Injector;

/// Writes propagation fields into request headers.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // A propagator producing an invalid header is skipped rather than
        // failing the request: tracing must never break the transfer.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Injects the context of the current `tracing` span (the request's
/// `http.request` span, when a `tracing-opentelemetry` layer records spans)
/// or else the current OpenTelemetry context, with the global propagator (a
/// no-op until the application installs one).
pub(crate) fn inject(headers: &mut HeaderMap) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let from_span = tracing::Span::current().context();
    let cx = if from_span.span().span_context().is_valid() {
        from_span
    } else {
        opentelemetry::Context::current()
    };
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut HeaderInjector(headers));
    });
}

//! `--log-json`: one JSON object per event on stderr, shaped as the Go
//! CLI's slog JSON handler writes them — `time`, `level` (`DEBUG`,
//! `INFO`, `WARN`, `ERROR`; our trace level is `DEBUG-4`), `msg` with the
//! event's fields appended as Go's message handler does (`msg (k=v, …)`),
//! then the fields of the enclosing spans (Go's `logger.With`
//! attributes) and the event's own fields as top-level keys — with every
//! top-level key renamed as `--log-remap OLD=NEW` says.

use std::collections::HashMap;
use std::fmt::Debug;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter as _;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The layer; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct JsonLayer {
    /// `--log-remap`: old key to new key.
    remap: HashMap<String, String>,
}

impl JsonLayer {
    /// A layer renaming top-level keys as `remap` says.
    pub(crate) fn new(remap: impl IntoIterator<Item = (String, String)>) -> JsonLayer {
        JsonLayer {
            remap: remap.into_iter().collect(),
        }
    }

    /// The line for an event with these parts (no newline).
    fn line(
        &self,
        level: &Level,
        message: &str,
        spans: &[(String, Value)],
        event: &Fields,
    ) -> String {
        let mut msg = message.to_owned();
        if !event.fields.is_empty() {
            let attrs: Vec<String> = event
                .fields
                .iter()
                .map(|(k, v)| format!("{k}={}", go_format(v)))
                .collect();
            msg = format!("{msg} ({})", attrs.join(", "));
        }
        let mut pairs: Vec<(String, Value)> = vec![
            (
                "time".into(),
                Value::from(rfc3339_millis(SystemTime::now())),
            ),
            ("level".into(), Value::from(go_level(level))),
            ("msg".into(), Value::from(msg)),
        ];
        for (key, value) in spans.iter().chain(&event.fields) {
            match pairs.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value.clone(),
                None => pairs.push((key.clone(), value.clone())),
            }
        }
        let mut out = String::from("{");
        for (i, (key, value)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let key = self.remap.get(key).unwrap_or(key);
            out.push_str(&Value::from(key.as_str()).to_string());
            out.push(':');
            out.push_str(&value.to_string());
        }
        out.push('}');
        out
    }
}

/// Go's slog level names; tracing's `TRACE` is below Go's `DEBUG`.
fn go_level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "DEBUG-4",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// A value as Go's message handler appends it: strings bare unless empty
/// or holding a space, control character, `"`, `,`, `=`, `(` or `)`,
/// then quoted.
fn go_format(value: &Value) -> String {
    match value {
        Value::String(s) => {
            let quote = s.is_empty()
                || s.chars()
                    .any(|c| c <= ' ' || matches!(c, '"' | ',' | '=' | '(' | ')'));
            if quote {
                value.to_string()
            } else {
                s.clone()
            }
        }
        other => other.to_string(),
    }
}

/// `2026-12-02T02:44:00.123Z`: RFC 3339 with milliseconds, as slog's JSON
/// handler writes times (in UTC here).
fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The fields of a span or an event, in order; an event's `message` apart.
#[derive(Debug, Default)]
struct Fields {
    message: Option<String>,
    fields: Vec<(String, Value)>,
    /// Spans keep a `message` field as a field.
    is_event: bool,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if self.is_event && field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
            return;
        }
        let name = field.name();
        // What tracing-log adds to events from the `log` crate (rustls):
        // where they were logged, not what.
        if self.is_event && name.starts_with("log.") {
            return;
        }
        match self.fields.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((name.to_owned(), value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut own = Fields {
            is_event: true,
            ..Fields::default()
        };
        event.record(&mut own);
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<Fields>() {
                    spans.extend(fields.fields.iter().cloned());
                }
            }
        }
        let message = own.message.take().unwrap_or_default();
        let mut line = self.line(event.metadata().level(), &message, &spans, &own);
        line.push('\n');
        let mut out = crate::progress::LogWriter.make_writer();
        let _ = out.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_with_millis() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339_millis(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn lines_have_go_keys_attributes_and_remaps() {
        let layer = JsonLayer::new([("msg".to_owned(), "message".to_owned())]);
        let event = Fields {
            message: None,
            fields: vec![
                ("key".into(), Value::from("a b")),
                ("n".into(), Value::from(3)),
            ],
            is_event: true,
        };
        let spans = vec![("request_id".to_owned(), Value::from("r-1"))];
        let line = layer.line(&Level::WARN, "retrying", &spans, &event);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "retrying (key=\"a b\", n=3)");
        assert!(v.get("msg").is_none(), "{line}");
        assert_eq!(v["request_id"], "r-1");
        assert_eq!(v["n"], 3);
        assert!(line.starts_with("{\"time\":"), "{line}");
    }
}

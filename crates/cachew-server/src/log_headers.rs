//! Request headers as log attributes (the Go server's `--log-headers`):
//! each request is served inside a `request` span whose fields are the
//! configured attributes, valued from the request's headers, so the
//! access log entry and every event logged while serving it carry them.
//!
//! `tracing` fields are normally named in the source; these are named by
//! the operator, so the span's callsite is made once, when the
//! configuration is built, and lives for the rest of the process. Values
//! of credential headers (`Authorization`, `Proxy-Authorization`,
//! `Cookie`) are never logged: the attribute says `<redacted>`.

use std::fmt;
use std::sync::OnceLock;

use http::header::{HeaderMap, HeaderName};
use tracing::callsite::{Callsite, Identifier};
use tracing::field::{Field, FieldSet, Value};
use tracing::metadata::Kind;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Span};

/// What a credential header's attribute says instead of its value.
pub const REDACTED: &str = "<redacted>";

/// The span callsite made for one configuration.
struct DynamicCallsite {
    metadata: OnceLock<Metadata<'static>>,
}

impl Callsite for DynamicCallsite {
    fn set_interest(&self, _interest: Interest) {
        // Asked of the dispatcher each time (`enabled`), never cached.
    }

    fn metadata(&self) -> &Metadata<'_> {
        self.metadata.get().expect("set before registration")
    }
}

/// Which request headers become which log attributes; see
/// [`ServerBuilder::log_headers`](crate::ServerBuilder::log_headers).
#[derive(Clone)]
pub struct LogHeaders {
    /// Header and the index of its attribute among the span's fields.
    headers: Vec<(HeaderName, usize)>,
    metadata: &'static Metadata<'static>,
}

impl fmt::Debug for LogHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = self.metadata.fields();
        f.debug_map()
            .entries(self.headers.iter().map(|(h, i)| {
                let name = fields.iter().nth(*i).map(|f| f.name()).unwrap_or("?");
                (h.as_str(), name)
            }))
            .finish()
    }
}

/// A `--log-headers` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log header {header:?}: {reason}")]
pub struct InvalidLogHeader {
    /// The header name as given.
    pub header: String,
    /// What is wrong with it.
    pub reason: String,
}

fn is_credential(name: &HeaderName) -> bool {
    name == http::header::AUTHORIZATION
        || name == http::header::PROXY_AUTHORIZATION
        || name == http::header::COOKIE
}

impl LogHeaders {
    /// `(header, attribute)` pairs, e.g. `("X-Request-Id", "request_id")`.
    /// Header names are case-insensitive; several headers may feed one
    /// attribute (the first present wins). Fails on an invalid header
    /// name or an empty attribute.
    ///
    /// Each call makes a `tracing` callsite that is never freed: build it
    /// once per process, from the configuration.
    pub fn new<H, A>(
        pairs: impl IntoIterator<Item = (H, A)>,
    ) -> Result<LogHeaders, InvalidLogHeader>
    where
        H: AsRef<str>,
        A: AsRef<str>,
    {
        let mut names: Vec<&'static str> = Vec::new();
        let mut headers = Vec::new();
        for (header, attr) in pairs {
            let (header, attr) = (header.as_ref(), attr.as_ref().trim());
            let name =
                HeaderName::from_bytes(header.trim().as_bytes()).map_err(|_| InvalidLogHeader {
                    header: header.to_owned(),
                    reason: "not a valid header name".into(),
                })?;
            if attr.is_empty() {
                return Err(InvalidLogHeader {
                    header: header.to_owned(),
                    reason: "the attribute name is empty".into(),
                });
            }
            let index = match names.iter().position(|n| *n == attr) {
                Some(i) => i,
                None => {
                    names.push(Box::leak(attr.to_owned().into_boxed_str()));
                    names.len() - 1
                }
            };
            headers.push((name, index));
        }
        let names: &'static [&'static str] = Box::leak(names.into_boxed_slice());
        let callsite: &'static DynamicCallsite = Box::leak(Box::new(DynamicCallsite {
            metadata: OnceLock::new(),
        }));
        let metadata = callsite.metadata.get_or_init(|| {
            Metadata::new(
                "request",
                // The access log's target: a filter that lets the access
                // log through (`cachew serve` at any --log-level) lets its
                // attributes through too.
                "cachew_server::access",
                Level::INFO,
                Some(file!()),
                Some(line!()),
                Some(module_path!()),
                FieldSet::new(names, Identifier(callsite)),
                Kind::SPAN,
            )
        });
        tracing::callsite::register(callsite);
        Ok(LogHeaders { headers, metadata })
    }

    /// Whether no header is configured.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The span to serve a request with `headers` in (disabled when the
    /// subscriber does not want it). An attribute whose headers are all
    /// absent (or not text) is left out, as Go leaves out empty ones.
    pub(crate) fn span(&self, headers: &HeaderMap) -> Span {
        let enabled = tracing::dispatcher::get_default(|d| d.enabled(self.metadata));
        if !enabled {
            return Span::none();
        }
        let fields = self.metadata.fields();
        let mut values: Vec<Option<String>> = vec![None; fields.len()];
        for (name, index) in &self.headers {
            if values[*index].is_some() {
                continue;
            }
            let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            values[*index] = Some(if is_credential(name) {
                REDACTED.to_owned()
            } else {
                value.to_owned()
            });
        }
        let empty: [(&Field, Option<&dyn Value>); 0] = [];
        let span = Span::new(self.metadata, &fields.value_set(&empty));
        for (field, value) in fields.iter().zip(&values) {
            if let Some(value) = value {
                span.record(&field, value.as_str());
            }
        }
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_entries_are_named() {
        let err = LogHeaders::new([("bad header", "x")]).unwrap_err();
        assert_eq!(err.header, "bad header");
        assert!(err.to_string().contains("not a valid header name"));
        let err = LogHeaders::new([("X-Id", " ")]).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let ok = LogHeaders::new([("X-Id", "id"), ("X-Other-Id", "id")]).unwrap();
        assert_eq!(ok.metadata.fields().len(), 1);
        assert!(format!("{ok:?}").contains("x-id"));
    }
}

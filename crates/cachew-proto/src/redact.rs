//! Removing credentials from URLs before they reach a message, a log line or
//! a `Debug` string — the one redactor every cachew-rs crate uses.
//!
//! A URL may carry `user:password@` (the Go client turns it into Basic
//! authentication), so any URL shown to a person goes through
//! [`redact_url`] or [`origin`] first.

/// `url` without its `user:password@` part, for messages.
///
/// Parsed with the `url` crate (WHATWG rules, as browsers and Go's
/// `net/url` agree on for http URLs). Text that does not parse as a URL
/// still has anything before the last `@` of its authority removed, so a
/// malformed URL cannot leak a password either.
///
/// ```
/// use cachew_proto::redact_url;
/// assert_eq!(
///     redact_url("https://ci:s3cret@cache.example/api?x=1"),
///     "https://cache.example/api?x=1"
/// );
/// assert_eq!(redact_url("http://h:8080/p"), "http://h:8080/p");
/// ```
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.has_authority() => {
            if parsed.username().is_empty() && parsed.password().is_none() {
                // Unchanged: keep the caller's spelling (no added `/`).
                return url.to_owned();
            }
            // Neither setter fails on a URL with an authority.
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.into()
        }
        _ => strip_userinfo(url),
    }
}

/// The origin of `url`, `scheme://host:port` with the port always given,
/// without credentials, path or query; `None` when `url` has no host.
///
/// ```
/// use cachew_proto::redact;
/// assert_eq!(
///     redact::origin("https://u:p@example.com/a?token=x").as_deref(),
///     Some("https://example.com:443")
/// );
/// ```
pub fn origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    let port = parsed.port_or_known_default()?;
    Some(format!("{}://{host}:{port}", parsed.scheme()))
}

/// The fallback for text the URL parser rejects: drops everything up to
/// the last `@` before the authority ends.
fn strip_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match scheme {
            Some(scheme) => format!("{scheme}://{}", &rest[at + 1..]),
            None => rest[at + 1..].to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_survive() {
        let cases = [
            ("https://user:secret@host/p", "https://host/p"),
            ("https://user@host/p", "https://host/p"),
            (
                "https://:secret@host:8443/p?q=1#f",
                "https://host:8443/p?q=1#f",
            ),
            ("http://a%40b:sec%2Fret@h/x", "http://h/x"),
            // Not URLs to the parser, still stripped.
            ("user:secret@host/p", "host/p"),
            ("https://user:secret@[bad/p", "https://[bad/p"),
            // Nothing to remove.
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("/a/b@c", "/a/b@c"),
            ("https://h/a@b", "https://h/a@b"),
        ];
        for (input, want) in cases {
            let got = redact_url(input);
            assert_eq!(got, want, "{input}");
            assert!(
                !got.contains("secret") && !got.contains("sec%2Fret"),
                "{got}"
            );
        }
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin("https://user:secret@example.com/a/b?token=x").as_deref(),
            Some("https://example.com:443")
        );
        assert_eq!(
            origin("http://127.0.0.1:8080/api").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin("http://[::1]/").as_deref(), Some("http://[::1]:80"));
        assert_eq!(origin("not a url"), None);
    }
}

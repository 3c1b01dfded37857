//! The `--url` rules: which text names a server, which a local cache
//! directory, and which is a mistake.
//!
//! - `http://…` and `https://…` (any case) are a Cachew server.
//! - `file://…` is the embedded on-disk cache at the URL's path,
//!   percent-decoded (`file:///var/cache/cachew`, `file://localhost/x`);
//!   a file URL naming another host is refused.
//! - A bare path is the on-disk cache only when it is clearly a path: it
//!   starts with `/`, `./`, `../` or `~` (`~` and `~/…` expand from `$HOME`).
//! - `s3://BUCKET/PREFIX`, `gs://…` and `az://…` are an object store, used
//!   directly (`cachew-objstore`; each scheme needs its cargo feature).
//! - Anything else — `cachew.example.com:8080`, `htp://host`, `ftp://b` — is
//!   a usage error naming the value and the accepted forms, never a
//!   directory created by accident (LESSONS 22).

use std::path::PathBuf;

use crate::backend::Target;

/// The accepted forms, for error messages.
const FORMS: &str = "use http://HOST[:PORT], https://HOST[:PORT], file:///PATH, \
     s3://BUCKET/PREFIX, or a directory path starting with /, ./, ../ or ~";

/// Parses `--url` (or `CACHEW_URL`).
pub(crate) fn parse(text: &str) -> Result<Target, String> {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let parsed = url::Url::parse(text).map_err(|e| format!("invalid --url {text:?}: {e}"))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("invalid --url {text:?}: no host; {FORMS}"));
        }
        return Ok(Target::Remote(text.to_owned()));
    }
    if lower.starts_with("file:") {
        return file_url(text);
    }
    if cachew_objstore::is_object_store_url(text) {
        return Ok(Target::ObjectStore(text.to_owned()));
    }
    if text.starts_with('/') || text.starts_with("./") || text.starts_with("../") {
        return Ok(Target::Disk(PathBuf::from(text)));
    }
    if text == "~" || text.starts_with("~/") {
        let home = std::env::var_os("HOME")
            .ok_or_else(|| format!("invalid --url {text:?}: $HOME is not set"))?;
        let rest = text.trim_start_matches('~').trim_start_matches('/');
        return Ok(Target::Disk(PathBuf::from(home).join(rest)));
    }
    if text.is_empty() {
        return Err(format!("--url is empty: {FORMS}"));
    }
    Err(format!("invalid --url {text:?}: {FORMS}"))
}

fn file_url(text: &str) -> Result<Target, String> {
    let parsed = url::Url::parse(text).map_err(|e| format!("invalid --url {text:?}: {e}"))?;
    match parsed.host_str() {
        None | Some("") | Some("localhost") => {}
        Some(host) => {
            return Err(format!(
                "invalid --url {text:?}: a file URL cannot name host {host:?}; \
                 use file:///PATH"
            ))
        }
    }
    let path = parsed
        .to_file_path()
        .map_err(|()| format!("invalid --url {text:?}: not a local path; use file:///PATH"))?;
    Ok(Target::Disk(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let remote = |s: &str| Target::Remote(s.to_owned());
        let disk = |s: &str| Target::Disk(PathBuf::from(s));
        let cases = [
            ("http://127.0.0.1:8080", remote("http://127.0.0.1:8080")),
            ("HTTPS://cache/x", remote("HTTPS://cache/x")),
            ("file:///tmp/c", disk("/tmp/c")),
            ("file://localhost/tmp/c", disk("/tmp/c")),
            ("file:///tmp/with%20space", disk("/tmp/with space")),
            ("/var/cache", disk("/var/cache")),
            ("./cache", disk("./cache")),
            ("../cache", disk("../cache")),
            (
                "s3://bucket/ci",
                Target::ObjectStore("s3://bucket/ci".to_owned()),
            ),
            ("gs://bucket", Target::ObjectStore("gs://bucket".to_owned())),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(
                parse("~/c"),
                Ok(Target::Disk(PathBuf::from(&home).join("c")))
            );
        }
    }

    #[test]
    fn everything_else_is_refused_with_the_forms() {
        for text in [
            "cachew.example.com:8080",
            "cache",
            "htp://host",
            "ftp://bucket",
            "file://host/x",
            "http://",
            "",
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("--url"), "{text}: {err}");
            if !text.starts_with("file") && !text.starts_with("http") {
                assert!(err.contains("file:///PATH"), "{text}: {err}");
            }
        }
    }
}

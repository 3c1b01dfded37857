//! Plain-words errors for the common mistakes: each names the thing and
//! what was expected (a missing object's key, a directory given to `put`,
//! a `file://` cache that does not exist, https spoken to an http port).
//!
//! A missing `file://` cache is an error for commands about one object
//! (`get`, `stat`, `delete`); `restore`, `namespaces` and `stats` see an
//! empty cache instead (a miss, nothing listed). None of them creates it.

use std::path::Path;

use anyhow::anyhow;
use cachew_client::{Error, Key};

use crate::backend::Target;

/// An object command's error, naming the object when it is missing.
pub(crate) fn object(e: Error, namespace: &str, key_text: &str, key: &Key) -> anyhow::Error {
    match e {
        Error::NotFound => {
            let named = if key_text == key.to_hex() {
                format!("{namespace}/{key_text}")
            } else {
                format!("{namespace}/{key_text} (key {key})")
            };
            anyhow!(
                "object {named} not found in the cache: check the namespace, \
                 the key text and the prefixes (--platform, --daily, --hourly)"
            )
        }
        other => explain(other.into()),
    }
}

/// The hint for https:// spoken to a plain-http port.
const NOT_TLS: &str = "the server does not speak TLS on this port: it looks like an http:// \
     server; use http:// in --url";

/// Adds a plain-words hint to transport errors users commonly hit.
pub(crate) fn explain(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    let lower = text.to_ascii_lowercase();
    if text.contains(NOT_TLS) {
        return e;
    }
    if lower.contains("invalidcontenttype")
        || lower.contains("corrupt message")
        || lower.contains("wrong version number")
        || lower.contains("received corrupt")
    {
        return e.context(NOT_TLS);
    }
    e
}

/// For commands that only read: a `file://` cache directory must exist
/// (opening one would otherwise create it).
pub(crate) fn check_disk_exists(target: &Target) -> anyhow::Result<()> {
    if let Target::Disk(path) = target {
        if !path.is_dir() {
            return Err(anyhow!(
                "no cache directory at {}: --url names a local cache that does not exist \
                 (it is created by the first save or put)",
                path.display()
            ));
        }
    }
    Ok(())
}

/// `put NS KEY FILE`: FILE must not be a directory.
pub(crate) fn check_put_file(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        return Err(anyhow!(
            "{} is a directory: put uploads one file or stdin; \
             use `cachew save NS {}` to archive a directory",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_thing() {
        let k = Key::new("k");
        let m = format!("{:#}", object(Error::NotFound, "ns", "k", &k));
        assert!(m.contains("ns/k") && m.contains(&k.to_hex()), "{m}");
        let dir = tempfile::tempdir().unwrap();
        let m = check_put_file(dir.path()).unwrap_err().to_string();
        assert!(m.contains("is a directory") && m.contains(&dir.path().display().to_string()));
        let missing = Target::Disk(dir.path().join("nope"));
        assert!(check_disk_exists(&missing)
            .unwrap_err()
            .to_string()
            .contains("nope"));
        assert!(check_disk_exists(&Target::Disk(dir.path().into())).is_ok());
    }
}

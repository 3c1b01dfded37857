//! Git endpoint URLs (`PROTOCOL.md` §5).
//!
//! ```
//! use cachew_proto::git::{endpoint_url, resolve_bundle_url};
//!
//! assert_eq!(
//!     endpoint_url("http://cache:8080/", "https://github.com/org/repo.git", "snapshot.tar.zst").unwrap(),
//!     "http://cache:8080/git/github.com/org/repo/snapshot.tar.zst"
//! );
//! assert_eq!(
//!     resolve_bundle_url("http://cache:8080", "/git/github.com/org/repo/snapshot.bundle?base=abc").unwrap(),
//!     "http://cache:8080/git/github.com/org/repo/snapshot.bundle?base=abc"
//! );
//! ```

use crate::error::{ProtoError, Reason};

/// Snapshot endpoint suffix.
pub const SNAPSHOT: &str = "snapshot.tar.zst";
/// LFS snapshot endpoint suffix.
pub const LFS_SNAPSHOT: &str = "lfs-snapshot.tar.zst";
/// Ensure-refs endpoint suffix.
pub const ENSURE_REFS: &str = "ensure-refs";

/// The `{host}/{path}` part of a repository URL, with a trailing `.git` and
/// slashes removed: `https://github.com/org/repo.git` → `github.com/org/repo`.
/// Credentials in the URL are dropped; a port stays with the host.
pub fn repo_path(repo_url: &str) -> Result<String, ProtoError> {
    let err = |reason| ProtoError::InvalidRepoUrl {
        url: crate::redact_url(repo_url),
        reason: Reason(reason),
    };
    let (_, rest) = repo_url
        .split_once("://")
        .ok_or_else(|| err("expected an absolute URL such as https://github.com/org/repo"))?;
    // Drop query and fragment.
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return Err(err("the URL has no host"));
    }
    let mut path = path.trim_matches('/');
    path = path.strip_suffix(".git").unwrap_or(path);
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Err(err("the URL has no repository path"));
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(err("the repository path has empty, '.' or '..' segments"));
    }
    Ok(format!("{host}/{path}"))
}

/// The URL of a git endpoint: `{base}/git/{host}/{path}/{suffix}`.
pub fn endpoint_url(base_url: &str, repo_url: &str, suffix: &str) -> Result<String, ProtoError> {
    Ok(format!(
        "{}/git/{}/{}",
        base_url.trim_end_matches('/'),
        repo_path(repo_url)?,
        suffix.trim_start_matches('/')
    ))
}

/// Resolves an `X-Cachew-Bundle-Url` value: absolute URLs are used as they
/// are, root-relative ones (`/git/…`) are joined to the base URL.
pub fn resolve_bundle_url(base_url: &str, bundle_url: &str) -> Result<String, ProtoError> {
    let value = bundle_url.trim();
    if value.starts_with("http://") || value.starts_with("https://") {
        return Ok(value.to_owned());
    }
    if value.starts_with('/') && !value.starts_with("//") {
        return Ok(format!("{}{value}", base_url.trim_end_matches('/')));
    }
    Err(ProtoError::InvalidBundleUrl {
        url: crate::redact_url(bundle_url),
        reason: Reason("expected an absolute http(s) URL or a path starting with '/'"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_paths() {
        let cases = [
            ("https://github.com/org/repo", "github.com/org/repo"),
            ("https://github.com/org/repo.git", "github.com/org/repo"),
            ("https://github.com/org/repo/", "github.com/org/repo"),
            ("https://github.com/org/repo.git/", "github.com/org/repo"),
            (
                "http://git.example:8443/a/b/c.git",
                "git.example:8443/a/b/c",
            ),
            (
                "https://user:tok@github.com/org/repo",
                "github.com/org/repo",
            ),
            ("https://github.com/org/repo?x=1", "github.com/org/repo"),
            ("ssh://git@host/org/repo.git", "host/org/repo"),
        ];
        for (url, want) in cases {
            assert_eq!(repo_path(url).unwrap(), want, "{url}");
        }
    }

    #[test]
    fn bad_repo_urls() {
        for (url, why) in [
            ("github.com/org/repo", "absolute URL"),
            ("https:///org/repo", "no host"),
            ("https://github.com", "no repository path"),
            ("https://github.com/", "no repository path"),
            ("https://github.com/.git", "no repository path"),
            ("https://github.com/a//b", "segments"),
            ("https://github.com/a/../b", "segments"),
        ] {
            let msg = repo_path(url).unwrap_err().to_string();
            assert!(msg.contains(why), "{url}: {msg}");
        }
        let msg = repo_path("https://user:secret@host")
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("secret"), "{msg}");
    }

    #[test]
    fn endpoints_and_bundles() {
        assert_eq!(
            endpoint_url("http://c:1", "https://h/o/r", ENSURE_REFS).unwrap(),
            "http://c:1/git/h/o/r/ensure-refs"
        );
        assert_eq!(
            resolve_bundle_url("http://c:1/", "https://other/x.bundle").unwrap(),
            "https://other/x.bundle"
        );
        assert_eq!(
            resolve_bundle_url("http://c:1/", "/git/h/o/r/snapshot.bundle?base=1").unwrap(),
            "http://c:1/git/h/o/r/snapshot.bundle?base=1"
        );
        assert!(resolve_bundle_url("http://c:1", "relative/x").is_err());
        assert!(resolve_bundle_url("http://c:1", "//evil/x").is_err());
    }
}

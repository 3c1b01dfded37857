//! Access control: bearer tokens from a token file, each with a right
//! (`read` or `write`) over the namespaces matching a glob, checked before
//! a request is routed.
//!
//! The token file has one token per line, optionally followed by its right
//! and a namespace glob: `TOKEN [read|write [GLOB]]`. A bare token may write
//! (and so read) every namespace; `write` implies `read`; the glob's `*`
//! matches any run of characters and `?` one character. `#` starts a
//! comment; blank lines are ignored. A token on several lines has the union
//! of their rights.
//!
//! Tokens are kept only as SHA-256 digests and a presented token is compared
//! with every one of them in constant time, so neither the comparison nor
//! the number of lines compared reveals how much of a guess was right. A
//! token is named in logs by its [`TokenId`] (the line it came from), never
//! by its value.

use std::fmt;
use std::path::Path;

use http::header::{HeaderValue, AUTHORIZATION};
use http::{Method, StatusCode};
use sha2::{Digest, Sha256};

/// Paths anyone may call: the Go server's liveness and readiness probes.
pub(crate) const OPEN_PATHS: &[&str] = &["/_liveness", "/_readiness"];

/// Names a token in logs without revealing it: where it was defined (e.g.
/// `tokens.txt:3`, or `--authorization`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenId(String);

impl TokenId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a token may do in the namespaces its glob matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Right {
    /// Open, Stat and list.
    Read,
    /// Everything `Read` allows, plus Create, Delete and Invalidate.
    Write,
}

/// One line of a token file.
#[derive(Clone)]
struct Grant {
    id: TokenId,
    digest: [u8; 32],
    right: Right,
    namespaces: String,
}

/// The set of accepted bearer tokens. `Debug` shows ids, never tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    grants: Vec<Grant>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.grants
                    .iter()
                    .map(|g| format!("{} {:?} {}", g.id, g.right, g.namespaces)),
            )
            .finish()
    }
}

/// A token file that cannot be used. The message names the line, never the
/// token on it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokenFileError(String);

impl Tokens {
    /// No tokens.
    pub fn new() -> Tokens {
        Tokens::default()
    }

    /// Whether no token was added.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// How many grants (lines) there are.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// Adds `token` with `right` over the namespaces matching `namespaces`
    /// (a glob; `*` for all), named `id` in logs.
    pub fn add(
        &mut self,
        id: impl Into<String>,
        token: &str,
        right: Right,
        namespaces: impl Into<String>,
    ) -> &mut Self {
        self.grants.push(Grant {
            id: TokenId(id.into()),
            digest: Sha256::digest(token.as_bytes()).into(),
            right,
            namespaces: namespaces.into(),
        });
        self
    }

    /// Reads a token file (format in the module docs); ids are
    /// `{file name}:{line}`.
    pub fn from_file(path: &Path) -> Result<Tokens, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            TokenFileError(format!("cannot read token file {}: {e}", path.display()))
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Tokens::parse(&name, &text)
    }

    /// Parses token-file `text`; `source` names it in ids and errors.
    pub fn parse(source: &str, text: &str) -> Result<Tokens, TokenFileError> {
        let mut tokens = Tokens::new();
        for (index, line) in text.lines().enumerate() {
            let at = format!("{source}:{}", index + 1);
            let line = line.split_once('#').map_or(line, |(before, _)| before);
            let mut words = line.split_whitespace();
            let Some(token) = words.next() else {
                continue;
            };
            let right = match words.next() {
                None | Some("write") => Right::Write,
                Some("read") => Right::Read,
                Some(other) => {
                    return Err(TokenFileError(format!(
                        "{at}: the right must be `read` or `write`, not `{other}`"
                    )))
                }
            };
            let glob = words.next().unwrap_or("*");
            if let Some(extra) = words.next() {
                return Err(TokenFileError(format!(
                    "{at}: unexpected `{extra}`; a line is `TOKEN [read|write [NAMESPACE-GLOB]]`"
                )));
            }
            if !glob
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*' | '?'))
            {
                return Err(TokenFileError(format!(
                    "{at}: `{glob}` is not a namespace glob (letters, digits, `_`, `-`, `*`, `?`)"
                )));
            }
            tokens.add(at, token, right, glob);
        }
        Ok(tokens)
    }

    /// The grants `token` holds, found by comparing its digest with every
    /// grant's in constant time.
    fn lookup(&self, token: &str) -> Vec<&Grant> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every grant is compared, with no early exit, so the time taken
        // does not depend on which line (if any) matched.
        self.grants
            .iter()
            .filter(|g| constant_time_eq(&g.digest, &digest))
            .collect()
    }

    /// Decides `parts`: `Ok(None)` for an open path, `Ok(Some(id))` for a
    /// token with the right, or the rejection to answer with.
    pub(crate) fn check(&self, parts: &http::request::Parts) -> Result<Option<TokenId>, Denied> {
        let path = parts.uri.path();
        if OPEN_PATHS.contains(&path) {
            return Ok(None);
        }
        let Some(token) = bearer(parts.headers.get(AUTHORIZATION)) else {
            return Err(Denied::Unauthenticated { invalid: false });
        };
        let grants = self.lookup(token);
        let Some(first) = grants.first() else {
            return Err(Denied::Unauthenticated { invalid: true });
        };
        let id = first.id.clone();
        let allowed = match needed(&parts.method, path) {
            Need::AnyToken => true,
            Need::Namespace(right, ns) => grants
                .iter()
                .any(|g| g.right >= right && glob_match(&g.namespaces, ns)),
        };
        if allowed {
            Ok(Some(id))
        } else {
            Err(Denied::Forbidden { id })
        }
    }
}

/// Why a request was refused.
#[derive(Debug)]
pub(crate) enum Denied {
    /// No bearer token (`invalid: false`) or one nobody issued: `401`.
    Unauthenticated { invalid: bool },
    /// A valid token without the right: `403`.
    Forbidden { id: TokenId },
}

impl Denied {
    /// The status, the `WWW-Authenticate` challenge if any, and the message.
    pub(crate) fn answer(&self) -> (StatusCode, Option<HeaderValue>, &'static str) {
        match self {
            // RFC 6750 §3: a challenge on every 401; `invalid_token` when
            // a token was presented but not accepted.
            Denied::Unauthenticated { invalid: false } => (
                StatusCode::UNAUTHORIZED,
                Some(HeaderValue::from_static("Bearer realm=\"cachew\"")),
                "a bearer token is required",
            ),
            Denied::Unauthenticated { invalid: true } => (
                StatusCode::UNAUTHORIZED,
                Some(HeaderValue::from_static(
                    "Bearer realm=\"cachew\", error=\"invalid_token\"",
                )),
                "the bearer token is not valid",
            ),
            Denied::Forbidden { .. } => {
                (StatusCode::FORBIDDEN, None, "the token does not allow this")
            }
        }
    }
}

/// What a request needs.
enum Need<'a> {
    /// Any valid token: statistics, the namespace list, the git endpoints
    /// and paths that do not exist.
    AnyToken,
    /// `Right` over the namespace.
    Namespace(Right, &'a str),
}

fn needed<'a>(method: &Method, path: &'a str) -> Need<'a> {
    let Some(object) = path.strip_prefix("/api/v1/object/") else {
        return Need::AnyToken;
    };
    let ns = object.split('/').next().unwrap_or_default();
    let right = if matches!(*method, Method::GET | Method::HEAD) {
        Right::Read
    } else {
        Right::Write
    };
    Need::Namespace(right, ns)
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(value: Option<&HeaderValue>) -> Option<&str> {
    bearer_token(value?.to_str().ok()?)
}

/// The token of an `Authorization` value `Bearer TOKEN` (the scheme is
/// matched case-insensitively, RFC 9110 §11.1), or `None` for any other
/// value.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    let valid = scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && !token.contains(char::is_whitespace);
    valid.then_some(token)
}

/// Compares two digests without a data-dependent branch or early exit.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keeps the optimiser from turning the fold into an early-exit compare.
    std::hint::black_box(diff) == 0
}

/// `*` (any run) and `?` (one character) glob matching, linear time.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, path: &str, auth: Option<&str>) -> http::request::Parts {
        let mut req = http::Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        req.body(()).unwrap().into_parts().0
    }

    const FILE: &str = "\
# comment line
admin            # a bare token writes everything

reader read
ci     write ci-*
ci     read  *
team   read  team-?
";

    fn status(tokens: &Tokens, method: Method, path: &str, auth: Option<&str>) -> u16 {
        match tokens.check(&parts(method, path, auth)) {
            Ok(_) => 200,
            Err(d) => d.answer().0.as_u16(),
        }
    }

    #[test]
    fn token_file_rights_and_globs() {
        let t = Tokens::parse("tokens", FILE).unwrap();
        assert_eq!(t.len(), 5);
        let obj = |ns: &str| format!("/api/v1/object/{ns}/k");
        assert_eq!(
            status(&t, Method::POST, &obj("x"), Some("Bearer admin")),
            200
        );
        assert_eq!(
            status(&t, Method::GET, &obj("x"), Some("Bearer reader")),
            200
        );
        assert_eq!(
            status(&t, Method::POST, &obj("x"), Some("Bearer reader")),
            403
        );
        assert_eq!(
            status(&t, Method::DELETE, &obj("ci-a"), Some("Bearer ci")),
            200
        );
        assert_eq!(
            status(&t, Method::POST, &obj("main"), Some("Bearer ci")),
            403
        );
        assert_eq!(
            status(&t, Method::GET, &obj("main"), Some("Bearer ci")),
            200
        );
        assert_eq!(
            status(&t, Method::GET, &obj("team-a"), Some("bearer team")),
            200
        );
        assert_eq!(
            status(&t, Method::GET, &obj("team-ab"), Some("Bearer team")),
            403
        );
        assert_eq!(
            status(&t, Method::GET, "/api/v1/stats", Some("Bearer team")),
            200
        );
        assert_eq!(status(&t, Method::GET, &obj("x"), None), 401);
        assert_eq!(status(&t, Method::GET, &obj("x"), Some("Bearer nope")), 401);
        assert_eq!(status(&t, Method::GET, &obj("x"), Some("Basic admin")), 401);
        assert_eq!(status(&t, Method::GET, "/_liveness", None), 200);
        assert_eq!(status(&t, Method::GET, "/_readiness", None), 200);
        assert_eq!(status(&t, Method::GET, "/nowhere", None), 401);
    }

    #[test]
    fn ids_name_the_line_and_debug_hides_tokens() {
        let t = Tokens::parse("tokens.txt", FILE).unwrap();
        let id = t
            .check(&parts(Method::GET, "/api/v1/stats", Some("Bearer ci")))
            .unwrap()
            .unwrap();
        assert_eq!(id.as_str(), "tokens.txt:5");
        let debug = format!("{t:?}");
        assert!(debug.contains("tokens.txt:2"), "{debug}");
        assert!(
            !debug.contains("admin") && !debug.contains("reader"),
            "{debug}"
        );
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line_not_the_token() {
        let e = Tokens::parse("f", "s3cret readwrite\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f:1") && !e.contains("s3cret"), "{e}");
        let e = Tokens::parse("f", "\nx read a b\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f:2"), "{e}");
        let e = Tokens::parse("f", "x read ns/..\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("namespace glob"), "{e}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "abc"));
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("?-x", "a-x"));
        assert!(!glob_match("abc", "abcd"));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("  bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}

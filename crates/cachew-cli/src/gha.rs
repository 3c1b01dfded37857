//! GitHub Actions outputs: `cache-hit`, `cache-primary-key` and
//! `cache-matched-key` appended to the file `GITHUB_OUTPUT` names, and a
//! one-line summary to `GITHUB_STEP_SUMMARY`, as actions/cache gives them.
//!
//! Nothing is written when the variables are unset, so outside GitHub
//! Actions (or GitLab, which has no such files) this is a no-op. A file
//! that cannot be written is a warning, never a failed restore.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

/// The outputs of one `restore` or `save`.
#[derive(Debug)]
pub(crate) struct Outputs<'a> {
    /// `true` only for a hit on the primary key (a fallback match is
    /// `false`, as in actions/cache).
    pub(crate) cache_hit: bool,
    pub(crate) primary_key: &'a str,
    /// The key text that matched; empty on a miss.
    pub(crate) matched_key: &'a str,
}

/// Appends the outputs to `$GITHUB_OUTPUT` and `summary` to
/// `$GITHUB_STEP_SUMMARY`, each when set.
pub(crate) fn write(outputs: &Outputs<'_>, summary: &str) {
    write_with(outputs, summary, &|name| std::env::var_os(name));
}

pub(crate) fn write_with(
    outputs: &Outputs<'_>,
    summary: &str,
    env: &dyn Fn(&str) -> Option<OsString>,
) {
    if let Some(path) = env("GITHUB_OUTPUT").filter(|p| !p.is_empty()) {
        let text = format_outputs(outputs);
        if let Err(e) = append(Path::new(&path), &text) {
            tracing::warn!(
                "cannot write GITHUB_OUTPUT {}: {e}",
                Path::new(&path).display()
            );
        }
    }
    if let Some(path) = env("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        if let Err(e) = append(Path::new(&path), &format!("{summary}\n")) {
            tracing::warn!(
                "cannot write GITHUB_STEP_SUMMARY {}: {e}",
                Path::new(&path).display()
            );
        }
    }
}

/// The `name=value` lines; a value with a line break uses the
/// `name<<DELIMITER` form so it cannot inject other outputs.
pub(crate) fn format_outputs(o: &Outputs<'_>) -> String {
    let mut out = String::new();
    for (name, value) in [
        ("cache-hit", if o.cache_hit { "true" } else { "false" }),
        ("cache-primary-key", o.primary_key),
        ("cache-matched-key", o.matched_key),
    ] {
        if value.contains(['\n', '\r']) {
            let mut delim = String::from("CACHEW_EOF");
            while value.contains(&delim) {
                delim.push('_');
            }
            out.push_str(&format!("{name}<<{delim}\n{value}\n{delim}\n"));
        } else {
            out.push_str(&format!("{name}={value}\n"));
        }
    }
    out
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_multiline_values() {
        let o = Outputs {
            cache_hit: false,
            primary_key: "linux-npm",
            matched_key: "",
        };
        assert_eq!(
            format_outputs(&o),
            "cache-hit=false\ncache-primary-key=linux-npm\ncache-matched-key=\n"
        );
        let o = Outputs {
            cache_hit: true,
            primary_key: "a\ncache-hit=false",
            matched_key: "x",
        };
        let text = format_outputs(&o);
        assert!(text.contains("cache-primary-key<<CACHEW_EOF\na\ncache-hit=false\nCACHEW_EOF\n"));
    }

    #[test]
    fn appends_only_when_set() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let sum = dir.path().join("sum");
        std::fs::write(&out, "earlier=1\n").unwrap();
        let (o2, s2) = (out.clone(), sum.clone());
        let env = move |n: &str| match n {
            "GITHUB_OUTPUT" => Some(o2.clone().into_os_string()),
            "GITHUB_STEP_SUMMARY" => Some(s2.clone().into_os_string()),
            _ => None,
        };
        let o = Outputs {
            cache_hit: true,
            primary_key: "k",
            matched_key: "k",
        };
        write_with(&o, "restored k", &env);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("earlier=1\ncache-hit=true\n"), "{text}");
        assert_eq!(std::fs::read_to_string(&sum).unwrap(), "restored k\n");
        write_with(&o, "x", &|_| None);
    }
}

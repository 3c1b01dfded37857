//! Repository rules that are ordinary checks: the crate layering and tidy
//! rules (after rust-analyzer's `xtask/src/tidy.rs`).

use std::fs;
use std::path::Path;
use std::process::Command;

/// Crates each workspace crate must never depend on, directly or not.
///
/// **Architecture invariant:** `cachew-proto` is pure (no I/O runtime, no
/// HTTP stack); `cachew-archive` knows nothing of HTTP; `cachew-transport`
/// knows nothing of archives; `cachew-client` does not bring in the object
/// store (its users who need none build none); `cachew-objstore` sends
/// through cachew-transport, so no second HTTP or TLS stack comes in.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "cachew-proto",
        &[
            "tokio",
            "hyper",
            "hyper-util",
            "h2",
            "mio",
            "socket2",
            "http",
            "tower",
            "reqwest",
            "async-std",
            "rustls",
            "zstd",
            "tar",
        ],
    ),
    (
        "cachew-archive",
        &[
            "hyper",
            "hyper-util",
            "h2",
            "http",
            "tower",
            "rustls",
            "cachew-transport",
        ],
    ),
    (
        "cachew-transport",
        &["tar", "zstd", "cachew-archive", "cachew-client"],
    ),
    ("cachew-client", &["object_store", "cachew-objstore"]),
    ("cachew-objstore", &["reqwest", "aws-lc-rs", "aws-lc-sys"]),
];

/// Fails if a crate's normal dependency tree contains a forbidden crate.
pub(crate) fn layering(root: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut problems = Vec::new();
    for (krate, forbidden) in FORBIDDEN {
        let out = Command::new(&cargo)
            .current_dir(root)
            .args([
                "tree",
                "--package",
                krate,
                "--edges",
                "normal",
                "--prefix",
                "none",
                "--format",
                "{p}",
            ])
            .output()
            .map_err(|e| format!("could not run cargo tree: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo tree -p {krate} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if forbidden.contains(&name) {
                problems.push(format!("{krate} depends on {name} ({line})"));
            }
        }
    }
    if problems.is_empty() {
        eprintln!("xtask: layering ok");
        Ok(())
    } else {
        problems.sort();
        problems.dedup();
        Err(format!("layering violated:\n  {}", problems.join("\n  ")))
    }
}

/// Checks that every crate root starts with a `//!` doc and that no source
/// file calls the `dbg` or `todo` macros.
pub(crate) fn tidy(root: &Path) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        collect_rs(&root.join(dir), &mut files);
    }
    for file in &files {
        let text = fs::read_to_string(file).map_err(|e| format!("read {}: {e}", file.display()))?;
        let rel = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        let is_crate_root = rel.ends_with("src/lib.rs") || rel.ends_with("src/main.rs");
        if is_crate_root && !text.trim_start().starts_with("//!") {
            problems.push(format!("{rel}: crate root must start with a `//!` doc"));
        }
        // Built from parts so this file does not trip its own rule.
        for banned in [concat!("dbg", "!("), concat!("todo", "!(")] {
            if text.contains(banned) {
                problems.push(format!("{rel}: contains {banned}"));
            }
        }
    }
    if problems.is_empty() {
        eprintln!("xtask: tidy ok ({} files)", files.len());
        Ok(())
    } else {
        Err(format!("tidy rules violated:\n  {}", problems.join("\n  ")))
    }
}

pub(crate) fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

//! The unused-dependency check: every dependency a crate's `Cargo.toml`
//! declares must be named somewhere in the sources that can use it.
//!
//! This is the check `cargo machete` makes (a textual search, no build), done
//! here with std only so CI installs nothing for it. A dependency counts as
//! used when one of the crate's source files names it as a path
//! (`name::…`), imports it (`use name`) or links it (`extern crate name`).
//! Normal and build dependencies are searched for in `src/` and `build.rs`;
//! dev-dependencies also in `tests/`, `benches/` and `examples/`. A
//! dev-dependency that repeats a normal one (to add features for tests) is
//! used when the normal one is.
//!
//! A dependency needed without being named — one linked only for its C
//! library or enabled only for a feature of another crate — is listed, with
//! the reason in a comment, under machete's own key:
//!
//! ```toml
//! [package.metadata.cargo-machete]
//! ignored = ["zstd-sys"]
//! ```

use std::fs;
use std::path::{Path, PathBuf};

/// Which sources may use a dependency of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Build,
    Dev,
}

/// One declared dependency.
#[derive(Debug)]
struct Dep {
    /// The name in `Cargo.toml` (the key).
    key: String,
    /// The name the code uses: the key with `-` as `_` (a `package = …`
    /// rename still leaves the key as the name in code).
    ident: String,
    kind: Kind,
}

/// Checks every workspace member (`crates/*`, `xtask`, `tests`) under `root`.
pub(crate) fn check(root: &Path) -> Result<(), String> {
    let mut manifests = vec![root.join("xtask/Cargo.toml"), root.join("tests/Cargo.toml")];
    let crates = fs::read_dir(root.join("crates")).map_err(|e| format!("read crates/: {e}"))?;
    for entry in crates.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        if manifest.is_file() {
            manifests.push(manifest);
        }
    }
    manifests.sort();
    let problems = unused(&manifests)?;
    if problems.is_empty() {
        eprintln!("xtask: udeps ok ({} manifests)", manifests.len());
        Ok(())
    } else {
        Err(format!("unused dependencies:\n  {}", problems.join("\n  ")))
    }
}

/// Checks every crate whose manifest is in `manifests`; returns one line per
/// unused dependency.
pub(crate) fn unused(manifests: &[PathBuf]) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    for manifest in manifests {
        let text = fs::read_to_string(manifest)
            .map_err(|e| format!("read {}: {e}", manifest.display()))?;
        let dir = manifest.parent().unwrap_or(Path::new("."));
        let (deps, ignored) = parse(&text);
        let read = |sub: &[&str]| -> Result<String, String> {
            let mut files = Vec::new();
            for s in sub {
                let p = dir.join(s);
                if p.is_file() {
                    files.push(p);
                } else {
                    crate::tidy::collect_rs(&p, &mut files);
                }
            }
            let mut all = String::new();
            for f in files {
                all.push_str(
                    &fs::read_to_string(&f).map_err(|e| format!("read {}: {e}", f.display()))?,
                );
                all.push('\n');
            }
            Ok(all)
        };
        let product = read(&["src", "build.rs"])?;
        let dev = read(&["tests", "benches", "examples"])?;
        let normal_names: Vec<&str> = deps
            .iter()
            .filter(|d| d.kind == Kind::Normal)
            .map(|d| d.key.as_str())
            .collect();
        for dep in &deps {
            if ignored.iter().any(|i| i == &dep.key) {
                continue;
            }
            let used = match dep.kind {
                Kind::Normal | Kind::Build => names(&product, &dep.ident),
                Kind::Dev => {
                    normal_names.contains(&dep.key.as_str())
                        || names(&product, &dep.ident)
                        || names(&dev, &dep.ident)
                }
            };
            if !used {
                let section = match dep.kind {
                    Kind::Normal => "dependencies",
                    Kind::Build => "build-dependencies",
                    Kind::Dev => "dev-dependencies",
                };
                problems.push(format!(
                    "{}: [{section}] {} is declared but no source names it \
                     (remove it, or list it under [package.metadata.cargo-machete] \
                     ignored with the reason)",
                    manifest.display(),
                    dep.key
                ));
            }
        }
    }
    Ok(problems)
}

/// The dependencies a manifest declares, and its ignore list.
fn parse(text: &str) -> (Vec<Dep>, Vec<String>) {
    let mut deps = Vec::new();
    let mut ignored = Vec::new();
    let mut section: Option<Kind> = None;
    let mut in_machete = false;
    // `[dependencies.foo]` tables name the dependency in the header.
    let mut in_table = false;
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']').trim();
            in_machete = header == "package.metadata.cargo-machete";
            in_table = false;
            // `target.'cfg(…)'.dependencies` ends like the plain sections.
            let kind_of = |h: &str| {
                if h == "dependencies" || h.ends_with(".dependencies") {
                    Some(Kind::Normal)
                } else if h == "dev-dependencies" || h.ends_with(".dev-dependencies") {
                    Some(Kind::Dev)
                } else if h == "build-dependencies" || h.ends_with(".build-dependencies") {
                    Some(Kind::Build)
                } else {
                    None
                }
            };
            section = kind_of(header);
            if section.is_none() {
                if let Some((table, name)) = header.rsplit_once('.') {
                    if let Some(kind) = kind_of(table) {
                        deps.push(Dep {
                            key: name.to_owned(),
                            ident: name.replace('-', "_"),
                            kind,
                        });
                        in_table = true;
                    }
                }
            }
            continue;
        }
        if in_machete {
            if let Some(list) = line.strip_prefix("ignored") {
                ignored.extend(
                    list.split(['[', ']', ',', '='])
                        .map(|s| s.trim().trim_matches('"'))
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
            }
            continue;
        }
        if in_table {
            continue; // the keys of a `[dependencies.foo]` table
        }
        let Some(kind) = section else { continue };
        let key = line
            .split(['=', '.'])
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches('"');
        if key.is_empty() {
            continue;
        }
        deps.push(Dep {
            key: key.to_owned(),
            ident: key.replace('-', "_"),
            kind,
        });
    }
    (deps, ignored)
}

/// Whether `code` names crate `ident` as a path, an import or an extern
/// crate: `ident::`, `::ident`, `use ident`, `extern crate ident`.
fn names(code: &str, ident: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(pos) = code[from..].find(ident) {
        let start = from + pos;
        let end = start + ident.len();
        from = end;
        let before = &code[..start];
        let after = &code[end..];
        if before.chars().next_back().is_some_and(is_ident)
            || after.chars().next().is_some_and(is_ident)
        {
            continue; // part of a longer identifier
        }
        if let Some(outer) = before.strip_suffix("::") {
            // `::ident` is the crate; `a::ident` is a path inside `a`.
            if !outer.chars().next_back().is_some_and(is_ident) {
                return true;
            }
            continue;
        }
        if after.starts_with("::") {
            return true;
        }
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let head = code[line_start..start].trim_start();
        if ["use ", "pub use ", "extern crate "].contains(&head) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_imports_and_extern_crates() {
        assert!(names("use serde::Deserialize;", "serde"));
        assert!(names("#[derive(serde::Serialize)]", "serde"));
        assert!(names("use async_trait;", "async_trait"));
        assert!(names("extern crate libc;", "libc"));
        assert!(names("let x = ::bytes::Bytes::new();", "bytes"));
        assert!(names("#[tokio::test]\nasync fn t() {}", "tokio"));
        // Not the crate: a longer identifier, a module of ours, a field.
        assert!(!names("let bytes_read = 3;", "bytes"));
        assert!(!names("use crate::tar::Header;", "tar"));
        assert!(!names("use cachew_proto::header::ETAG;", "header"));
        assert!(!names("self.http.send(x)", "http"));
        assert!(!names("// we once used hex here", "hex"));
    }

    #[test]
    fn parses_sections_keys_and_the_ignore_list() {
        let (deps, ignored) = parse(
            r#"
[package]
name = "x"

[package.metadata.cargo-machete]
ignored = ["zstd-sys", "other"]

[dependencies]
serde.workspace = true
hyper-util = { workspace = true, features = ["x"] } # comment
"quoted" = "1"

[target.'cfg(unix)'.dependencies]
libc = "0.2"

[dev-dependencies]
tempfile.workspace = true

[dependencies.tokio]
version = "1"
"#,
        );
        let got: Vec<(&str, &str, Kind)> = deps
            .iter()
            .map(|d| (d.key.as_str(), d.ident.as_str(), d.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("serde", "serde", Kind::Normal),
                ("hyper-util", "hyper_util", Kind::Normal),
                ("quoted", "quoted", Kind::Normal),
                ("libc", "libc", Kind::Normal),
                ("tempfile", "tempfile", Kind::Dev),
                ("tokio", "tokio", Kind::Normal),
            ]
        );
        assert_eq!(ignored, vec!["zstd-sys", "other"]);
    }

    /// A planted unused crate fails the check; using it passes.
    #[test]
    fn a_planted_unused_dependency_is_reported() {
        let dir = std::env::temp_dir().join(format!("xtask-udeps-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::create_dir_all(dir.join("tests")).unwrap();
        let manifest = dir.join("Cargo.toml");
        fs::write(
            &manifest,
            "[package]\nname = \"p\"\n[dependencies]\nserde = \"1\"\nplanted-crate = \"1\"\n\
             [dev-dependencies]\ntempfile = \"3\"\n",
        )
        .unwrap();
        fs::write(dir.join("src/lib.rs"), "//! p\nuse serde::Serialize;\n").unwrap();
        fs::write(dir.join("tests/t.rs"), "fn t() { tempfile::tempdir(); }\n").unwrap();
        let problems = unused(std::slice::from_ref(&manifest)).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("planted-crate"), "{problems:?}");

        fs::write(
            dir.join("src/lib.rs"),
            "//! p\nuse serde::Serialize;\nuse planted_crate as _;\n",
        )
        .unwrap();
        assert!(unused(&[manifest]).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! Excludes select exactly what `tar --exclude` selects (GNU tar 1.34), for
//! the PROTOCOL.md §4 table and more, on the same tree.

use std::fs;
use std::path::Path;

use cachew_archive::{archive, ArchiveOptions};
use cachew_testkit::*;

fn build(root: &Path) {
    for f in [
        "a.o",
        "src/b.o",
        "src/sub/c.o",
        "src/keep.rs",
        "target/debug/x",
        "docs/target/t.md",
        "bin/run",
        ".git/config",
        "odd/[ab].txt",
        "odd/a.txt",
        "odd/with space.o",
        "odd/star*name",
        "odd/.hidden.o",
        "deep/a/b/c/d.o",
    ] {
        let p = root.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, f).unwrap();
    }
    fs::create_dir_all(root.join("emptydir/target")).unwrap();
}

const PATTERNS: &[&str] = &[
    // PROTOCOL.md §4 table.
    "target",
    "./target",
    "*.o",
    "src/*.o",
    "sub/c.o",
    "*/debug",
    "*target*",
    "bin/",
    ".git",
    // More of the same semantics.
    "?.o",
    "[ab].o",
    "[!a].o",
    "src",
    "./src/*",
    "src/sub",
    "*/",
    "odd/\\[ab].txt",
    "odd/[[]ab].txt",
    "star\\*name",
    "*name",
    "with space.o",
    ".*",
    "a/b",
    "deep/*/d.o",
    "x",
    "t.md",
    "docs",
    ".",
    "*",
];

fn tar_list(root: &Path, include: &str, patterns: &[&str]) -> Vec<String> {
    let excludes: String = patterns
        .iter()
        .map(|p| format!(" --exclude '{p}'"))
        .collect();
    let out = sh(&format!(
        "tar -cf - {excludes} -C '{}' -- {include} | tar -tf -",
        root.display()
    ));
    let mut v: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn our_list(root: &Path, include: &str, patterns: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    archive(
        &mut out,
        root,
        &[include],
        patterns,
        &ArchiveOptions::default().with_threads(1),
    )
    .unwrap();
    gnu_list(&out)
}

#[test]
fn same_selection_as_gnu_tar() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let mut checked = 0;
    for include in [".", "src", "odd"] {
        for p in PATTERNS {
            let gnu = tar_list(dir.path(), include, &[p]);
            let ours = our_list(dir.path(), include, &[p]);
            assert_eq!(ours, gnu, "include `{include}`, --exclude '{p}'");
            checked += 1;
        }
    }
    // Several patterns at once.
    let many = ["*.o", "target", ".git"];
    assert_eq!(
        our_list(dir.path(), ".", &many),
        tar_list(dir.path(), ".", &many)
    );
    assert_eq!(checked, 3 * PATTERNS.len());
}

#[test]
fn protocol_table_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let all = our_list(dir.path(), ".", &[]);
    let excluded = |p: &str| -> Vec<String> {
        let kept = our_list(dir.path(), ".", &[p]);
        all.iter().filter(|n| !kept.contains(n)).cloned().collect()
    };
    assert_eq!(
        excluded("./target"),
        ["./target/", "./target/debug/", "./target/debug/x"]
    );
    assert!(excluded("bin/").is_empty());
    assert_eq!(excluded(".git"), ["./.git/", "./.git/config"]);
    assert!(excluded("target").contains(&"./docs/target/t.md".to_string()));
    assert!(excluded("target").contains(&"./emptydir/target/".to_string()));
}

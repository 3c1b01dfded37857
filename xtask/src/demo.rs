//! `cargo xtask demo`: the README's first command. Builds `cachew`, saves
//! this repository's `crates/` directory to the embedded disk backend
//! (`file:///tmp/cachew-demo/cache`, no server needed), restores it into a
//! fresh directory with `--verify`, prints the two command lines and their
//! output, and checks that the trees match.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, root, run};

/// Where the demo keeps its cache and restored tree.
const DEMO_DIR: &str = "/tmp/cachew-demo";

/// The target directory cargo builds into.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

pub(crate) fn run_demo() -> Result<(), String> {
    run(cargo().args(["build", "--quiet", "-p", "cachew-cli", "--bin", "cachew"]))?;
    let bin = target_dir().join("debug/cachew");
    let demo = Path::new(DEMO_DIR);
    // Only our own directory is ever removed, and only this fixed path.
    if demo.exists() {
        fs::remove_dir_all(demo).map_err(|e| format!("remove {DEMO_DIR}: {e}"))?;
    }
    fs::create_dir_all(demo).map_err(|e| format!("create {DEMO_DIR}: {e}"))?;
    let source = root().join("crates");
    let restored = demo.join("restored");
    let url = format!("file://{DEMO_DIR}/cache");

    let save = [
        "--url",
        &url,
        "save",
        "demo",
        source.to_str().ok_or("non-UTF-8 path")?,
        "--key",
        "cachew-demo",
    ];
    let restore = [
        "--url",
        &url,
        "restore",
        "demo",
        restored.to_str().ok_or("non-UTF-8 path")?,
        "--key",
        "cachew-demo",
        "--verify",
    ];
    for args in [&save[..], &restore[..]] {
        println!("$ cachew {}", args.join(" "));
        let status = Command::new(&bin)
            .args(args)
            .env_remove("CACHEW_URL")
            .status()
            .map_err(|e| format!("could not run {}: {e}", bin.display()))?;
        if !status.success() {
            return Err(format!("cachew {} failed with {status}", args.join(" ")));
        }
    }
    let (a, b) = (listing(&source)?, listing(&restored)?);
    if a != b {
        let diff: Vec<_> = a
            .iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .map(|(k, _)| k.display().to_string())
            .chain(
                b.keys()
                    .filter(|k| !a.contains_key(*k))
                    .map(|k| k.display().to_string()),
            )
            .take(10)
            .collect();
        return Err(format!("restored tree differs from the source: {diff:?}"));
    }
    println!(
        "\nok: {} entries restored into {} match {} (contents, modes, links, mtimes)",
        a.len(),
        restored.display(),
        source.display()
    );
    Ok(())
}

/// What must survive a round trip, per entry.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File(u32, i64, Vec<u8>),
    Link(PathBuf),
}

fn listing(root: &Path) -> Result<BTreeMap<PathBuf, Node>, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) -> Result<(), String> {
        let rd = fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
        for ent in rd {
            let path = ent.map_err(|e| e.to_string())?.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            let rel = path
                .strip_prefix(root)
                .map_err(|e| e.to_string())?
                .to_path_buf();
            let mode = meta.mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                Node::Link(fs::read_link(&path).map_err(|e| e.to_string())?)
            } else if meta.is_dir() {
                walk(root, &path, out)?;
                Node::Dir(mode)
            } else {
                let data = fs::read(&path).map_err(|e| e.to_string())?;
                Node::File(mode, meta.mtime(), data)
            };
            out.insert(rel, node);
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

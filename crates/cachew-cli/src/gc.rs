//! `cachew gc DIR`: removes the staging directories that restores killed
//! with SIGKILL (or by a crash) left under DIR, and puts back a target
//! whose swap was interrupted halfway (`cachew_client::gc`). Staging of
//! running processes is left alone.

use std::path::Path;

use crate::progress::Mode;
use crate::Exit;

pub(crate) fn run(dir: &Path, max_depth: usize, mode: Mode) -> anyhow::Result<Exit> {
    if !dir.is_dir() {
        return Err(anyhow::anyhow!("{} is not a directory", dir.display()));
    }
    let done = cachew_client::gc(dir, max_depth);
    for p in &done.removed {
        mode.status(&format!("removed stale staging {}", p.display()));
    }
    for p in &done.rolled_back {
        mode.status(&format!(
            "put back {} from an interrupted restore",
            p.display()
        ));
    }
    if done.removed.is_empty() && done.rolled_back.is_empty() {
        mode.status(&format!("no stale staging under {}", dir.display()));
    }
    Ok(Exit::Success)
}

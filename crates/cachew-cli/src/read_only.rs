//! `--read-only` (`CACHEW_READ_ONLY`): restores and reads work; commands
//! that would change the cache (`save`, `put`, `delete`, `invalidate`) are
//! skipped with one warning and exit 0, so a pull-request build can share a
//! CI script with the main branch without writing to its cache.

use crate::cli::Command;
use crate::progress::Mode;
use crate::Exit;

/// The outcome for a command `--read-only` skips, after its warning;
/// `None` for commands that run.
pub(crate) fn skip(command: &Command, mode: Mode) -> Option<Exit> {
    let (name, json) = match command {
        Command::Save(a) => ("save", a.json.json),
        Command::Put { .. } => ("put", false),
        Command::Delete { .. } => ("delete", false),
        Command::Invalidate { .. } => ("invalidate", false),
        _ => return None,
    };
    // A warning, not a status line: --quiet hides it like the others.
    mode.status(&format!(
        "warning: --read-only: {name} skipped, nothing was written to the cache"
    ));
    if json {
        crate::json::print(&serde_json::json!({
            "version": crate::json::VERSION,
            "command": name,
            "result": "skipped",
        }));
    }
    Some(Exit::Success)
}

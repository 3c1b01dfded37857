//! Removing, off the restore's critical path, the old entries an in-place
//! `cachew restore` displaced (`docs/ARCHITECTURE.md`, "Restores: staging,
//! swap, recovery").
//!
//! The restore leaves its staging directory — the old entries and the
//! committed journal — and, once it has printed its status, hands the path
//! to a detached child: this executable run as `cachew __remove-staging
//! PATH`, in its own session, with stdin, stdout and stderr on
//! `/dev/null`, never waited for. The child removes PATH with
//! [`cachew_client::remove_staging`], which refuses anything that is not a
//! committed staging directory beside its target. If the child cannot be
//! started, the restore removes the directory itself; if the child is
//! killed, what it left is a staging directory of a dead owner with a
//! committed journal, which the next restore of the target or `cachew gc`
//! removes. `--cleanup sync` (`CACHEW_CLEANUP=sync`) removes it before the
//! restore exits, as a library caller gets by default.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

/// The hidden subcommand the child runs; dispatched before the command
/// line is parsed, so no `CACHEW_*` variable or flag can change it.
pub(crate) const SUBCOMMAND: &str = "__remove-staging";

/// Removes `staging` in a detached child process, or here if none can be
/// started.
pub(crate) fn hand_off(staging: &Path) {
    let spawned = std::env::current_exe().and_then(|exe| {
        let mut cmd = Command::new(exe);
        cmd.arg(SUBCOMMAND)
            .arg(staging)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: setsid(2) is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // Not waited for: it outlives this process (and is reaped by init).
        cmd.spawn().map(drop)
    });
    if let Err(e) = spawned {
        tracing::debug!(
            "cannot start a process to remove {} ({e}); removing it now",
            staging.display()
        );
        remove_now(staging);
    }
}

/// Removes `staging` before returning, warning if it cannot.
pub(crate) fn remove_now(staging: &Path) {
    if let Err(e) = cachew_client::remove_staging(staging) {
        eprintln!("cachew: warning: {:#}", anyhow::Error::from(e));
    }
}

/// `cachew __remove-staging PATH`, the child's whole job: exit 0 when
/// PATH is gone, 1 when it was refused or could not all be removed, 80
/// for another command line.
pub(crate) fn child_main(args: &[OsString]) -> ExitCode {
    let [path] = args else {
        eprintln!("cachew: error: usage: cachew {SUBCOMMAND} PATH");
        return ExitCode::from(crate::EXIT_USAGE);
    };
    match cachew_client::remove_staging(Path::new(path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cachew: error: {:#}", anyhow::Error::from(e));
            ExitCode::from(crate::EXIT_ERROR)
        }
    }
}

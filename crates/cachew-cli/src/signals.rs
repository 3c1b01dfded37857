//! Signals during save and restore: SIGINT, SIGTERM (how CI cancels a
//! job: timeouts, docker, Kubernetes, GitLab) and SIGHUP stop the command
//! cleanly — its future is dropped, so an upload is aborted (never
//! committed) and a restore's staging directory is removed (`main` waits
//! for the blocking threads) — and the process exits 128 + the signal
//! number (130, 143, 129), as a shell reports a job killed by it.

use std::fmt;

use tokio::signal::unix::{signal, SignalKind};

/// A signal that stops a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Interrupt,
    Terminate,
    Hangup,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
            Stop::Hangup => "SIGHUP",
        }
    }

    /// 128 + the signal number.
    pub(crate) fn exit_code(self) -> u8 {
        128 + match self {
            Stop::Interrupt => libc::SIGINT,
            Stop::Terminate => libc::SIGTERM,
            Stop::Hangup => libc::SIGHUP,
        } as u8
    }
}

/// Listens for the three signals from now on (call before the work
/// starts, so a signal that comes early is not lost to the default action
/// half-way through).
#[derive(Debug)]
pub(crate) struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next of the signals to arrive.
    pub(crate) async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.int.recv() => Stop::Interrupt,
            _ = self.term.recv() => Stop::Terminate,
            _ = self.hup.recv() => Stop::Hangup,
        }
    }
}

/// The error a command stopped by a signal returns; `main` turns it into
/// the signal's exit code.
#[derive(Debug)]
pub(crate) struct Interrupted {
    pub(crate) signal: Stop,
    /// What was left as it was, e.g. "nothing was uploaded".
    pub(crate) outcome: &'static str,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}: {}", self.signal.name(), self.outcome)
    }
}

impl std::error::Error for Interrupted {}

/// The exit code for `e` if a signal stopped the command.
pub(crate) fn exit_code(e: &(dyn std::error::Error + 'static)) -> Option<u8> {
    e.downcast_ref::<Interrupted>()
        .map(|i| i.signal.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_128_plus_the_signal() {
        assert_eq!(Stop::Interrupt.exit_code(), 130);
        assert_eq!(Stop::Terminate.exit_code(), 143);
        assert_eq!(Stop::Hangup.exit_code(), 129);
        let e: Box<dyn std::error::Error + Send + Sync> = Box::new(Interrupted {
            signal: Stop::Terminate,
            outcome: "x",
        });
        assert_eq!(exit_code(&*e), Some(143));
    }
}

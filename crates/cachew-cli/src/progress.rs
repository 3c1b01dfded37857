//! Progress and summaries on stderr: a live line (bytes, rate, ETA) when
//! stderr is a terminal, one summary line otherwise, nothing with `--quiet`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use cachew_client::Progress;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How this invocation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Live progress line plus summary.
    Terminal,
    /// Summary line only (CI logs).
    Plain,
    /// Errors only.
    Quiet,
}

impl Mode {
    pub(crate) fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Plain
        }
    }

    /// Prints a status line (not in quiet mode).
    pub(crate) fn status(self, line: &str) {
        if self != Mode::Quiet {
            eprintln!("{line}");
        }
    }
}

/// A live progress line, drawn on a background task until [`Live::finish`].
#[derive(Debug)]
pub(crate) struct Live {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Live {
    /// Starts drawing `progress` under `label` if `mode` is a terminal.
    pub(crate) fn start(mode: Mode, label: String, progress: Progress) -> Live {
        if mode != Mode::Terminal {
            return Live {
                stop: None,
                task: None,
            };
        }
        let (tx, mut rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tick.tick() => {}
                }
                let line = render(
                    &label,
                    progress.transferred(),
                    progress.total(),
                    start.elapsed(),
                );
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
            }
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        });
        Live {
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops and clears the live line.
    pub(crate) async fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// One progress line: `label  12.0 MiB / 40.0 MiB  30%  8.0 MiB/s  ETA 4s`.
pub(crate) fn render(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = done as f64 / secs;
    let mut line = format!("{label}  {}", bytes(done));
    if total > 0 {
        let pct = (done as f64 * 100.0 / total as f64).min(100.0);
        line.push_str(&format!(" / {}  {pct:.0}%", bytes(total)));
    }
    line.push_str(&format!("  {}/s", bytes(rate as u64)));
    if total > done && rate > 0.0 {
        let eta = (total - done) as f64 / rate;
        line.push_str(&format!("  ETA {}", duration(Duration::from_secs_f64(eta))));
    }
    line
}

/// Human-readable bytes (binary units).
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Human-readable duration: `850ms`, `4.2s`, `3m05s`.
pub(crate) fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{}ms", d.as_millis())
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let total = d.as_secs();
        format!("{}m{:02}s", total / 60, total % 60)
    }
}

/// `12.0 MiB/s` for `n` bytes in `d`.
pub(crate) fn rate(n: u64, d: Duration) -> String {
    format!("{}/s", bytes((n as f64 / d.as_secs_f64().max(1e-3)) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(4200)), "4.2s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(rate(10 << 20, Duration::from_secs(2)), "5.0 MiB/s");
    }

    #[test]
    fn line_has_bytes_rate_and_eta() {
        let line = render("restore", 10 << 20, 40 << 20, Duration::from_secs(2));
        assert_eq!(
            line,
            "restore  10.0 MiB / 40.0 MiB  25%  5.0 MiB/s  ETA 6.0s"
        );
        // Unknown total: no percentage, no ETA.
        let line = render("save", 3 << 20, 0, Duration::from_secs(1));
        assert_eq!(line, "save  3.0 MiB  3.0 MiB/s");
    }
}

//! Progress on stderr while a save or restore runs.
//!
//! - On a terminal: an indicatif bar (total, %, rate, ETA) whose layout is
//!   chosen for the terminal's width at every redraw, so it never wraps in a
//!   narrow window, and a visible extract/verify phase once the bytes are in.
//!   Log lines are printed through [`suspend`], above the bar, so they do
//!   not tear it.
//! - Without a terminal (CI logs): a line every 10 s in actions/cache's
//!   words, `Received 12.0 MiB of 40.0 MiB (30.0%), 8.0 MiB/s`
//!   (`Sent 12.0 MiB, 8.0 MiB/s` on save, whose total is unknown).
//! - Nothing with `--quiet` or `--no-progress`.
//!
//! Sizes and rates are compressed bytes over the wire, on save and restore
//! alike ([`Progress`]).

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cachew_client::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Hidden: the non-terminal line interval in milliseconds (tests).
pub(crate) const INTERVAL_VAR: &str = "CACHEW_PROGRESS_INTERVAL_MS";

/// How this invocation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Live progress bar plus summary.
    Terminal,
    /// Periodic progress lines plus summary (CI logs).
    Plain,
    /// Errors only (or, for progress, no progress).
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

    /// Prints a status line (not in quiet mode), above any live bar.
    pub(crate) fn status(self, line: &str) {
        if self != Mode::Quiet {
            suspend(|| eprintln!("{line}"));
        }
    }
}

/// What is being transferred, for the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Upload of an archive being made.
    Save,
    /// Download and extraction.
    Restore,
    /// Download, extraction, then the tree digest check.
    RestoreVerify,
}

/// The bars on screen; log lines and status lines go through it.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5)))
}

/// Runs `f` (which writes to stderr) with the live bar hidden meanwhile.
pub(crate) fn suspend<R>(f: impl FnOnce() -> R) -> R {
    bars().suspend(f)
}

/// A `tracing_subscriber` writer that prints each event above the bar.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogWriter;

/// One buffered log event; written out when dropped.
#[derive(Debug, Default)]
pub(crate) struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let text = std::mem::take(&mut self.0);
            suspend(|| {
                let _ = std::io::stderr().lock().write_all(&text);
            });
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine::default()
    }
}

/// Live progress, drawn on a background task until [`Live::finish`].
#[derive(Debug)]
pub(crate) struct Live {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Live {
    /// Starts reporting `progress` under `label` as `mode` says.
    pub(crate) fn start(mode: Mode, phase: Phase, label: String, progress: Progress) -> Live {
        let (tx, rx) = oneshot::channel::<()>();
        let task = match mode {
            Mode::Quiet => {
                return Live {
                    stop: None,
                    task: None,
                }
            }
            Mode::Terminal => {
                let bar = bars().add(ProgressBar::no_length());
                tokio::spawn(draw_bar(bar, phase, label, progress, rx))
            }
            Mode::Plain => tokio::spawn(print_lines(phase, progress, interval(), rx)),
        };
        Live {
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops and clears the live bar.
    pub(crate) async fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn interval() -> Duration {
    std::env::var(INTERVAL_VAR)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(10), |ms| {
            Duration::from_millis(ms.max(1))
        })
}

async fn draw_bar(
    bar: ProgressBar,
    phase: Phase,
    label: String,
    progress: Progress,
    mut rx: oneshot::Receiver<()>,
) {
    // The label is cut so the wide layout's fixed parts fit in 80 columns.
    bar.set_prefix(label.chars().take(24).collect::<String>());
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut layout = None;
    loop {
        tokio::select! {
            _ = &mut rx => break,
            _ = tick.tick() => {}
        }
        let (done, total) = (progress.transferred(), progress.total());
        let next = Layout::pick(terminal_width(), phase, done, total);
        if layout != Some((next, total > 0)) {
            bar.set_style(next.style(total > 0));
            if let Some(msg) = next.message(phase) {
                bar.set_message(msg);
            }
            layout = Some((next, total > 0));
        }
        if total > 0 {
            bar.set_length(total);
        }
        bar.set_position(done);
    }
    bar.finish_and_clear();
    bars().remove(&bar);
}

/// Which template a redraw uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Known total, wide terminal: label, bar, sizes, %, rate, ETA.
    Wide,
    /// Known total, 56–79 columns: %, sizes, rate, ETA.
    Medium,
    /// Known total, 44–55 columns: %, sizes, rate.
    Compact,
    /// 25–43 columns: % and bytes.
    Narrow,
    /// Under 25 columns: % alone (bytes when the total is unknown).
    Tiny,
    /// Unknown total (save): label, bytes, rate, elapsed.
    Open,
    /// Every byte is in: extracting (and verifying), a spinner.
    Finishing,
}

impl Layout {
    pub(crate) fn pick(width: usize, phase: Phase, done: u64, total: u64) -> Layout {
        if width < 25 {
            Layout::Tiny
        } else if total > 0 && done >= total && phase != Phase::Save && width >= 40 {
            Layout::Finishing
        } else if total == 0 && width >= 64 {
            Layout::Open
        } else if width < 44 || total == 0 {
            Layout::Narrow
        } else if width < 56 {
            Layout::Compact
        } else if width < 80 {
            Layout::Medium
        } else {
            Layout::Wide
        }
    }

    /// The template; each fits in the widths `pick` gives it to (the wide
    /// bar takes what is left).
    fn template(self, known_total: bool) -> &'static str {
        match self {
            Layout::Tiny if known_total => "{percent:>3}%",
            Layout::Tiny => "{bytes}",
            Layout::Narrow if !known_total => "{bytes} {binary_bytes_per_sec}",
            Layout::Wide => "{prefix:.bold} [{wide_bar}] {bytes}/{total_bytes} {percent:>3}% {binary_bytes_per_sec} ETA {eta}",
            Layout::Medium => {
                "{percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
            }
            Layout::Compact => "{percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec}",
            Layout::Narrow => "{percent:>3}% {bytes}",
            Layout::Open => "{prefix:.bold} {spinner} {bytes} sent, {binary_bytes_per_sec}, {elapsed}",
            Layout::Finishing => "{spinner} {msg} {elapsed}",
        }
    }

    pub(crate) fn style(self, known_total: bool) -> ProgressStyle {
        ProgressStyle::with_template(self.template(known_total))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }

    fn message(self, phase: Phase) -> Option<&'static str> {
        (self == Layout::Finishing).then_some(match phase {
            Phase::RestoreVerify => "extracting, verifying digest",
            _ => "extracting",
        })
    }
}

/// Columns of the terminal on stderr (80 when unknown).
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ only writes a `winsize` into the pointer we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        usize::from(ws.ws_col)
    } else {
        80
    }
}

async fn print_lines(
    phase: Phase,
    progress: Progress,
    every: Duration,
    mut rx: oneshot::Receiver<()>,
) {
    let start = Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut printed = false;
    loop {
        let stop = tokio::select! {
            _ = &mut rx => true,
            _ = tick.tick() => false,
        };
        // The last line only completes lines already printed; nothing is
        // said before the first byte.
        if stop && !printed {
            break;
        }
        if !stop && progress.transferred() == 0 {
            continue;
        }
        let line = plain_line(
            phase,
            progress.transferred(),
            progress.total(),
            start.elapsed(),
        );
        eprintln!("{line}");
        printed = true;
        if stop {
            break;
        }
    }
}

/// A CI log line in actions/cache's words.
pub(crate) fn plain_line(phase: Phase, done: u64, total: u64, elapsed: Duration) -> String {
    let rate = rate(done, elapsed);
    match (phase, total) {
        (Phase::Save, _) | (_, 0) => {
            let verb = if phase == Phase::Save {
                "Sent"
            } else {
                "Received"
            };
            format!("{verb} {}, {rate}", bytes(done))
        }
        _ => {
            let pct = (done as f64 * 100.0 / total as f64).min(100.0);
            format!(
                "Received {} of {} ({pct:.1}%), {rate}",
                bytes(done),
                bytes(total)
            )
        }
    }
}

/// One plain live line, `label  12.0 MiB / 40.0 MiB  30%  8.0 MiB/s  ETA 4s`
/// (`git restore`'s ticker draws it).
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
    use indicatif::{InMemoryTerm, TermLike};

    #[test]
    fn units() {
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(4200)), "4.2s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(rate(10 << 20, Duration::from_secs(2)), "5.0 MiB/s");
    }

    #[test]
    fn plain_lines_as_actions_cache() {
        let line = plain_line(Phase::Restore, 10 << 20, 40 << 20, Duration::from_secs(2));
        assert_eq!(line, "Received 10.0 MiB of 40.0 MiB (25.0%), 5.0 MiB/s");
        let line = plain_line(Phase::Save, 3 << 20, 0, Duration::from_secs(1));
        assert_eq!(line, "Sent 3.0 MiB, 3.0 MiB/s");
    }

    /// Draws every layout at the widths it is picked for, on a fixed-size
    /// in-memory terminal, and checks it stays on one row.
    #[test]
    fn bars_fit_narrow_terminals() {
        for width in [
            10u16, 20, 24, 25, 39, 40, 43, 44, 55, 56, 63, 64, 79, 80, 120,
        ] {
            for (phase, done, total) in [
                (Phase::Restore, 30 << 20, 123 << 20),
                // The longest sizes: "1023.90 MiB/1023.90 GiB".
                (Phase::Restore, 1_073_636_966, 1_099_404_253_593),
                (Phase::Save, 7 << 30, 0),
                (Phase::RestoreVerify, 5 << 20, 5 << 20),
            ] {
                let layout = Layout::pick(usize::from(width), phase, done, total);
                let term = InMemoryTerm::new(4, width);
                let bar = ProgressBar::with_draw_target(
                    (total > 0).then_some(total),
                    ProgressDrawTarget::term_like(Box::new(term.clone())),
                );
                bar.set_style(layout.style(total > 0));
                bar.set_prefix("restore ns/0123456789ab");
                if let Some(m) = layout.message(phase) {
                    bar.set_message(m);
                }
                bar.set_position(done);
                bar.tick();
                let contents = term.contents();
                let rows: Vec<&str> = contents.lines().filter(|l| !l.trim().is_empty()).collect();
                assert_eq!(
                    rows.len(),
                    1,
                    "width {width}, {layout:?}: wrapped:\n{contents}"
                );
                assert!(term.width() == width);
                if total > 0 && layout != Layout::Finishing {
                    assert!(
                        rows[0].contains('%'),
                        "width {width} {layout:?}: {contents}"
                    );
                }
                if layout == Layout::Finishing && phase == Phase::RestoreVerify {
                    assert!(rows[0].contains("verif"), "{contents}");
                }
            }
        }
    }
}

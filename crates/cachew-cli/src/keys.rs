//! Turning command-line key text into keys, the Go CLI's way.
//!
//! Raw key text gets the `--platform` prefix, then the `--daily`/`--hourly`
//! prefix (local time), and is then parsed with [`Key::parse`] (64 hex digits
//! are taken verbatim, anything else is hashed). A `-H GLOB` key is computed
//! with [`hash_files`] from files relative to the current directory, and its
//! 64-hex text goes through the same prefixes — so without prefixes it is the
//! file hash itself, and with them it is hashed again, as any prefixed key is.

use cachew_client::{hash_files, Key};
use cachew_proto::prefix::{self, CivilTime, DatePrefix, Platform};

use crate::cli::{Global, KeySource};

/// The prefixes in force for this invocation.
#[derive(Debug, Clone)]
pub(crate) struct Prefixes {
    platform: Option<Platform>,
    date: Option<(DatePrefix, CivilTime)>,
}

impl Prefixes {
    /// Reads `--platform`, `--daily`, `--hourly`; the date is taken once, now.
    pub(crate) fn from_flags(global: &Global) -> Prefixes {
        let kind = if global.hourly {
            Some(DatePrefix::Hourly)
        } else if global.daily {
            Some(DatePrefix::Daily)
        } else {
            None
        };
        Prefixes {
            platform: global.platform.then(Platform::current),
            date: kind.map(|k| (k, local_now())),
        }
    }

    /// The key for raw key text.
    pub(crate) fn key(&self, raw: &str) -> Key {
        Key::parse(&self.text(raw))
    }

    /// The prefixed text, before parsing (for messages).
    pub(crate) fn text(&self, raw: &str) -> String {
        prefix::apply(raw, self.platform.as_ref(), self.date)
    }

    /// The key of a save/restore `--key K` or `-H GLOB…`, with its text as
    /// the Go CLI prints it in status lines: the prefixed key text, or for
    /// `-H` the files' 64-hex digest with the prefixes.
    pub(crate) fn key_from(
        &self,
        source: &KeySource,
    ) -> Result<(Key, String), cachew_client::Error> {
        let raw = match &source.key {
            Some(raw) => raw.clone(),
            None => {
                let patterns = crate::kong::list(&source.hash_files);
                let key = hash_files(&patterns, None)?;
                log_matched(&patterns);
                key.to_hex()
            }
        };
        let text = self.text(&raw);
        Ok((Key::parse(&text), text))
    }
}

/// How many files `-H` hashed (info), and which (debug).
fn log_matched(patterns: &[String]) {
    let Ok(files) = cachew_client::matched_files(patterns, None) else {
        return;
    };
    tracing::info!(
        "key from {} file(s) matching {}",
        files.len(),
        patterns.join(",")
    );
    for f in &files {
        tracing::debug!("key file: {}", f.display());
    }
}

/// The local civil time, via `localtime_r` (honours `TZ`).
pub(crate) fn local_now() -> CivilTime {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as libc::time_t);
    civil(now)
}

fn civil(t: libc::time_t) -> CivilTime {
    // SAFETY: `tm` is plain old data that localtime_r fully initialises on
    // success; both pointers are valid for the duration of the call.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            // Without a local time zone, fall back to UTC rather than fail.
            libc::gmtime_r(&t, &mut tm);
        }
        tm
    };
    CivilTime {
        year: tm.tm_year + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(platform: bool, date: Option<DatePrefix>) -> Prefixes {
        let at = CivilTime {
            year: 2026,
            month: 11,
            day: 24,
            hour: 7,
        };
        Prefixes {
            platform: platform.then(|| Platform::new("linux", "amd64")),
            date: date.map(|d| (d, at)),
        }
    }

    #[test]
    fn go_cli_vectors() {
        assert_eq!(
            prefixes(false, None).key("hello").to_string(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            prefixes(true, None).key("hello").to_string(),
            "43c8a4c4f77d5de2ff906c5c2faf91cd2632c1970b9d491f2e27f70df3ddfbee"
        );
        assert_eq!(
            prefixes(true, Some(DatePrefix::Hourly)).text("hello"),
            "2026-11-24-07-linux-amd64-hello"
        );
        assert_eq!(
            prefixes(false, Some(DatePrefix::Daily)).key("k"),
            Key::new("2026-11-24-k")
        );
    }

    #[test]
    fn hashed_keys_get_prefixes_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("go.sum"), "y\n").unwrap();
        let hashed = hash_files(&["go.sum"], Some(dir.path())).unwrap();
        assert_eq!(prefixes(false, None).key(&hashed.to_hex()), hashed);
        assert_eq!(
            prefixes(true, None).key(&hashed.to_hex()),
            Key::new(format!("linux-amd64-{hashed}"))
        );
    }

    #[test]
    fn civil_time_uses_the_time_zone() {
        // 2026-11-24T07:30:00Z.
        let t = 1_795_505_400;
        let c = civil(t);
        // Whatever the zone, the date is within a day and the hour valid.
        assert!((23..=25).contains(&c.day), "{c:?}");
        assert!(c.hour < 24 && c.month == 11 && c.year == 2026);
    }
}

//! Key prefixes of the command line, compatible with the Go `cachew` CLI
//! (`PROTOCOL.md` §1).
//!
//! Prefixes are applied to the raw key text before it is parsed, so a
//! prefixed 64-hex key is hashed. The date prefix goes outside the platform
//! prefix.
//!
//! ```
//! use cachew_proto::prefix::{apply, CivilTime, DatePrefix, Platform};
//!
//! let platform = Platform::new("linux", "amd64");
//! let at = CivilTime { year: 2026, month: 11, day: 24, hour: 7 };
//! assert_eq!(
//!     apply("hello", Some(&platform), Some((DatePrefix::Hourly, at))),
//!     "2026-11-24-07-linux-amd64-hello"
//! );
//! ```

use std::fmt;

/// An operating system and architecture, spelled as Go's `GOOS`/`GOARCH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    os: String,
    arch: String,
}

impl Platform {
    /// A platform with explicit Go names.
    pub fn new(os: impl Into<String>, arch: impl Into<String>) -> Platform {
        Platform {
            os: os.into(),
            arch: arch.into(),
        }
    }

    /// The platform this program was compiled for, in Go's spelling.
    pub fn current() -> Platform {
        Platform::new(go_os(std::env::consts::OS), go_arch(std::env::consts::ARCH))
    }

    /// Go's `GOOS`.
    pub fn os(&self) -> &str {
        &self.os
    }

    /// Go's `GOARCH`.
    pub fn arch(&self) -> &str {
        &self.arch
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.os, self.arch)
    }
}

/// Maps Rust's `std::env::consts::OS` to Go's `GOOS`.
pub fn go_os(rust_os: &str) -> &str {
    match rust_os {
        "macos" => "darwin",
        other => other,
    }
}

/// Maps Rust's `std::env::consts::ARCH` to Go's `GOARCH`.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        "mips64" => "mips64",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "wasm32" => "wasm",
        other => other,
    }
}

/// A local date and hour, as the date prefixes need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
}

/// Which date prefix to apply (`--daily` or `--hourly`; they exclude each
/// other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePrefix {
    /// `YYYY-MM-DD-`.
    Daily,
    /// `YYYY-MM-DD-HH-`.
    Hourly,
}

impl DatePrefix {
    /// The prefix text for `at`.
    pub fn prefix(self, at: CivilTime) -> String {
        match self {
            DatePrefix::Daily => format!("{:04}-{:02}-{:02}-", at.year, at.month, at.day),
            DatePrefix::Hourly => format!(
                "{:04}-{:02}-{:02}-{:02}-",
                at.year, at.month, at.day, at.hour
            ),
        }
    }
}

/// Applies the command line's prefixes to raw key text: the platform prefix
/// `"{goos}-{goarch}-"` first, then the date prefix outside it.
pub fn apply(
    raw: &str,
    platform: Option<&Platform>,
    date: Option<(DatePrefix, CivilTime)>,
) -> String {
    let mut key = match platform {
        Some(p) => format!("{p}-{raw}"),
        None => raw.to_owned(),
    };
    if let Some((kind, at)) = date {
        key = kind.prefix(at) + &key;
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    #[test]
    fn platform_vector() {
        let p = Platform::new("linux", "amd64");
        let text = apply("hello", Some(&p), None);
        assert_eq!(text, "linux-amd64-hello");
        assert_eq!(
            Key::parse(&text).to_string(),
            "43c8a4c4f77d5de2ff906c5c2faf91cd2632c1970b9d491f2e27f70df3ddfbee"
        );
    }

    #[test]
    fn prefixed_hex_key_is_hashed() {
        let hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let text = apply(hex, Some(&Platform::new("linux", "arm64")), None);
        assert_eq!(Key::parse(&text), Key::new(format!("linux-arm64-{hex}")));
    }

    #[test]
    fn go_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("x86"), "386");
        assert_eq!(go_arch("arm"), "arm");
        assert_eq!(go_os("macos"), "darwin");
        assert_eq!(go_os("linux"), "linux");
        assert_eq!(go_os("windows"), "windows");
        let current = Platform::current();
        assert!(!current.to_string().contains("x86_64"));
        assert!(!current.to_string().contains("aarch64"));
    }

    #[test]
    fn date_prefixes() {
        let at = CivilTime {
            year: 2026,
            month: 3,
            day: 4,
            hour: 5,
        };
        assert_eq!(DatePrefix::Daily.prefix(at), "2026-03-04-");
        assert_eq!(DatePrefix::Hourly.prefix(at), "2026-03-04-05-");
        let p = Platform::new("darwin", "arm64");
        assert_eq!(
            apply("k", Some(&p), Some((DatePrefix::Daily, at))),
            "2026-03-04-darwin-arm64-k"
        );
        assert_eq!(
            apply("k", None, Some((DatePrefix::Hourly, at))),
            "2026-03-04-05-k"
        );
        assert_eq!(apply("k", None, None), "k");
    }
}

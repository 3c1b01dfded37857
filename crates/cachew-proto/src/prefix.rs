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
        // linux, windows, freebsd, netbsd, openbsd, dragonfly, solaris,
        // illumos, aix, android, ios are spelled the same.
        other => other,
    }
}

/// Maps Rust's `std::env::consts::ARCH` to Go's `GOARCH` for this target's
/// byte order (Go spells little-endian MIPS and PowerPC with `le`).
pub fn go_arch(rust_arch: &str) -> &str {
    go_arch_for(rust_arch, cfg!(target_endian = "little"))
}

/// Maps a Rust architecture name and byte order to Go's `GOARCH`.
pub fn go_arch_for(rust_arch: &str, little_endian: bool) -> &str {
    match (rust_arch, little_endian) {
        ("x86_64", _) => "amd64",
        ("aarch64", _) => "arm64",
        ("x86", _) => "386",
        ("arm", _) => "arm",
        ("powerpc64", true) => "ppc64le",
        ("powerpc64", false) => "ppc64",
        ("powerpc", _) => "ppc",
        ("mips", true) | ("mips32r6", true) => "mipsle",
        ("mips", false) | ("mips32r6", false) => "mips",
        ("mips64", true) | ("mips64r6", true) => "mips64le",
        ("mips64", false) | ("mips64r6", false) => "mips64",
        ("riscv64", _) => "riscv64",
        ("s390x", _) => "s390x",
        ("loongarch64", _) => "loong64",
        ("sparc64", _) => "sparc64",
        ("wasm32", _) => "wasm",
        (other, _) => other,
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
        // (Rust ARCH, little endian, GOARCH)
        let arches = [
            ("x86_64", true, "amd64"),
            ("aarch64", true, "arm64"),
            ("x86", true, "386"),
            ("arm", true, "arm"),
            ("powerpc64", true, "ppc64le"),
            ("powerpc64", false, "ppc64"),
            ("mips", true, "mipsle"),
            ("mips", false, "mips"),
            ("mips64", true, "mips64le"),
            ("mips64", false, "mips64"),
            ("riscv64", true, "riscv64"),
            ("s390x", false, "s390x"),
            ("loongarch64", true, "loong64"),
            ("sparc64", false, "sparc64"),
            ("wasm32", true, "wasm"),
        ];
        for (rust, le, go) in arches {
            assert_eq!(go_arch_for(rust, le), go, "{rust} le={le}");
        }
        for (rust, go) in [
            ("macos", "darwin"),
            ("linux", "linux"),
            ("windows", "windows"),
            ("freebsd", "freebsd"),
            ("illumos", "illumos"),
            ("ios", "ios"),
            ("android", "android"),
        ] {
            assert_eq!(go_os(rust), go);
        }
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

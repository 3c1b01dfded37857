//! `cachew completions SHELL` (clap_complete) and the hidden `cachew man`
//! (clap_mangen, roff on stdout; `cargo xtask release` ships its output),
//! plus the `--version` text with the git revision and features.

use std::io::Write;

use clap::{CommandFactory, ValueEnum};

use crate::cli::Cli;

/// `--version`: `0.1.0 (rev 0123456789ab; features: none)`.
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("CACHEW_GIT_REV"),
    "; features: ",
    env!("CACHEW_FEATURES"),
    ")"
);

/// Shells `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
    /// PowerShell.
    Powershell,
    /// Elvish.
    Elvish,
}

/// Writes the completion script for `shell` on stdout.
pub(crate) fn completions(shell: Shell) -> anyhow::Result<()> {
    use clap_complete::Shell as S;
    let shell = match shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
        Shell::Powershell => S::PowerShell,
        Shell::Elvish => S::Elvish,
    };
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cachew", &mut out);
    std::io::stdout().write_all(&out)?;
    Ok(())
}

/// Writes the man page `cachew.1` (roff) on stdout.
pub(crate) fn man() -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    std::io::stdout().write_all(&out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_names_revision_and_features() {
        assert!(super::VERSION.contains("rev ") && super::VERSION.contains("features: "));
    }
}

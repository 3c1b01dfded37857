//! `CACHEW_<FLAG>` environment variables for every flag of every command,
//! the way kong's `DefaultEnvars("CACHEW")` gives them to the Go CLI.
//!
//! The name is `CACHEW_` plus the flag's long name with `-` and `.` turned
//! into `_`, upper case (`--hash-files` is `CACHEW_HASH_FILES`). Positional
//! arguments, `--help` and `--version` have none, and a flag that names its
//! own variable keeps it. A variable that is set (even to the empty string)
//! gives the flag's value when the command line does not; list and map
//! flags split the variable like one occurrence of the flag ([`crate::kong`]).
//!
//! Like kong, every variable of every command is checked, not only those of
//! the command that runs: `CACHEW_TTL=1x cachew namespaces` is an error in
//! both. kong exits 1 for that; we exit 80, as for any usage error.
//!
//! The variables are injected as clap default values, so clap keeps
//! "the command line wins"; whether a flag was *set* (on the command line or
//! by a variable, which is what kong's `xor` groups look at) is recorded in
//! [`Sources`].

use std::collections::BTreeSet;
use std::ffi::OsString;

use clap::Command;

/// The prefix of every variable.
pub(crate) const PREFIX: &str = "CACHEW";

/// The variable of a flag with long name `long`.
pub(crate) fn name(long: &str) -> String {
    let mut out = String::with_capacity(PREFIX.len() + 1 + long.len());
    out.push_str(PREFIX);
    out.push('_');
    for ch in long.chars() {
        out.push(match ch {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        });
    }
    out
}

/// Which flags got their value from a variable: `(command path, arg id)`,
/// the path being the subcommand names below `cachew` (empty for globals).
#[derive(Debug, Default, Clone)]
pub(crate) struct Sources {
    from_env: BTreeSet<(String, String)>,
}

impl Sources {
    /// Whether arg `id` of command `path` (e.g. `"save"`, `"git restore"`,
    /// `""` for the globals) took its value from a variable.
    pub(crate) fn came_from_env(&self, path: &str, id: &str) -> bool {
        self.from_env.contains(&(path.to_owned(), id.to_owned()))
    }
}

/// A variable whose value does not parse for its flag.
#[derive(Debug)]
pub(crate) struct BadVariable {
    /// `NAME="value": why`.
    pub(crate) message: String,
}

/// Gives every flag of `cmd` (recursively) its `CACHEW_*` variable, read
/// through `lookup`: documented in the help, and applied as the default
/// value when set. Fails on the first variable that does not parse.
pub(crate) fn apply(
    cmd: Command,
    lookup: &dyn Fn(&str) -> Option<OsString>,
) -> Result<(Command, Sources), BadVariable> {
    let mut sources = Sources::default();
    let cmd = apply_to(cmd, "", lookup, &mut sources)?;
    Ok((cmd, sources))
}

fn apply_to(
    mut cmd: Command,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<OsString>,
    sources: &mut Sources,
) -> Result<Command, BadVariable> {
    cmd = crate::kong::bool_flags(cmd);
    // Parsing a value needs the command; a copy before mutation will do.
    let snapshot = cmd.clone();
    let args: Vec<_> = snapshot
        .get_arguments()
        .filter(|a| !a.is_positional() && a.get_env().is_none())
        .filter(|a| a.get_long().is_some_and(|l| l != "help" && l != "version"))
        .cloned()
        .collect();
    for arg in args {
        let long = arg.get_long().expect("filtered on long names");
        let var = name(long);
        let value = lookup(&var);
        if let Some(value) = &value {
            check(&arg, long, value).map_err(|why| BadVariable {
                message: format!("{var}={:?}: {why}", value.to_string_lossy()),
            })?;
            sources
                .from_env
                .insert((path.to_owned(), arg.get_id().to_string()));
        }
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        // `--help` shows a variable's value as the default: never a
        // secret (the Authorization value, a password in the URL).
        let shown = value.as_ref().and_then(|v| match long {
            "authorization" => Some("<redacted>".to_owned()),
            "url" => Some(cachew_proto::redact::redact_url(&v.to_string_lossy())),
            _ => None,
        });
        cmd = cmd.mut_arg(arg.get_id().clone(), |a| {
            let a = match shown {
                Some(shown) => a
                    .help(format!("{help} [env: {var}] [default: {shown}]"))
                    .hide_default_value(true),
                None => a.help(format!("{help} [env: {var}]")),
            };
            match value {
                // clap keeps defaults for the life of the process; so does
                // this one-shot parse.
                Some(v) => a.default_value(&*Box::leak(v.into_boxed_os_str())),
                None => a,
            }
        });
    }
    let subs: Vec<String> = snapshot
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for sub in subs {
        let sub_path = if path.is_empty() {
            sub.clone()
        } else {
            format!("{path} {sub}")
        };
        let mut failure = None;
        cmd = cmd.mut_subcommand(&sub, |s| {
            match apply_to(s.clone(), &sub_path, lookup, sources) {
                Ok(done) => done,
                Err(e) => {
                    failure = Some(e);
                    s
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok(cmd)
}

/// Whether `value` parses for `arg`, as one occurrence of `--LONG=value`.
fn check(arg: &clap::Arg, long: &str, value: &OsString) -> Result<(), String> {
    // A kong boolean must be one of its words; clap would take an empty
    // `--flag=` as the bare flag.
    if crate::kong::is_bool_flag(arg) {
        return crate::kong::parse_bool(&value.to_string_lossy()).map(|_| ());
    }
    let mut flag = OsString::from(format!("--{long}="));
    flag.push(value);
    Command::new("cachew")
        .no_binary_name(true)
        .arg(arg.clone())
        .try_get_matches_from([flag])
        .map(|_| ())
        .map_err(|e| match std::error::Error::source(&e) {
            Some(reason) => reason.to_string(),
            None => e.kind().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_default_envars() {
        assert_eq!(name("url"), "CACHEW_URL");
        assert_eq!(name("hash-files"), "CACHEW_HASH_FILES");
        assert_eq!(
            name("download-chunk-size-mb"),
            "CACHEW_DOWNLOAD_CHUNK_SIZE_MB"
        );
        assert_eq!(name("log.level"), "CACHEW_LOG_LEVEL");
    }
}

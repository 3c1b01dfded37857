//! kong's value rules, applied to the raw strings clap collects: list and
//! map splitting with `\` escapes, and kong's booleans.
//!
//! The Go CLI parses with kong v1.15.0. Its rules, checked against kong
//! itself by the oracle in `tests/oracle/kong/`:
//! - a list flag (`[]string`) splits every occurrence on `,`; a map flag
//!   (`map[string]string`) splits every occurrence on `;`, then each piece
//!   at its first `=`; repeating the flag adds values;
//! - `\` before the separator makes it literal; before anything else the
//!   backslash stays (`a\b` is `a\b`); a trailing `\` stays;
//! - empty pieces between separators stay (`a,,b` is three values), a
//!   trailing empty piece is dropped (`a,` is one value), and an empty
//!   string is no value at all;
//! - a boolean is `true`, `1`, `yes`, `false`, `0` or `no`, in any case
//!   (not Go's `strconv.ParseBool`: `t` and `F` are errors).

/// The separator of list flags (kong's default `sep`).
pub(crate) const LIST_SEP: char = ',';
/// The separator of map entries (kong's default `mapsep`).
pub(crate) const MAP_SEP: char = ';';

/// Splits `s` on `sep` as kong's `SplitEscaped` does.
pub(crate) fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = String::new();
    let mut escaped = false;
    let mut chars = s.chars().peekable();
    while let Some(ch) = chars.next() {
        if escaped {
            if ch != sep {
                token.push('\\');
            }
            token.push(ch);
            escaped = false;
        } else if ch == '\\' && chars.peek().is_some() {
            escaped = true;
        } else if ch == sep {
            out.push(std::mem::take(&mut token));
        } else {
            token.push(ch);
        }
    }
    if !token.is_empty() {
        out.push(token);
    }
    out
}

/// The values of a list flag: every occurrence split on `,`.
pub(crate) fn list(occurrences: &[String]) -> Vec<String> {
    occurrences
        .iter()
        .flat_map(|o| split_escaped(o, LIST_SEP))
        .collect()
}

/// The entries of a map flag: every occurrence split on `;`, each entry at
/// its first `=`. Later entries for the same key replace earlier ones, as
/// in a Go map; the order is that of first appearance.
pub(crate) fn map(occurrences: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for occurrence in occurrences {
        for (key, value) in map_entries(occurrence)? {
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => out.push((key, value)),
            }
        }
    }
    Ok(out)
}

fn map_entries(occurrence: &str) -> Result<Vec<(String, String)>, String> {
    split_escaped(occurrence, MAP_SEP)
        .into_iter()
        .map(|entry| match entry.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => Err(format!("expected \"<key>=<value>\" but got {entry:?}")),
        })
        .collect()
}

/// A clap value parser for one occurrence of a map flag: checks it splits
/// into `key=value` entries and keeps the raw text for [`map`].
pub(crate) fn map_occurrence(s: &str) -> Result<String, String> {
    map_entries(s).map(|_| s.to_owned())
}

/// kong's booleans, as a clap value parser.
pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!(
            "bool value must be true, 1, yes, false, 0 or no but got {s:?}"
        )),
    }
}

/// The value name [`bool_flags`] gives, which marks its flags.
const BOOL_VALUE_NAME: &str = "BOOL";

/// Whether `arg` is a flag [`bool_flags`] made.
pub(crate) fn is_bool_flag(arg: &clap::Arg) -> bool {
    arg.get_value_names()
        .is_some_and(|names| names.len() == 1 && names[0] == BOOL_VALUE_NAME)
}

/// Makes every on/off flag of `cmd` (not its subcommands) a kong boolean:
/// `--flag` is true, `--flag=false` (any of [`parse_bool`]'s words) sets it
/// explicitly, and so does its variable.
pub(crate) fn bool_flags(cmd: clap::Command) -> clap::Command {
    let ids: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| matches!(a.get_action(), clap::ArgAction::SetTrue))
        .map(|a| a.get_id().clone())
        .collect();
    ids.into_iter().fold(cmd, |cmd, id| {
        cmd.mut_arg(id, |a| {
            a.action(clap::ArgAction::Set)
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .default_value("false")
                .hide_default_value(true)
                .value_name(BOOL_VALUE_NAME)
                .value_parser(parse_bool)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn splitting_matches_kong() {
        // (input, separator, kong's SplitEscaped result)
        let cases: &[(&str, char, &[&str])] = &[
            ("*.o,*.rs", ',', &["*.o", "*.rs"]),
            ("a\\,b", ',', &["a,b"]),
            ("x\\y", ',', &["x\\y"]),
            ("tr\\", ',', &["tr\\"]),
            ("a\\\\,b", ',', &["a\\\\", "b"]),
            ("a,,b,", ',', &["a", "", "b"]),
            (",a", ',', &["", "a"]),
            ("", ',', &[]),
            (",", ',', &[""]),
            ("a=1;b=2", ';', &["a=1", "b=2"]),
            ("d=x\\;y", ';', &["d=x;y"]),
            ("é,ü", ',', &["é", "ü"]),
        ];
        for (input, sep, want) in cases {
            assert_eq!(split_escaped(input, *sep), s(want), "{input:?}");
        }
    }

    #[test]
    fn lists_and_maps() {
        assert_eq!(list(&s(&["a,b", "c"])), s(&["a", "b", "c"]));
        assert_eq!(list(&s(&[""])), Vec::<String>::new());
        let m = map(&s(&["a=1;b=2", "c=3", "a=4", "e=x=y"])).unwrap();
        let want = [("a", "4"), ("b", "2"), ("c", "3"), ("e", "x=y")];
        assert_eq!(m, want.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec());
        let err = map(&s(&["a=1;b"])).unwrap_err();
        assert_eq!(err, "expected \"<key>=<value>\" but got \"b\"");
        assert!(map_occurrence("k=").is_ok());
        assert!(map_occurrence("").is_ok(), "no entries at all");
    }

    #[test]
    fn booleans_are_kongs_not_strconv() {
        for t in ["true", "TRUE", "True", "1", "yes", "YES"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "FALSE", "0", "no", "No"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["t", "T", "f", "F", "", "on", "maybe"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }
}

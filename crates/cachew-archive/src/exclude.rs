//! GNU tar `--exclude` pattern matching.

/// A set of exclude patterns with GNU tar `--exclude` semantics.
///
/// GNU tar 1.34's defaults are reproduced: patterns are shell wildcards
/// (`*`, `?`, `[...]`, `\` escapes) where `*` and `?` also match `/` and a
/// leading `.` is not special; a pattern is tried against the whole member
/// name (for example `./src/b.o`) and against every trailing sequence of its
/// components (`src/b.o`, `b.o`); and a match of a leading directory part
/// (`target` against `target/debug`) counts as a match. A trailing slash in a
/// pattern therefore never matches, because member names are matched without
/// one.
///
/// ```
/// use cachew_archive::ExcludeSet;
/// let set = ExcludeSet::new(["target", "*.o"]);
/// assert!(set.is_excluded("./docs/target"));
/// assert!(set.is_excluded("./src/sub/c.o"));
/// assert!(!set.is_excluded("./src/keep.rs"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ExcludeSet {
    patterns: Vec<Vec<u8>>,
}

impl ExcludeSet {
    /// Builds a set from patterns as they would be given to `tar --exclude`.
    pub fn new<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ExcludeSet {
            patterns: patterns
                .into_iter()
                .map(|p| p.as_ref().as_bytes().to_vec())
                .collect(),
        }
    }

    /// Builds a set from raw byte patterns (file names need not be UTF-8).
    pub fn from_bytes<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        ExcludeSet {
            patterns: patterns.into_iter().map(|p| p.as_ref().to_vec()).collect(),
        }
    }

    /// Whether the set has no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a member name (as tar would store it, without a trailing
    /// slash, e.g. `./src/b.o` or `src/b.o`) is excluded.
    pub fn is_excluded(&self, name: impl AsRef<[u8]>) -> bool {
        let name = name.as_ref();
        self.patterns.iter().any(|p| excluded_by(p, name))
    }
}

/// GNU `exclude_fnmatch` without `EXCLUDE_ANCHORED`: the pattern is tried on
/// the whole name, then after every `/` not followed by another `/`.
fn excluded_by(pattern: &[u8], name: &[u8]) -> bool {
    if leading_dir_match(pattern, name) {
        return true;
    }
    for (i, &c) in name.iter().enumerate() {
        if c == b'/'
            && name.get(i + 1).is_some_and(|&n| n != b'/')
            && leading_dir_match(pattern, &name[i + 1..])
        {
            return true;
        }
    }
    false
}

/// `fnmatch` with `FNM_LEADING_DIR`: the pattern may match the whole string
/// or any prefix of it that is followed by `/`.
fn leading_dir_match(pattern: &[u8], s: &[u8]) -> bool {
    if fnmatch(pattern, s) {
        return true;
    }
    s.iter()
        .enumerate()
        .any(|(i, &c)| c == b'/' && fnmatch(pattern, &s[..i]))
}

/// Shell wildcard match of the whole of `s` (no `FNM_PATHNAME`, no
/// `FNM_PERIOD`, backslash escapes on).
pub(crate) fn fnmatch(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    // Where to resume after the most recent `*`: pattern index after it and
    // the next string index it will try to swallow.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    while pi < p.len() && p[pi] == b'*' {
                        pi += 1;
                    }
                    if pi == p.len() {
                        return true;
                    }
                    star = Some((pi, si));
                    continue;
                }
                b'?' if si < s.len() => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' if si < s.len() => {
                    if let Some((matched, next)) = bracket(p, pi, s[si]) {
                        if matched {
                            pi = next;
                            si += 1;
                            continue;
                        }
                    } else if s[si] == b'[' {
                        // An unterminated bracket is an ordinary character.
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() => {
                    if si < s.len() && s[si] == p[pi + 1] {
                        pi += 2;
                        si += 1;
                        continue;
                    }
                }
                c => {
                    if si < s.len() && s[si] == c && c != b'?' && c != b'[' {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
            }
        } else if si == s.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more character.
        match star {
            Some((sp, ss)) if ss < s.len() => {
                star = Some((sp, ss + 1));
                pi = sp;
                si = ss + 1;
            }
            _ => return false,
        }
    }
}

/// Matches `c` against the bracket expression starting at `p[start] == b'['`.
/// Returns `(matched, index after the closing bracket)`, or `None` if the
/// bracket is not terminated.
fn bracket(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &pc = p.get(i)?;
        if pc == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pc == b'[' && p.get(i + 1) == Some(&b':') {
            if let Some(len) = p[i + 2..].windows(2).position(|w| w == b":]") {
                let class = &p[i + 2..i + 2 + len];
                matched |= class_matches(class, c);
                i += 2 + len + 2;
                continue;
            }
        }
        let lo = if pc == b'\\' && i + 1 < p.len() {
            i += 1;
            p[i]
        } else {
            pc
        };
        i += 1;
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&n| n != b']') {
            let mut hi = p[i + 1];
            i += 2;
            if hi == b'\\' {
                hi = *p.get(i)?;
                i += 1;
            }
            matched |= lo <= c && c <= hi;
        } else {
            matched |= lo == c;
        }
    }
}

fn class_matches(class: &[u8], c: u8) -> bool {
    match class {
        b"alpha" => c.is_ascii_alphabetic(),
        b"digit" => c.is_ascii_digit(),
        b"alnum" => c.is_ascii_alphanumeric(),
        b"upper" => c.is_ascii_uppercase(),
        b"lower" => c.is_ascii_lowercase(),
        b"space" => c.is_ascii_whitespace() || c == 0x0b,
        b"blank" => c == b' ' || c == b'\t',
        b"punct" => c.is_ascii_punctuation(),
        b"print" => (0x20..0x7f).contains(&c),
        b"graph" => (0x21..0x7f).contains(&c),
        b"cntrl" => c < 0x20 || c == 0x7f,
        b"xdigit" => c.is_ascii_hexdigit(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(fnmatch(b"*.o", b"a.o"));
        assert!(fnmatch(b"*.o", b"src/sub/c.o"));
        assert!(!fnmatch(b"*.o", b"a.oo"));
        assert!(fnmatch(b"a?c", b"abc"));
        assert!(fnmatch(b"a?c", b"a/c"));
        assert!(fnmatch(b"[ab]x", b"bx"));
        assert!(!fnmatch(b"[!ab]x", b"bx"));
        assert!(fnmatch(b"[a-c]x", b"cx"));
        assert!(fnmatch(b"[]]", b"]"));
        assert!(fnmatch(b"[[:digit:]]", b"7"));
        assert!(fnmatch(b"\\*", b"*"));
        assert!(!fnmatch(b"\\*", b"x"));
        assert!(fnmatch(b"[x", b"[x"));
        assert!(fnmatch(b"", b""));
        assert!(!fnmatch(b"", b"a"));
        assert!(fnmatch(b"*", b".git"));
    }

    #[test]
    fn protocol_table() {
        let names = [
            "./a.o",
            "./src/b.o",
            "./src/sub/c.o",
            "./src/keep.rs",
            "./target",
            "./docs/target",
            "./bin/run",
            "./.git",
            "./target/debug",
        ];
        let sel = |pat: &str| -> Vec<&str> {
            let set = ExcludeSet::new([pat]);
            names
                .iter()
                .copied()
                .filter(|n| set.is_excluded(n))
                .collect()
        };
        assert_eq!(sel("./target"), ["./target", "./target/debug"]);
        assert_eq!(
            sel("target"),
            ["./target", "./docs/target", "./target/debug"]
        );
        assert_eq!(sel("src/*.o"), ["./src/b.o", "./src/sub/c.o"]);
        assert_eq!(sel("sub/c.o"), ["./src/sub/c.o"]);
        assert_eq!(sel("*/debug"), ["./target/debug"]);
        assert!(sel("bin/").is_empty());
        assert_eq!(sel(".git"), ["./.git"]);
    }
}

//! A re-implementation of what bmatcuk/doublestar v4.10.0's `FilepathGlob`
//! returns with default options, on Unix. See the parent module for the
//! semantics in prose; this file follows the library's observable behaviour
//! step by step, quirks included, because a key must be identical to the one
//! the Go `cachew` CLI computes from the same tree. Every quirk noted here is
//! checked against the real library by `tests/doublestar_oracle.rs`.
//!
//! Paths and patterns are bytes, like Go strings: file names need not be
//! UTF-8. Runes are decoded the way Go's `utf8.DecodeRune` does (an invalid
//! byte is U+FFFD, one byte long).

use std::ffi::OsStr;
use std::fs::{FileType, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The pattern is malformed (doublestar's `ErrBadPattern`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadPattern;

/// Directory reads allowed for one pattern before giving up. doublestar
/// follows symlinked directories without cycle detection and stops only
/// when the kernel refuses a path (`ELOOP` after 40 links); two cycles make
/// that exponential. Go would run for days; we report an error instead.
const READ_DIR_BUDGET: usize = 1 << 22;

/// What went wrong while globbing.
#[derive(Debug)]
pub(crate) enum GlobError {
    BadPattern,
    TooManyDirectories,
}

impl From<BadPattern> for GlobError {
    fn from(_: BadPattern) -> Self {
        GlobError::BadPattern
    }
}

type Paths = Vec<Vec<u8>>;

/// `doublestar.FilepathGlob(pattern)` with the current directory `cwd`
/// (`None`: the process's). Returns the matched paths as doublestar spells
/// them: relative to `cwd` for relative patterns, absolute for absolute ones.
pub(crate) fn filepath_glob(pattern: &[u8], cwd: Option<&Path>) -> Result<Paths, GlobError> {
    if pattern.is_empty() {
        return Ok(Vec::new());
    }
    let pattern = clean(pattern);
    let (base, rest) = split_pattern(&pattern);
    if rest.is_empty() || rest == b"." || rest == b".." {
        // No wildcard in the last element: the cleaned pattern names one
        // path, returned if it exists (not followed if it is a symlink).
        if !valid_pattern(&pattern) {
            return Err(GlobError::BadPattern);
        }
        let path = unescape_meta(&pattern);
        return Ok(match std::fs::symlink_metadata(os_path(cwd, &path)) {
            Ok(_) => vec![path],
            Err(_) => Vec::new(),
        });
    }
    if !valid_pattern(rest) {
        return Err(GlobError::BadPattern);
    }
    let mut globber = Globber {
        root: dir_fs_root(cwd, &base),
        // doublestar globs patterns with a `**` before their last element by
        // walking, and others by collecting; only the latter reuses earlier
        // matches of an alternation as directories (see `glob`).
        reuse_matches: !has_mid_doublestar(rest),
        budget: READ_DIR_BUDGET,
    };
    let matches = globber.glob(rest, Vec::new(), true)?;
    Ok(matches.iter().map(|m| join(&base, m)).collect())
}

/// Lexical path cleaning, as Go's `path.Clean` / `filepath.Clean` on Unix.
pub(crate) fn clean(path: &[u8]) -> Vec<u8> {
    let rooted = path.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match parts.last() {
                Some(&last) if last != b".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(part),
            },
            _ => parts.push(part),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    if rooted {
        out.push(b'/');
    }
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Go's `path.Join(dir, name)` for a non-empty `dir`.
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return if name.is_empty() {
            Vec::new()
        } else {
            clean(name)
        };
    }
    let mut p = dir.to_vec();
    if !name.is_empty() {
        p.push(b'/');
        p.extend_from_slice(name);
    }
    clean(&p)
}

/// The path the OS is asked about for `path`, which is relative to `cwd`.
pub(crate) fn os_path(cwd: Option<&Path>, path: &[u8]) -> PathBuf {
    let path = Path::new(OsStr::from_bytes(path));
    match cwd {
        Some(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    }
}

/// The directory an `os.DirFS(base)` resolves names against.
fn dir_fs_root(cwd: Option<&Path>, base: &[u8]) -> Vec<u8> {
    os_path(cwd, base).into_os_string().into_encoded_bytes()
}

/// Splits before the first wildcard: the directory part (unescaped) and the
/// rest, as doublestar's `SplitPattern`.
fn split_pattern(p: &[u8]) -> (Vec<u8>, &[u8]) {
    let mut split = None;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'\\' => i += 1,
            b'/' => split = Some(i),
            b'*' | b'?' | b'[' | b'{' => break,
            _ => {}
        }
        i += 1;
    }
    match split {
        Some(0) => (b"/".to_vec(), &p[1..]),
        Some(i) => (unescape_meta(&p[..i]), &p[i + 1..]),
        None => (b".".to_vec(), p),
    }
}

const META_ESCAPABLE: &[u8] = b"*?[]{}";

/// Removes the backslash before `*?[]{}` only; other escapes stay as they
/// are (so a literal `go\.sum` names a file with a backslash in it).
fn unescape_meta(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'\\' && p.get(i + 1).is_some_and(|c| META_ESCAPABLE.contains(c)) {
            i += 1;
        }
        out.push(p[i]);
        i += 1;
    }
    out
}

/// Puts a backslash before `*?[]{}` (not before a backslash).
fn escape_meta(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    for &c in p {
        if META_ESCAPABLE.contains(&c) {
            out.push(b'\\');
        }
        out.push(c);
    }
    out
}

/// doublestar's `ValidatePattern`: balanced braces, closed non-empty
/// classes, no trailing backslash.
pub(crate) fn valid_pattern(s: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    'scan: while i < s.len() {
        match s[i] {
            b'\\' => {
                i += 1;
                if i >= s.len() {
                    return false;
                }
            }
            b'[' => {
                i += 1;
                if i < s.len() && (s[i] == b'^' || s[i] == b'!') {
                    i += 1;
                }
                if i >= s.len() || s[i] == b']' {
                    return false;
                }
                while i < s.len() {
                    if s[i] == b'\\' {
                        i += 1;
                    } else if s[i] == b']' {
                        i += 1;
                        continue 'scan;
                    }
                    i += 1;
                }
                return false;
            }
            b'{' => depth += 1,
            b'}' => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    depth == 0
}

/// Whether `**` occurs anywhere but in the last two bytes.
fn has_mid_doublestar(p: &[u8]) -> bool {
    let end = p.len().saturating_sub(3);
    let mut i = 0;
    while i < end {
        if p[i] == b'\\' {
            i += 1;
        } else if p[i] == b'*' && p[i + 1] == b'*' {
            return true;
        }
        i += 1;
    }
    false
}

fn index_meta(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'*' | b'?' | b'[' | b'{' => return Some(i),
            b'\\' => i += 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Not preceded by a backslash (a one-byte look-behind, as doublestar does).
fn unescaped_at(s: &[u8], i: usize) -> bool {
    i == 0 || s[i - 1] != b'\\'
}

fn last_index_slash_or_alt(s: &[u8]) -> Option<usize> {
    (0..s.len())
        .rev()
        .find(|&i| (s[i] == b'/' || s[i] == b'}') && unescaped_at(s, i))
}

fn last_index_slash(s: &[u8]) -> Option<usize> {
    (0..s.len())
        .rev()
        .find(|&i| s[i] == b'/' && unescaped_at(s, i))
}

/// The `{` matching a `}` just past the end of `s`.
fn index_matched_opening_alt(s: &[u8]) -> Option<usize> {
    let mut depth = 1usize;
    for i in (0..s.len()).rev() {
        if !unescaped_at(s, i) {
            continue;
        }
        match s[i] {
            b'}' => depth += 1,
            b'{' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The `}` closing a `{` just before the start of `s`.
fn index_matched_closing_alt(s: &[u8]) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The next top-level `,` in the body of an alternation.
fn index_next_alt(s: &[u8]) -> Option<usize> {
    let mut depth = 1isize;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 1 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn index_unescaped_byte(s: &[u8], c: u8) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            i += 1;
        } else if s[i] == c {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// `fs.ValidPath`: what an `os.DirFS` agrees to look up.
fn valid_fs_path(name: &[u8]) -> bool {
    if std::str::from_utf8(name).is_err() {
        return false;
    }
    if name == b"." {
        return true;
    }
    name.split(|&b| b == b'/')
        .all(|e| !e.is_empty() && e != b"." && e != b"..")
}

struct Globber {
    /// The directory (as the OS sees it) that relative names resolve against.
    root: Vec<u8>,
    reuse_matches: bool,
    budget: usize,
}

impl Globber {
    fn os(&self, name: &[u8]) -> PathBuf {
        let mut p = self.root.clone();
        if p.last() != Some(&b'/') {
            p.push(b'/');
        }
        p.extend_from_slice(name);
        PathBuf::from(OsStr::from_bytes(&p))
    }

    /// `fs.Stat` on the `DirFS`: follows symlinks; any error is "absent".
    fn stat(&self, name: &[u8]) -> Option<Metadata> {
        if !valid_fs_path(name) || name.contains(&0) {
            return None;
        }
        std::fs::metadata(self.os(name)).ok()
    }

    /// `fs.ReadDir` on the `DirFS`; any error is an empty listing.
    fn read_dir(&mut self, name: &[u8]) -> Result<Vec<(Vec<u8>, FileType)>, GlobError> {
        if !valid_fs_path(name) || name.contains(&0) {
            return Ok(Vec::new());
        }
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or(GlobError::TooManyDirectories)?;
        let Ok(entries) = std::fs::read_dir(self.os(name)) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in entries {
            let Ok(entry) = entry else {
                return Ok(Vec::new());
            };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            out.push((entry.file_name().into_encoded_bytes(), kind));
        }
        Ok(out)
    }

    /// A directory, or a symlink to one.
    fn is_dir(&self, dir: &[u8], name: &[u8], kind: FileType) -> bool {
        if kind.is_symlink() {
            self.stat(&join(dir, name)).is_some_and(|m| m.is_dir())
        } else {
            kind.is_dir()
        }
    }

    /// Appends to `found` what `pattern` matches. `last` is true for the
    /// pattern's last element, where files may match; above it only
    /// directories do.
    fn glob(&mut self, pattern: &[u8], mut found: Paths, last: bool) -> Result<Paths, GlobError> {
        let Some(first_meta) = index_meta(pattern) else {
            // No wildcard: does that path exist? A trailing slash is
            // ignored, so `a/` names the file `a` too.
            let path = unescape_meta(pattern);
            let probe = match path.as_slice() {
                [rest @ .., b'/'] if !rest.is_empty() => rest,
                p => p,
            };
            if self.stat(probe).is_some() {
                found.push(path);
            }
            return Ok(found);
        };
        let mut dir: &[u8] = b".";
        let mut element = pattern;
        let mut split = last_index_slash_or_alt(pattern);
        if let Some(i) = split {
            if pattern[i] == b'}' {
                match index_matched_opening_alt(&pattern[..i]) {
                    Some(open) => return self.glob_alternation(pattern, open, i, found, last),
                    None => {
                        // A stray `}` is an ordinary character.
                        split = last_index_slash(&pattern[..i]);
                        if let Some(j) = split {
                            dir = &pattern[..j];
                            element = &pattern[j + 1..];
                        }
                    }
                }
            } else {
                dir = &pattern[..i];
                element = &pattern[i + 1..];
            }
        }
        if split.is_none_or(|i| i <= first_meta) {
            return self.glob_dir(&unescape_meta(dir), element, found, last);
        }
        // doublestar's collecting globber seeds the directory search with
        // the matches so far, so earlier alternatives' matches are searched
        // as directories too: `{a/b,c*/go.sum}` also yields `a/b/go.sum`.
        let seed = if self.reuse_matches {
            found.clone()
        } else {
            Vec::new()
        };
        let dirs = self.glob(dir, seed, false)?;
        for d in &dirs {
            found = self.glob_dir(d, element, found, last)?;
        }
        Ok(found)
    }

    /// The last `{...}` group (at `open`..=`close`) is expanded textually,
    /// each alternative globbed as a pattern of its own.
    fn glob_alternation(
        &mut self,
        pattern: &[u8],
        open: usize,
        close: usize,
        mut found: Paths,
        last: bool,
    ) -> Result<Paths, GlobError> {
        let (dirs, start) = match last_index_slash_or_alt(&pattern[..open]) {
            Some(i) if pattern[i] == b'/' => {
                let seed = if self.reuse_matches {
                    found.clone()
                } else {
                    Vec::new()
                };
                (self.glob(&pattern[..i], seed, false)?, i + 1)
            }
            _ => (vec![Vec::new()], 0),
        };
        for d in &dirs {
            let prefix = escape_meta(d);
            // An empty last alternative is never tried: `go.sum{.bak,}`
            // does not match `go.sum`.
            let mut from = open + 1;
            while from < close {
                let to = index_next_alt(&pattern[from..close]).map_or(close, |c| c + from);
                let mut alt = Vec::with_capacity(prefix.len() + pattern.len());
                if !prefix.is_empty() && prefix != b"." {
                    alt.extend_from_slice(&prefix);
                    alt.push(b'/');
                }
                alt.extend_from_slice(&pattern[start..open]);
                alt.extend_from_slice(&pattern[from..to]);
                alt.extend_from_slice(&pattern[close + 1..]);
                found = self.glob(&alt, found, last)?;
                from = to + 1;
            }
        }
        Ok(found)
    }

    /// Entries of `dir` whose names match the one-element `element`.
    fn glob_dir(
        &mut self,
        dir: &[u8],
        element: &[u8],
        mut found: Paths,
        last: bool,
    ) -> Result<Paths, GlobError> {
        if element.is_empty() {
            if self.stat(dir).is_some_and(|m| m.is_dir()) {
                found.push(dir.to_vec());
            }
            return Ok(found);
        }
        if element == b"**" {
            return self.glob_doublestar(dir, found, last);
        }
        for (name, kind) in self.read_dir(dir)? {
            if match_element(element, &name)? && (last || self.is_dir(dir, &name, kind)) {
                found.push(join(dir, &name));
            }
        }
        Ok(found)
    }

    /// `dir` and everything below it, descending into symlinked
    /// directories too (the kernel's `ELOOP` ends a cycle).
    fn glob_doublestar(
        &mut self,
        dir: &[u8],
        mut found: Paths,
        last: bool,
    ) -> Result<Paths, GlobError> {
        let mut pending = vec![dir.to_vec()];
        while let Some(dir) = pending.pop() {
            let entries = self.read_dir(&dir)?;
            if entries.is_empty() && self.stat(&dir).is_none_or(|m| !m.is_dir()) {
                continue;
            }
            for (name, kind) in entries.iter().rev() {
                let path = join(&dir, name);
                if self.is_dir(&dir, name, *kind) {
                    pending.push(path);
                } else if last {
                    found.push(path);
                }
            }
            found.push(dir);
        }
        Ok(found)
    }
}

/// Go's `utf8.DecodeRune`: (rune, length); U+FFFD and 1 for an invalid
/// byte, U+FFFD and 0 at the end.
fn decode_rune(s: &[u8]) -> (u32, usize) {
    const ERROR: u32 = 0xFFFD;
    let Some(&b0) = s.first() else {
        return (ERROR, 0);
    };
    if b0 < 0x80 {
        return (u32::from(b0), 1);
    }
    let len = match b0 {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (ERROR, 1),
    };
    match s.get(..len).map(std::str::from_utf8) {
        Some(Ok(text)) => text
            .chars()
            .next()
            .map_or((ERROR, 1), |c| (u32::from(c), len)),
        _ => (ERROR, 1),
    }
}

const MAX_RUNE: u32 = 0x10FFFF;
const SEPARATOR: u32 = b'/' as u32;

/// Where matching resumes after a mismatch.
#[derive(Clone, Copy)]
struct Resume {
    /// After a `**/`: pattern index, and the name index it was tried at.
    globstar: Option<(usize, usize)>,
    /// After a `*`: pattern index, and the name index it was tried at.
    star: Option<(usize, usize)>,
}

/// Whether a directory entry's `name` matches one pattern element, as
/// doublestar's unvalidated matcher decides it.
pub(crate) fn match_element(pattern: &[u8], name: &[u8]) -> Result<bool, BadPattern> {
    match_from(
        pattern,
        name,
        Resume {
            globstar: None,
            star: None,
        },
        0,
        0,
    )
}

fn match_from(
    pat: &[u8],
    name: &[u8],
    mut resume: Resume,
    mut p: usize,
    mut n: usize,
) -> Result<bool, BadPattern> {
    // Also true where an alternative starts: `a{**/b,c}` treats the `**/`
    // as a globstar.
    let mut segment_start = true;
    'name: while n < name.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    p += 1;
                    if p < pat.len() && pat[p] == b'*' {
                        p += 1;
                        if segment_start {
                            if p >= pat.len() {
                                return Ok(true);
                            }
                            let (r, len) = decode_rune(&pat[p..]);
                            if r == SEPARATOR {
                                p += len;
                                resume.globstar = Some((p, n));
                                resume.star = None;
                                continue 'name;
                            }
                        }
                        // `a**` is `a*`.
                    }
                    segment_start = false;
                    resume.star = Some((p, n));
                    continue 'name;
                }
                b'?' => {
                    segment_start = false;
                    let (r, len) = decode_rune(&name[n..]);
                    if r != SEPARATOR {
                        p += 1;
                        n += len;
                        continue 'name;
                    }
                }
                b'[' => {
                    segment_start = false;
                    p += 1;
                    if p >= pat.len() {
                        return Err(BadPattern);
                    }
                    let (r, r_len) = decode_rune(&name[n..]);
                    let negate = pat[p] == b'!' || pat[p] == b'^';
                    if negate {
                        p += 1;
                    }
                    if p >= pat.len() || pat[p] == b']' {
                        return Err(BadPattern);
                    }
                    let mut matched = false;
                    let mut prev = MAX_RUNE;
                    while p < pat.len() && pat[p] != b']' {
                        let (mut c, len) = decode_rune(&pat[p..]);
                        p += len;
                        if prev < MAX_RUNE
                            && c == u32::from(b'-')
                            && p < pat.len()
                            && pat[p] != b']'
                        {
                            if pat[p] == b'\\' {
                                p += 1;
                            }
                            let (hi, len) = decode_rune(&pat[p..]);
                            p += len;
                            if prev <= r && r <= hi {
                                matched = true;
                                break;
                            }
                            prev = MAX_RUNE;
                            continue;
                        }
                        if c == u32::from(b'\\') {
                            let (escaped, len) = decode_rune(&pat[p..]);
                            c = escaped;
                            p += len;
                        }
                        if c == r {
                            matched = true;
                            break;
                        }
                        prev = c;
                    }
                    if matched != negate {
                        let Some(close) = index_unescaped_byte(&pat[p..], b']') else {
                            return Err(BadPattern);
                        };
                        p += close + 1;
                        n += r_len;
                        continue 'name;
                    }
                    if p >= pat.len() {
                        return Err(BadPattern);
                    }
                }
                b'{' => {
                    let before = p;
                    p += 1;
                    let close = index_matched_closing_alt(&pat[p..]).ok_or(BadPattern)? + p;
                    let try_alt = |from: usize, to: usize| {
                        let mut alt = Vec::with_capacity(pat.len());
                        alt.extend_from_slice(&pat[..before]);
                        alt.extend_from_slice(&pat[from..to]);
                        alt.extend_from_slice(&pat[close + 1..]);
                        match_from(&alt, name, resume, before, n)
                    };
                    while let Some(comma) = index_next_alt(&pat[p..close]) {
                        if try_alt(p, p + comma)? {
                            return Ok(true);
                        }
                        p += comma + 1;
                    }
                    return try_alt(p, close);
                }
                c => {
                    if c == b'\\' {
                        p += 1;
                        if p >= pat.len() {
                            return Err(BadPattern);
                        }
                    }
                    let (want, want_len) = decode_rune(&pat[p..]);
                    let (got, got_len) = decode_rune(&name[n..]);
                    if want == got {
                        p += want_len;
                        n += got_len;
                        segment_start = want == SEPARATOR;
                        continue 'name;
                    }
                }
            }
        }
        // Mismatch: let the last `*` take one more rune (never a
        // separator), else let the last `**/` take one more element.
        if let Some((star_p, star_n)) = resume.star {
            let (r, len) = decode_rune(&name[star_n..]);
            if r != SEPARATOR {
                resume.star = Some((star_p, star_n + len));
                p = star_p;
                n = star_n + len;
                segment_start = false;
                continue 'name;
            }
        }
        if let Some((gs_p, gs_n)) = resume.globstar {
            let mut i = gs_n;
            while i < name.len() {
                let (r, len) = decode_rune(&name[i..]);
                i += len;
                if r == SEPARATOR {
                    resume.globstar = Some((gs_p, i));
                    p = gs_p;
                    n = i;
                    segment_start = true;
                    continue 'name;
                }
            }
        }
        return Ok(false);
    }
    matches_empty(&pat[p..])
}

/// Whether what is left of the pattern matches the empty string at the end
/// of the name. Only these spellings do: nothing, `*`, `**`, `/**`, `**/`,
/// `/**/`, or an alternation one of whose alternatives (with what follows)
/// does; `*{a,}` does not.
fn matches_empty(pat: &[u8]) -> Result<bool, BadPattern> {
    if matches!(pat, b"" | b"*" | b"**" | b"/**" | b"**/" | b"/**/") {
        return Ok(true);
    }
    if pat.first() != Some(&b'{') {
        return Ok(false);
    }
    let close = index_matched_closing_alt(&pat[1..]).ok_or(BadPattern)? + 1;
    let rest = &pat[close + 1..];
    let mut from = 1;
    loop {
        let to = index_next_alt(&pat[from..close]).map(|c| c + from);
        let mut alt = pat[from..to.unwrap_or(close)].to_vec();
        alt.extend_from_slice(rest);
        if matches_empty(&alt)? {
            return Ok(true);
        }
        match to {
            Some(to) => from = to + 1,
            None => return Ok(false),
        }
    }
}

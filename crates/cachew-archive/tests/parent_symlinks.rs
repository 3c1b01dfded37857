//! Symlinks in a parent position (issue #19, item 5), as GNU tar 1.34
//! `tar -xpf` treats them, on the same trees: one that leads to a
//! directory inside the target is followed (and one at a directory entry's
//! own name replaced, GNU's default without `--keep-directory-symlink`);
//! one that leads outside refuses the entry, where GNU tar writes outside.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};

use cachew_archive::{extract, Error, ExtractOptions};
use cachew_testkit::*;

mod support;
use support::*;

/// What is in the target before the extraction.
enum Pre {
    Dir(&'static str),
    Link(&'static str, &'static str),
    File(&'static str),
}

/// What we must do: what GNU tar does (both succeed with the same tree,
/// or both fail), or refuse with this reason where GNU writes outside.
#[derive(PartialEq)]
enum Want {
    Gnu,
    Refused(&'static str),
}

struct Case {
    name: &'static str,
    pre: Vec<Pre>,
    entries: Vec<Vec<u8>>,
    want: Want,
}

fn case(name: &'static str, pre: Vec<Pre>, entries: Vec<Vec<u8>>, want: Want) -> Case {
    Case {
        name,
        pre,
        entries,
        want,
    }
}

fn mode_dir(name: &str, mode: u32) -> Vec<u8> {
    entry(name.as_bytes(), b'5', b"", b"", mode)
}

const ABOVE: Want =
    Want::Refused("a path above the target directory, outside the target directory");

fn cases() -> Vec<Case> {
    use Pre::*;
    let big = vec![7u8; 600_000];
    vec![
        case(
            "file below a symlink to a directory",
            vec![Dir("sub"), Link("a", "sub")],
            vec![file("a/f", b"1")],
            Want::Gnu,
        ),
        case(
            "directory entry at the symlink's name replaces it",
            vec![Dir("sub"), Link("a", "sub")],
            vec![dir("a/"), file("a/f", b"1")],
            Want::Gnu,
        ),
        case(
            "directory entry below the symlink, with its mode",
            vec![Dir("sub"), Link("a", "sub")],
            vec![
                mode_dir("a/b/", 0o700),
                file("a/b/g", b"1"),
                mode_dir("a/c/", 0o750),
            ],
            Want::Gnu,
        ),
        case(
            "a chain of symlinks",
            vec![Dir("sub"), Link("b", "sub"), Link("a", "b")],
            vec![file("a/f", b"1")],
            Want::Gnu,
        ),
        case(
            "dot-dot that stays inside",
            vec![
                Dir("sub/deep"),
                Dir("other"),
                Link("a", "sub/deep/../../other"),
            ],
            vec![file("a/f", b"1")],
            Want::Gnu,
        ),
        case(
            "symlink to the target itself",
            vec![Link("a", ".")],
            vec![file("a/f", b"1")],
            Want::Gnu,
        ),
        case(
            "a symlink below a symlink",
            vec![
                Dir("sub"),
                Dir("other"),
                Link("a", "sub"),
                Link("sub/x", "../other"),
            ],
            vec![file("a/x/f", b"1")],
            Want::Gnu,
        ),
        case(
            "symlink in a symlink's target, then dot-dot",
            vec![Dir("d1/d2"), Link("up", "d1/d2"), Link("a", "up/..")],
            vec![file("a/f", b"1")],
            Want::Gnu,
        ),
        case(
            "the later of two names for one file wins",
            vec![Dir("sub"), Link("a", "sub")],
            vec![
                file("sub/f", &big),
                file("a/f", b"small"),
                file("sub/g", b"1"),
                file("a/g", &big),
            ],
            Want::Gnu,
        ),
        case(
            "a link below the symlink, then a file at its real name",
            vec![Dir("sub"), Link("a", "sub")],
            vec![
                file("sub/x", &big),
                sym("a/l", "x"),
                file("sub/l", b"file wins"),
                hard("a/h", "sub/x"),
                file("sub/h", b"2"),
            ],
            Want::Gnu,
        ),
        case(
            "a file, then a link below the symlink at its name",
            vec![Dir("sub"), Link("a", "sub")],
            vec![file("sub/l", &big), sym("a/l", "x")],
            Want::Gnu,
        ),
        case(
            "a hard link whose source is below the symlink",
            vec![Dir("sub"), Link("a", "sub")],
            vec![file("a/f", b"1"), hard("h", "a/f"), hard("a/g", "a/f")],
            Want::Gnu,
        ),
        case(
            "a FIFO below the symlink",
            vec![Dir("sub"), Link("a", "sub")],
            vec![sym("sub/p", "x"), node("a/p", b'6', 0, 0, 0o600)],
            Want::Gnu,
        ),
        case(
            // (`sub` exists before: GNU tar sets a directory's times
            // when an entry outside it by name comes, so writing `a/f`
            // after that would leave its time to the clock.)
            "a symlink the archive made earlier",
            vec![Dir("sub")],
            vec![sym("a", "sub"), file("a/f", b"1")],
            Want::Gnu,
        ),
        case(
            "dangling symlink: both fail",
            vec![Link("a", "nothere")],
            vec![file("a/f", b"1")],
            Want::Gnu,
        ),
        case(
            "symlink to a file: both fail",
            vec![File("file"), Link("a", "file")],
            vec![file("a/f", b"1")],
            Want::Gnu,
        ),
        case(
            "symlink loop: both fail",
            vec![Link("a", "a")],
            vec![file("a/f", b"1")],
            Want::Gnu,
        ),
        case(
            "directory entry replaces a symlink leading outside",
            vec![Link("a", "../outside")],
            vec![dir("a/"), file("a/f", b"1")],
            Want::Gnu,
        ),
        case(
            "relative symlink leading outside",
            vec![Link("a", "../outside")],
            vec![file("a/f", b"1")],
            ABOVE,
        ),
        case(
            "dot-dot through a subdirectory leading outside",
            vec![Dir("sub"), Link("a", "sub/../../outside")],
            vec![file("ok", b"1"), file("a/f", b"1")],
            ABOVE,
        ),
        case(
            "a symlink below a symlink leading outside",
            vec![Dir("sub"), Link("a", "sub"), Link("sub/x", "../../outside")],
            vec![dir("a/x/y/"), file("a/x/y/f", b"1")],
            ABOVE,
        ),
        case(
            "absolute symlink",
            vec![Link("a", "OUTSIDE")],
            vec![sym("a/l", "x")],
            Want::Refused("an absolute path, outside the target directory"),
        ),
    ]
}

/// Makes `run/t` with the case's tree and an empty `run/outside`.
fn setup(run: &Path, pre: &[Pre]) -> std::path::PathBuf {
    let t = run.join("t");
    let outside = run.join("outside");
    fs::create_dir_all(&t).unwrap();
    fs::create_dir_all(&outside).unwrap();
    for p in pre {
        match p {
            Pre::Dir(d) => fs::create_dir_all(t.join(d)).unwrap(),
            Pre::File(f) => fs::write(t.join(f), b"was here").unwrap(),
            Pre::Link(l, "OUTSIDE") => symlink(&outside, t.join(l)).unwrap(),
            Pre::Link(l, target) => symlink(target, t.join(l)).unwrap(),
        }
    }
    t
}

fn gnu_extract(tar: &[u8], dir: &Path) -> Result<(), String> {
    let mut child = Command::new("tar")
        .args(["-xpf", "-", "-C"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), tar).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The run's tree (target and outside), without the times of directories
/// that existed before, which both tools leave to the clock.
fn tree(run: &Path, pre: &[Pre]) -> Vec<(String, String)> {
    let old: Vec<String> = pre
        .iter()
        .filter_map(|p| match p {
            Pre::Dir(d) => Some(format!("./t/{d}")),
            _ => None,
        })
        .flat_map(|d| {
            let mut all = vec![d.clone()];
            let mut p = Path::new(&d);
            while let Some(up) = p.parent() {
                all.push(up.to_string_lossy().into_owned());
                p = up;
            }
            all
        })
        .chain(["./t".to_string(), "./outside".to_string()])
        .collect();
    snapshot(run)
        .into_iter()
        .filter(|(k, _)| k != b".")
        .map(|(k, v)| {
            let k = String::from_utf8_lossy(&k).into_owned();
            let v = if old.contains(&k) {
                v.split(' ')
                    .filter(|w| !w.starts_with("mtime="))
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                v
            };
            (k, v)
        })
        .collect()
}

#[test]
fn parent_symlinks_match_gnu_tar_or_are_refused() {
    let dir = fast_tempdir();
    let mut failures = Vec::new();
    for (i, c) in cases().into_iter().enumerate() {
        let raw = tar_bytes(&c.entries, true);
        let gnu_run = dir.path().join(format!("{i}-gnu"));
        let gnu = gnu_extract(&raw, &setup(&gnu_run, &c.pre));
        if let Want::Refused(_) = c.want {
            // The deliberate difference: GNU tar writes outside.
            if fs::read_dir(gnu_run.join("outside"))
                .unwrap()
                .next()
                .is_none()
            {
                failures.push(format!("{}: GNU tar wrote nothing outside", c.name));
            }
        }
        for threads in [1, 3] {
            let run = dir.path().join(format!("{i}-ours-{threads}"));
            let t = setup(&run, &c.pre);
            let ours = extract(
                compress(&raw).as_slice(),
                &t,
                &ExtractOptions::default().with_threads(threads),
            );
            let at = format!("{} (threads {threads})", c.name);
            match (&c.want, &gnu, &ours) {
                (Want::Gnu, Ok(()), Ok(_)) => {
                    let (g, o) = (tree(&gnu_run, &c.pre), tree(&run, &c.pre));
                    if g != o {
                        failures.push(format!("{at}:\n  gnu:  {g:?}\n  ours: {o:?}"));
                    }
                }
                (Want::Gnu, Err(_), Err(_)) => {}
                (Want::Gnu, Ok(()), Err(e)) => failures.push(format!("{at}: we failed: {e}")),
                (Want::Gnu, Err(e), Ok(_)) => {
                    failures.push(format!("{at}: GNU tar failed ({e}), we did not"))
                }
                (Want::Refused(why), _, Err(Error::UnsafeEntry { entry, reason })) => {
                    if !reason.ends_with(why) || !reason.contains("through `a`") {
                        failures.push(format!("{at}: refused `{entry}` for {reason:?}"));
                    }
                    if fs::read_dir(run.join("outside")).unwrap().next().is_some() {
                        failures.push(format!("{at}: something was written outside"));
                    }
                }
                (Want::Refused(_), _, other) => {
                    failures.push(format!("{at}: not refused: {other:?}"))
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The summary names the directories made only as parents (what an
/// in-place restore through a staging tree needs to follow GNU tar), and
/// says when there were too many to name.
#[test]
fn the_summary_names_directories_created_only_as_parents() {
    use std::collections::HashMap;
    use std::path::PathBuf;
    let tmp = fast_tempdir();
    let raw = tar_bytes(
        &[
            dir("d/"),
            file("d/x/f", b"1"),
            file("i/f", b"1"),
            file("j/f", b"1"),
            dir("j/"),
        ],
        true,
    );
    let t = tmp.path().join("t");
    let s = extract(compress(&raw).as_slice(), &t, &ExtractOptions::default()).unwrap();
    let want: HashMap<PathBuf, bool> = [("d/x", false), ("i", false), ("j", true)]
        .into_iter()
        .map(|(p, later)| (PathBuf::from(p), later))
        .collect();
    assert_eq!(s.implied_dirs, Some(want));

    let many: Vec<Vec<u8>> = (0..4097).map(|i| file(&format!("p{i}/f"), b"")).collect();
    let s = extract(
        compress(&tar_bytes(&many, true)).as_slice(),
        &tmp.path().join("many"),
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(s.implied_dirs, None, "over the 4096 cap: unknown");
}

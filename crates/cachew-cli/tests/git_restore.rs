//! End to end: `cachew git restore` against the reference server's `/git/`
//! endpoints, with real `git` repositories on loopback.

use std::process::{Command, Stdio};

mod git_support;

use git_support::{dead_url, git, head, isolate_git, noise, Fixture, REPO};

#[test]
fn a_restored_clone_ends_at_the_new_head_through_the_bundle() {
    let fx = Fixture::new();
    // About 3 MiB of noise: with 1 MiB chunks the snapshot is downloaded in
    // several parallel ranged requests.
    let first = fx.commit("blob.bin", &noise(3 << 20));
    let dir1 = fx.path("first");
    let (code, err) = fx.restore(
        &fx.url(),
        &[
            REPO,
            dir1.to_str().unwrap(),
            "--download-chunk-size-mb",
            "1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("8-way ranged download"), "{err}");
    assert_eq!(head(&dir1), first);
    assert_eq!(
        std::fs::read(dir1.join("blob.bin")).unwrap(),
        noise(3 << 20)
    );
    assert_eq!(git(&dir1, &["status", "--porcelain"]), "");

    // The upstream gains commits after the snapshot was taken.
    fx.commit("b.txt", b"two");
    let third = fx.commit("c.txt", b"three");

    // A trailing slash must not change where the clone goes.
    let dir2 = fx.path("second");
    let arg = format!("{}/", dir2.display());
    let (code, err) = fx.restore(&fx.url(), &[REPO, &arg, "--download-concurrency", "4"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("bundle applied"), "{err}");
    assert_eq!(head(&dir2), third);
    assert_eq!(
        std::fs::read_to_string(dir2.join("c.txt")).unwrap(),
        "three"
    );

    // --no-bundle leaves the clone at the snapshot's commit; concurrency 1
    // is one plain GET.
    let dir3 = fx.path("third");
    let (code, err) = fx.restore(
        &fx.url(),
        &[
            REPO,
            dir3.to_str().unwrap(),
            "--no-bundle",
            "--download-concurrency",
            "1",
            "--zstd-threads",
            "1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("ranged download"), "{err}");
    assert_eq!(head(&dir3), first);

    // No staging directories or bundle files are left behind.
    assert_eq!(fx.entries(), ["first", "root", "second", "third"]);
}

#[test]
fn ref_and_commit_flows() {
    let fx = Fixture::new();
    let first = fx.commit("a.txt", b"one");
    let dir = fx.path("clone");
    let dir_arg = dir.to_str().unwrap();
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir_arg]);
    assert_eq!(code, 0, "{err}");

    // The clone already has the SHAs: nothing else happens, not even a
    // request (the server URL is dead).
    let main_ref = format!("main={first}");
    let (code, err) = fx.restore(
        &dead_url(),
        &[REPO, dir_arg, "--ref", &main_ref, "--commit", &first],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing to do"), "{err}");

    // Upstream moves on: the existing clone asks the server (ensure-refs)
    // and pulls.
    let second = fx.commit("b.txt", b"two");
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir_arg, "--commit", &second]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(head(&dir), second);

    let third = fx.commit("c.txt", b"three");
    let main_ref = format!("refs/heads/main={third}");
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir_arg, "--ref", &main_ref]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(head(&dir), third);

    // A commit nobody has is an error.
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir_arg, "--commit", unknown]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(unknown), "{err}");
    assert_eq!(head(&dir), third);

    // A fresh directory with --ref: snapshot, bundle, and the ref is there.
    let fresh = fx.path("fresh");
    let (code, err) = fx.restore(
        &fx.url(),
        &[REPO, fresh.to_str().unwrap(), "--ref", &main_ref],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(head(&fresh), third);
}

#[test]
fn a_missing_snapshot_is_a_clear_error() {
    let fx = Fixture::new();
    fx.commit("a.txt", b"one");
    let dir = fx.path("nope");
    let (code, err) = fx.restore(
        &fx.url(),
        &["https://example.test/org/nope", dir.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("has no snapshot of https://example.test/org/nope"),
        "{err}"
    );
    assert!(!dir.exists());
    assert_eq!(fx.entries(), ["root"]);

    // A usage error is exit 80, never 2; so is a --commit that is no SHA.
    let (code, err) = fx.restore(&fx.url(), &[REPO, "x", "--ref", "no-equals-sign"]);
    assert_eq!(code, 80, "{err}");
    let (code, err) = fx.restore(&fx.url(), &[REPO, "x", "--commit", "abc"]);
    assert_eq!(code, 80, "{err}");
    assert!(err.contains("not a commit SHA"), "{err}");
}

#[test]
fn an_existing_directory_gets_the_snapshot_in_place() {
    let fx = Fixture::new();
    fx.commit("a.txt", b"one");
    let dir = fx.path("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("precious"), b"keep").unwrap();
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(in place)"), "{err}");
    assert_eq!(std::fs::read(dir.join("precious")).unwrap(), b"keep");
    assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "one");
    assert_eq!(git(&dir, &["status", "--porcelain"]), "?? precious");
    assert_eq!(fx.entries(), ["mine", "root"]);

    // A file where DIR should be is refused, and left alone.
    let file = fx.path("file");
    std::fs::write(&file, b"x").unwrap();
    let (code, err) = fx.restore(&fx.url(), &[REPO, file.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a directory"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    // An empty directory is filled.
    let empty = fx.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, err) = fx.restore(&fx.url(), &[REPO, empty.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(empty.join("a.txt")).unwrap(), "one");
}

#[test]
fn a_bundle_that_does_not_apply_is_only_a_warning() {
    let fx = Fixture::new();
    let first = fx.commit("a.txt", b"one");
    let dir = fx.path("warm");
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");

    // Rewrite upstream history: the bundle cannot fast-forward the snapshot.
    git(&fx.upstream, &["checkout", "-q", "--orphan", "rewritten"]);
    fx.commit("z.txt", b"unrelated");
    git(&fx.upstream, &["branch", "-q", "-M", "rewritten", "main"]);

    let dir2 = fx.path("warned");
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir2.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: could not apply the delta bundle"),
        "{err}"
    );
    assert_eq!(head(&dir2), first);
}

#[test]
fn cachew_serve_with_a_git_root_serves_snapshots() {
    use std::io::BufRead;

    let fx = Fixture::new();
    let first = fx.commit("a.txt", b"one");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_cachew"));
    isolate_git(&mut serve);
    let mut child = serve
        .args(["serve", "--bind", "127.0.0.1:0", "--dir"])
        .arg(fx.path("served-cache"))
        .arg("--git-root")
        .arg(&fx.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split(" at ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
        .expect("cachew serve prints its URL");
    let dir = fx.path("from-serve");
    let (code, err) = fx.restore(&url, &[REPO, dir.to_str().unwrap()]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(head(&dir), first);
}

/// SIGINT, and SIGTERM (how CI cancels a job), stop a restore with 128 +
/// the signal's number and leave nothing behind.
#[test]
fn an_interrupted_restore_leaves_nothing_behind() {
    // 2 MiB of noise at 256 KB/s per connection: several seconds of download.
    let fx = Fixture::with_rate(Some(256_000));
    fx.commit("blob.bin", &noise(2 << 20));
    // The first request takes the snapshot; ask for one byte of it so that
    // the timed restores below start streaming at once.
    fx.snapshot_first_byte();

    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let dir = fx.path("slow");
        let child = fx
            .command(
                &fx.url(),
                &[REPO, dir.to_str().unwrap(), "--download-chunk-size-mb", "1"],
            )
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the staging directory exists, then interrupt.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !fx
            .entries()
            .iter()
            .any(|e| e.starts_with(".slow.cachew-") && e.ends_with(".staging"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no staging directory appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{signal}: {err}");
        assert!(
            err.contains(&format!("interrupted by SIG{signal}")),
            "{signal}: {err}"
        );
        assert!(!dir.exists());
        assert_eq!(fx.entries(), ["root"]);
    }
}

/// What DIR is before a table case runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Before {
    /// Nothing there.
    Fresh,
    /// An empty directory.
    Empty,
    /// A clone at the oldest commit (an old CI workspace).
    Stale,
    /// A stale clone with a modified tracked file and an untracked one.
    Dirty,
    /// A directory with a file, no clone.
    NotAClone,
}

/// The flags of a table case.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Bundle,
    NoBundle,
    RefPinnedNoBundle,
    RefAny,
    CommitShortNoBundle,
    CommitFull,
}

/// How a table case names DIR, relative to its working directory `cwd`
/// (and `$HOME` = `cwd/home`).
const FORMS: [&str; 5] = ["repo", "./repo", "sub/repo", "ABS/abs/repo", "~/repo"];

/// Every DIR form × state × mode, against one server whose snapshot is at
/// `c2` while upstream is at `c3`, compared with the Go flow of
/// PROTOCOL.md §5: the snapshot always goes in (in place for an existing
/// DIR: the snapshot's files win, DIR's others stay), the bundle brings it
/// to `c3` unless `--no-bundle`, and `--ref`/`--commit` for `c3` end at `c3`
/// through ensure-refs and `git pull --ff-only` when the bundle did not.
#[test]
fn every_dir_form_state_and_mode_ends_as_the_go_flow_does() {
    let fx = Fixture::new();
    let c1 = fx.commit("a.txt", b"one");
    // The stale workspace every Stale/Dirty case starts from.
    let template = fx.path("template");
    git(
        fx.tmp.path(),
        &["clone", "-q", fx.upstream.to_str().unwrap(), "template"],
    );
    git(&template, &["remote", "set-url", "origin", REPO]);
    assert_eq!(head(&template), c1);
    let c2 = fx.commit("b.txt", b"two");
    fx.snapshot_first_byte(); // The server keeps a snapshot at c2.
    let c3 = fx.commit("c.txt", b"three");

    let states = [
        Before::Fresh,
        Before::Empty,
        Before::Stale,
        Before::Dirty,
        Before::NotAClone,
    ];
    let modes = [
        Mode::Bundle,
        Mode::NoBundle,
        Mode::RefPinnedNoBundle,
        Mode::RefAny,
        Mode::CommitShortNoBundle,
        Mode::CommitFull,
    ];
    // Every form × state with the bundle, and every state × mode with the
    // forms taking turns.
    let mut cases = Vec::new();
    for (f, _) in FORMS.iter().enumerate() {
        for &state in &states {
            cases.push((f, state, Mode::Bundle));
        }
    }
    for (i, &state) in states.iter().enumerate() {
        for (j, &mode) in modes.iter().enumerate().skip(1) {
            cases.push(((i + j) % FORMS.len(), state, mode));
        }
    }
    let started = std::time::Instant::now();
    let cases_root = fx.path("cases");
    for (n, &(form, state, mode)) in cases.iter().enumerate() {
        let cwd = cases_root.join(format!("c{n}"));
        let home = cwd.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let arg = FORMS[form].replace("ABS", cwd.to_str().unwrap());
        let dir = match FORMS[form] {
            "~/repo" => home.join("repo"),
            "ABS/abs/repo" => cwd.join("abs/repo"),
            other => cwd.join(other.trim_start_matches("./")),
        };
        match state {
            Before::Fresh => {}
            Before::Empty => std::fs::create_dir_all(&dir).unwrap(),
            Before::Stale | Before::Dirty => {
                std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
                git(
                    dir.parent().unwrap(),
                    &["clone", "-q", template.to_str().unwrap(), "repo"],
                );
                git(&dir, &["remote", "set-url", "origin", REPO]);
                if state == Before::Dirty {
                    std::fs::write(dir.join("a.txt"), b"local edit").unwrap();
                    std::fs::write(dir.join("untracked.txt"), b"mine").unwrap();
                }
            }
            Before::NotAClone => {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("precious"), b"keep").unwrap();
            }
        }
        let mut args = vec![REPO.to_owned(), arg.clone()];
        let extra: Vec<String> = match mode {
            Mode::Bundle => vec![],
            Mode::NoBundle => vec!["--no-bundle".into()],
            Mode::RefPinnedNoBundle => {
                vec!["--no-bundle".into(), "--ref".into(), format!("main={c3}")]
            }
            Mode::RefAny => vec!["--ref".into(), "main=".into()],
            Mode::CommitShortNoBundle => {
                vec!["--no-bundle".into(), "--commit".into(), c3[..10].to_owned()]
            }
            Mode::CommitFull => vec!["--commit".into(), c3.clone()],
        };
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = fx
            .command(&fx.url(), &args)
            .current_dir(&cwd)
            .env("HOME", &home)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("case {n}: DIR {arg:?}, {state:?}, {mode:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{what}");

        // The Go flow's outcome.
        let want_head = if mode == Mode::NoBundle { &c2 } else { &c3 };
        let want_status = match state {
            Before::Dirty => "?? untracked.txt",
            Before::NotAClone => "?? precious",
            _ => "",
        };
        assert!(!err.contains("warning"), "{what}");
        assert_eq!(&head(&dir), want_head, "{what}");
        assert_eq!(git(&dir, &["status", "--porcelain"]), want_status, "{what}");
        git(&dir, &["fsck", "--no-progress"]);
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "one");
        if state == Before::NotAClone {
            assert_eq!(std::fs::read(dir.join("precious")).unwrap(), b"keep");
        }
        // Nothing is left beside DIR: no staging, backup or bundle file.
        let mut beside: Vec<String> = std::fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        beside.sort();
        assert!(beside.is_empty(), "{what}: left {beside:?}");
    }
    eprintln!("{} table cases in {:?}", cases.len(), started.elapsed());
}

/// A clone that already has every pinned SHA is left alone, in every DIR
/// form, without a single request (the server URL is dead); a `NAME=` ref
/// cannot be checked locally, so it is not enough.
#[test]
fn a_clone_with_the_shas_is_left_alone_in_every_form() {
    let fx = Fixture::new();
    let c1 = fx.commit("a.txt", b"one");
    for (n, form) in FORMS.iter().enumerate() {
        let cwd = fx.path(&format!("c{n}"));
        let home = cwd.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let arg = form.replace("ABS", cwd.to_str().unwrap());
        let (code, err) = {
            let out = fx
                .command(&fx.url(), &[REPO, &arg])
                .current_dir(&cwd)
                .env("HOME", &home)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        assert_eq!(code, Some(0), "{arg}: {err}");
        for extra in [
            vec!["--commit", &c1[..7]],
            vec!["--ref", &format!("main={c1}")],
        ] {
            let mut args = vec![REPO, arg.as_str()];
            let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            args.extend(extra.iter().map(String::as_str));
            let out = fx
                .command(&dead_url(), &args)
                .current_dir(&cwd)
                .env("HOME", &home)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{arg} {extra:?}: {err}");
            assert!(err.contains("nothing to do"), "{arg} {extra:?}: {err}");
        }
        let out = fx
            .command(&dead_url(), &[REPO, &arg, "--ref", "main="])
            .current_dir(&cwd)
            .env("HOME", &home)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{arg}: main= asks the server");
    }
}

/// `--lfs`: a server without an LFS snapshot (404) is not an error.
#[test]
fn lfs_without_an_lfs_snapshot_is_fine() {
    let fx = Fixture::new();
    let c1 = fx.commit("a.txt", b"one");
    let dir = fx.path("lfs");
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir.to_str().unwrap(), "--lfs"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no LFS snapshot"), "{err}");
    assert_eq!(head(&dir), c1);
}

//! `git restore --ref` / `--commit` with ensure-refs answers the reference
//! server never gives, through a front that answers ensure-refs itself: a
//! ref left out of the answer (or answered empty) is no evidence, so the
//! Go CLI's `git pull --ff-only` runs; missing commits are an error.

mod git_support;

use git_support::{git, head, EnsureRefsFront, Fixture, REPO};

fn fsck(dir: &std::path::Path) {
    git(dir, &["fsck", "--strict"]);
    assert_eq!(git(dir, &["status", "--porcelain"]), "");
}

#[test]
fn a_ref_missing_from_the_answer_leads_to_the_pull() {
    let fx = Fixture::new();
    let c1 = fx.commit("a.txt", b"one");
    let dir = fx.path("clone");
    let dir_arg = dir.to_str().unwrap();
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir_arg]);
    assert_eq!(code, 0, "{err}");

    // The reference server resolves main to a commit the clone has: no pull.
    let (code, err) = fx.restore(&fx.url(), &[REPO, dir_arg, "--ref", "main="]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("cachew: pulling"), "{err}");

    // Left out, or empty: the pull runs (and finds nothing new).
    for answer in [
        r#"{"refs":{},"missing_commits":[],"fetched":false}"#,
        r#"{"refs":{"refs/heads/main":""}}"#,
        r#"{"refs":null}"#,
    ] {
        let front = EnsureRefsFront::start(&fx.url(), answer);
        let (code, err) = fx.restore(&front.url(), &[REPO, dir_arg, "--ref", "main="]);
        assert_eq!(code, 0, "{answer}: {err}");
        assert!(
            err.contains("cachew: pulling refs/heads/main (server already had them)"),
            "{answer}: {err}"
        );
        assert_eq!(head(&dir), c1);
        fsck(&dir);
    }

    // A pinned ref the clone lacks, left out of the answer: the pull from
    // origin brings it (no bundle here).
    let c2 = fx.commit("b.txt", b"two");
    let front = EnsureRefsFront::start(&fx.url(), r#"{"refs":{}}"#);
    let pin = format!("main={c2}");
    let (code, err) = fx.restore(&front.url(), &[REPO, dir_arg, "--no-bundle", "--ref", &pin]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("cachew: pulling"), "{err}");
    assert_eq!(head(&dir), c2);
    fsck(&dir);

    // Commits the answer calls missing are an error that names them.
    let front = EnsureRefsFront::start(&fx.url(), r#"{"missing_commits":["abcd1234"]}"#);
    let (code, err) = fx.restore(&front.url(), &[REPO, dir_arg, "--commit", "abcd1234"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("abcd1234"), "{err}");
    assert_eq!(head(&dir), c2);
    fsck(&dir);
}

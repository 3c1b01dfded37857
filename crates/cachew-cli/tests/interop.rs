//! Interop with the Go client's pipelines: what `cachew save` uploads
//! extracts with `curl | zstd -dc | tar -xpf -`, and what
//! `tar -cpf - | pzstd | curl --data-binary @-` uploads restores with
//! `cachew restore`. Trees must compare equal: contents, modes, symlinks,
//! mtimes.

mod support;

use support::{assert_same_tree, cachew, run, sample_tree, sh, TestServer};

#[test]
fn cachew_save_extracts_with_curl_zstd_tar() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let (code, _, err) = run(cachew(&server.url()).args([
        "save",
        "ci",
        src.to_str().unwrap(),
        "--key",
        "interop-1",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("saved"), "{err}");

    let dst = tmp.path().join("by-tar");
    std::fs::create_dir(&dst).unwrap();
    sh(&format!(
        "curl -sSf '{}' | zstd -dc | tar -xpf - -C '{}'",
        server.object_url("ci", "interop-1"),
        dst.display()
    ));
    assert_same_tree(&src, &dst);
    // The hard link came back as a hard link.
    sh(&format!(
        "test $(stat -c %i '{0}/run.sh') = $(stat -c %i '{0}/run-again.sh')",
        dst.display()
    ));
}

#[test]
fn go_pipeline_upload_restores_with_cachew() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    // What the Go client does: tar | pzstd (several frames + skippable
    // frames) | curl, as one streamed POST.
    sh(&format!(
        "tar -cpf - -C '{}' . | pzstd -q -p2 | curl -sSf -X POST -H 'Content-Type: application/zstd' \
         --data-binary @- '{}'",
        src.display(),
        server.object_url("ci", "from-go")
    ));
    let dst = tmp.path().join("restored/");
    let (code, _, err) = run(cachew(&server.url()).args([
        "restore",
        "ci",
        dst.to_str().unwrap(),
        "--key",
        "from-go",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("restored"), "{err}");
    assert_same_tree(&src, &dst);
}

#[test]
fn save_then_restore_through_the_server_with_verify() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let (code, _, err) = run(cachew(&server.url()).args([
        "save",
        "ci",
        src.to_str().unwrap(),
        "--key",
        "rt",
        "--ttl",
        "1h",
        "--zstd-level",
        "9",
    ]));
    assert_eq!(code, 0, "{err}");
    let dst = tmp.path().join("out");
    let (code, _, err) = run(cachew(&server.url()).args([
        "restore",
        "ci",
        dst.to_str().unwrap(),
        "--key",
        "rt",
        "--verify",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("verified"), "{err}");
    assert_same_tree(&src, &dst);
}

#[test]
fn embedded_disk_backend_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    for url in [
        format!("file://{}", tmp.path().join("cache-a").display()),
        tmp.path().join("cache-b").display().to_string(),
    ] {
        let (code, _, err) =
            run(cachew(&url).args(["save", "ns", src.to_str().unwrap(), "--key", "k"]));
        assert_eq!(code, 0, "{url}: {err}");
        let dst = tmp.path().join(format!("out-{}", url.len()));
        let (code, _, err) =
            run(cachew(&url).args(["restore", "ns", dst.to_str().unwrap(), "--key", "k"]));
        assert_eq!(code, 0, "{url}: {err}");
        assert_same_tree(&src, &dst);
    }
}

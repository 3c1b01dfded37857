//! The object-store backend against a real S3 server (SeaweedFS, started
//! by `cachew_testkit::s3`): the whole conformance suite, and what only a
//! real server shows — multipart uploads invisible until completed and
//! gone when aborted, records in `x-amz-meta-cachew` and in sidecars, and
//! pinned ranged reads — checked with curl as the independent S3 client.
//! Prints `SKIPPED: weed not found` without a `weed` binary, unless
//! `CACHEW_REQUIRE_S3=1`.

use std::sync::Arc;

use cachew_client::conformance::{self, Harness, Setup};
use cachew_client::{Cache, CacheExt, CreateOptions, Error, Key, OpenOptions};
use cachew_objstore::{open_url, ObjectStoreCache, ObjectStoreOptions};
use cachew_testkit::s3::S3Server;
use http::HeaderMap;
use tokio::io::AsyncWriteExt;

const MIB: usize = 1 << 20;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 131 + u64::from(seed) * 17) % 253) as u8)
        .collect()
}

fn cache(server: &S3Server, prefix: &str, options: ObjectStoreOptions) -> ObjectStoreCache {
    open_url(&format!("s3://{}/{prefix}", server.bucket()), options).unwrap()
}

/// The keys under `prefix`, as SeaweedFS lists them to curl.
fn listed(server: &S3Server, prefix: &str) -> String {
    server
        .curl(&[format!(
            "{}/{}?list-type=2&prefix={}",
            server.endpoint(),
            server.bucket(),
            // Encoded, as SigV4's canonical query string has it.
            prefix.replace('/', "%2F")
        )])
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_seaweedfs() {
    let Some(server) = S3Server::start("cachew-objstore") else {
        return;
    };
    // One server and one environment for every check in this process.
    for (name, value) in server.env() {
        std::env::set_var(name, value);
    }

    // The conformance suite, each check under a fresh prefix.
    let mut n = 0;
    let harness = Harness::default().with_capacity(false);
    conformance::run_all(&harness, |setup: Setup| {
        n += 1;
        let mut options = ObjectStoreOptions::default();
        if let Some(ttl) = setup.default_ttl {
            options = options.with_default_ttl(ttl);
        }
        if let Some(ttl) = setup.max_ttl {
            options = options.with_max_ttl(ttl);
        }
        let cache = cache(&server, &format!("conformance/check-{n}"), options);
        async move { Arc::new(cache) as Arc<dyn Cache> }
    })
    .await;

    // Multipart: S3's 5 MiB minimum part, three parts plus a tail.
    let options = ObjectStoreOptions::default().with_part_size(5 * MIB);
    let store = cache(&server, "multipart", options);
    let key = Key::new("big");
    let body = data(16 * MIB + 123, 1);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/x-tar".parse().unwrap());
    let mut writer = store
        .create(&key, headers, &CreateOptions::default())
        .await
        .unwrap();
    writer.write_all(&body).await.unwrap();
    let path = store.object_path(&key);
    let url = format!("{}/{}/{path}", server.endpoint(), server.bucket());
    assert!(
        server.curl(&["-I".into(), url.clone()]).is_err(),
        "visible before commit"
    );
    writer.commit().await.unwrap();
    // curl reads back exactly our bytes, and sees the record in metadata.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
        ])
        .arg(format!(
            "{}:{}",
            cachew_testkit::s3::ACCESS_KEY,
            cachew_testkit::s3::SECRET_KEY
        ))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == body,
        "curl got {} bytes, not ours",
        out.stdout.len()
    );
    let head = server.curl(&["-I".into(), url.clone()]).unwrap();
    assert!(
        head.to_ascii_lowercase().contains("x-amz-meta-cachew:"),
        "record in user metadata: {head}"
    );
    // A range across a part boundary, pinned to the version read.
    let object = store
        .open(
            &key,
            &OpenOptions::default().with_range(cachew_client::proto::ByteRange::Bounded {
                start: 5 * MIB as u64 - 10,
                end: 5 * MIB as u64 + 10,
            }),
        )
        .await
        .unwrap();
    assert_eq!(object.meta.range, Some((5 * MIB as u64 - 10, 20)));
    assert_eq!(
        object.bytes().await.unwrap(),
        &body[5 * MIB - 10..5 * MIB + 10]
    );
    assert_eq!(store.get_bytes(&key).await.unwrap(), body);

    // An aborted multipart upload leaves no object and no sidecar.
    let aborted = Key::new("aborted");
    let mut big = HeaderMap::new();
    big.insert("x-big", "b".repeat(3000).parse().unwrap());
    let mut writer = store
        .create(&aborted, big.clone(), &CreateOptions::default())
        .await
        .unwrap();
    writer.write_all(&data(11 * MIB, 2)).await.unwrap();
    writer.abort("test abort".into()).await.unwrap();
    drop(writer);
    let mut gone = false;
    for _ in 0..50 {
        let list = listed(&server, "multipart/");
        if !list.contains(&aborted.to_hex()) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "aborted upload left: {}",
        listed(&server, "multipart/")
    );
    assert!(matches!(
        store.stat(&aborted, &OpenOptions::default()).await,
        Err(Error::NotFound)
    ));

    // A record over 2 KB goes to a sidecar and comes back whole.
    let sidecar = Key::new("sidecar");
    store
        .put_bytes(
            &sidecar,
            "small body".into(),
            big,
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    let meta = store.stat(&sidecar, &OpenOptions::default()).await.unwrap();
    assert_eq!(meta.headers["x-big"].len(), 3000);
    assert!(listed(&server, "multipart/_meta/").contains(&sidecar.to_hex()));
    assert_eq!(store.get_bytes(&sidecar).await.unwrap(), "small body");
}

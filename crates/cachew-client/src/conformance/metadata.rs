//! Checks of what travels with an object: headers, `Last-Modified`,
//! `Content-Length`, ETags, and namespaces.

use crate::cache::Cache;
use crate::error::Error;
use crate::{ByteRange, CreateOptions, OpenOptions};
use http::HeaderMap;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

use super::helpers::*;

/// Stored headers come back on Open and Stat; transport headers do not; the
/// generated ones (`ETag`, `Last-Modified`, `Accept-Ranges`,
/// `Content-Length`) are there.
pub async fn headers_round_trip(cache: &dyn Cache) {
    let k = key("headers");
    let sent = headers(&[
        ("content-type", "application/x-conformance"),
        ("cache-control", "public, max-age=60"),
        ("x-cachew-conformance", "custom value 1"),
        ("content-disposition", "attachment; filename=\"x.tar.zst\""),
        ("user-agent", "conformance/1"),
        ("accept-encoding", "gzip"),
    ]);
    put_with(cache, &k, b"with headers", sent, &CreateOptions::default()).await;
    let (opened, _) = read(cache, &k, &OpenOptions::default()).await;
    let statted = stat(cache, &k).await;
    for (meta, what) in [(&opened, "open"), (&statted, "stat")] {
        expect_header(meta, "content-type", "application/x-conformance", what);
        expect_header(meta, "cache-control", "public, max-age=60", what);
        expect_header(meta, "x-cachew-conformance", "custom value 1", what);
        expect_header(
            meta,
            "content-disposition",
            "attachment; filename=\"x.tar.zst\"",
            what,
        );
        expect_header(meta, "accept-ranges", "bytes", what);
        expect_header(meta, "content-length", "12", what);
        expect_header(meta, "etag", &etag_of(meta).to_header(), what);
        assert!(
            header(meta, "last-modified")
                .and_then(crate::proto::header::parse_http_date)
                .is_some(),
            "{what}: Last-Modified is an HTTP date: {:?}",
            meta.headers
        );
        for dropped in ["user-agent", "accept-encoding", "transfer-encoding", "date"] {
            assert!(
                meta.headers.get(dropped).is_none(),
                "{what}: {dropped} must not be returned: {:?}",
                meta.headers
            );
        }
        assert!(
            meta.headers.get("content-range").is_none(),
            "{what}: not partial"
        );
    }
}

/// Without a `Last-Modified` header, the object's time is its commit time.
pub async fn last_modified_default(cache: &dyn Cache) {
    let k = key("last-modified-default");
    let before = SystemTime::now() - Duration::from_secs(2);
    put(cache, &k, b"now").await;
    let after = SystemTime::now() + Duration::from_secs(2);
    for meta in [
        read(cache, &k, &OpenOptions::default()).await.0,
        stat(cache, &k).await,
    ] {
        assert!(
            meta.last_modified >= before && meta.last_modified <= after,
            "Last-Modified {:?} is not the commit time",
            meta.headers.get("last-modified")
        );
        let parsed = header(&meta, "last-modified")
            .and_then(crate::proto::header::parse_http_date)
            .expect("Last-Modified is an HTTP date");
        assert_eq!(parsed, meta.last_modified, "header and field agree");
    }
}

/// A `Last-Modified` header given at Create is preserved.
pub async fn last_modified_explicit(cache: &dyn Cache) {
    let k = key("last-modified-explicit");
    let date = "Sun, 06 Nov 1994 08:49:37 GMT";
    put_with(
        cache,
        &k,
        b"old news",
        headers(&[("last-modified", date)]),
        &CreateOptions::default(),
    )
    .await;
    let want = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    for meta in [
        read(cache, &k, &OpenOptions::default()).await.0,
        stat(cache, &k).await,
    ] {
        expect_header(&meta, "last-modified", date, "explicit Last-Modified");
        assert_eq!(meta.last_modified, want);
    }
}

/// `Content-Length` is the length of what Open returns, and the whole size
/// on Stat — whatever `Content-Length` the creator sent.
pub async fn content_length(cache: &dyn Cache) {
    let k = key("content-length");
    let data = pattern(4321, 5);
    put_with(
        cache,
        &k,
        &data,
        headers(&[("content-length", "99")]),
        &CreateOptions::default(),
    )
    .await;
    let (meta, body) = read(cache, &k, &OpenOptions::default()).await;
    assert_eq!(body.len(), 4321);
    expect_header(&meta, "content-length", "4321", "open");
    expect_header(&stat(cache, &k).await, "content-length", "4321", "stat");
    let part = OpenOptions::default().with_range(ByteRange::new(100, 200).expect("range"));
    let (meta, body) = read(cache, &k, &part).await;
    assert_eq!(body.len(), 100);
    expect_header(&meta, "content-length", "100", "ranged open");
    assert_eq!(meta.content_length(), Some(100));
}

/// The same key in two namespaces holds two objects.
pub async fn namespace_isolation(cache: &dyn Cache) {
    let (a_name, b_name) = (namespace("iso-a"), namespace("iso-b"));
    let a = cache.with_namespace(a_name.clone());
    let b = cache.with_namespace(b_name.clone());
    assert_eq!(a.namespace(), &a_name);
    assert_eq!(b.namespace(), &b_name);
    let k = key("isolated");
    put(a.as_ref(), &k, b"in a").await;
    assert_absent(b.as_ref(), &k, "written only in namespace a").await;
    assert_absent(cache, &k, "written only in namespace a").await;
    put(b.as_ref(), &k, b"in b").await;
    assert_eq!(get(a.as_ref(), &k).await, &b"in a"[..]);
    assert_eq!(get(b.as_ref(), &k).await, &b"in b"[..]);
    a.delete(&k).await.expect("delete in a");
    assert_absent(a.as_ref(), &k, "deleted in a").await;
    assert_eq!(get(b.as_ref(), &k).await, &b"in b"[..], "b is untouched");
}

/// Namespaces holding objects are listed; a namespace whose objects are all
/// gone is not.
pub async fn namespace_listing(cache: &dyn Cache) {
    let names = [namespace("list-a"), namespace("list-b")];
    let k = key("listed");
    for name in &names {
        put(cache.with_namespace(name.clone()).as_ref(), &k, b"x").await;
    }
    let listed = cache.list_namespaces().await.expect("list namespaces");
    for name in &names {
        assert!(
            listed.iter().any(|n| n == name.as_str()),
            "{name} missing from {listed:?}"
        );
    }
    cache
        .with_namespace(names[1].clone())
        .delete(&k)
        .await
        .expect("delete");
    let listed = cache.list_namespaces().await.expect("list namespaces");
    assert!(listed.iter().any(|n| n == names[0].as_str()));
    assert!(
        !listed.iter().any(|n| n == names[1].as_str()),
        "{} holds nothing but is listed: {listed:?}",
        names[1]
    );
}

/// An ETag given at Create (as an option or a header) is the stored one.
pub async fn explicit_etag(cache: &dyn Cache) {
    let k = key("etag-option");
    let options = CreateOptions::default().with_etag(tag("v1.2-abc:def/+="));
    put_with(cache, &k, b"tagged", HeaderMap::new(), &options).await;
    let (meta, _) = read(cache, &k, &OpenOptions::default()).await;
    assert_eq!(meta.etag, Some(tag("v1.2-abc:def/+=")));
    expect_header(&meta, "etag", "\"v1.2-abc:def/+=\"", "ETag option");
    assert_eq!(stat(cache, &k).await.etag, meta.etag);

    let k = key("etag-header");
    put_with(
        cache,
        &k,
        b"tagged by header",
        headers(&[("etag", "\"from-header\"")]),
        &CreateOptions::default(),
    )
    .await;
    let meta = stat(cache, &k).await;
    assert_eq!(meta.etag, Some(tag("from-header")));
    expect_header(&meta, "etag", "\"from-header\"", "ETag header");
}

/// Without an ETag, the backend generates a strong one.
pub async fn generated_etag(cache: &dyn Cache) {
    let (k1, k2) = (key("etag-gen-1"), key("etag-gen-2"));
    put(cache, &k1, b"one content").await;
    put(cache, &k2, b"another content").await;
    let (m1, m2) = (stat(cache, &k1).await, stat(cache, &k2).await);
    assert!(!etag_of(&m1).as_str().is_empty());
    expect_header(&m1, "etag", &etag_of(&m1).to_header(), "generated ETag");
    assert!(
        header(&m1, "etag").is_some_and(|v| v.starts_with('"') && v.ends_with('"')),
        "a strong, quoted ETag: {:?}",
        m1.headers.get("etag")
    );
    assert_ne!(m1.etag, m2.etag, "different objects, different tags");
    let (opened, _) = read(cache, &k1, &OpenOptions::default()).await;
    assert_eq!(opened.etag, m1.etag, "the tag is stable across requests");
}

/// An `ETag` header that is not a valid quoted tag fails the Create (or its
/// commit), and nothing becomes visible.
pub async fn invalid_etag_rejected(cache: &dyn Cache) {
    let k = key("etag-invalid");
    let bad = headers(&[("etag", "\"not valid;\"")]);
    let outcome = match cache.create(&k, bad, &CreateOptions::default()).await {
        Err(e) => Err(e),
        Ok(mut writer) => match writer.write_all(b"x").await {
            Err(e) => Err(Error::Stream(e)),
            Ok(()) => writer.commit().await,
        },
    };
    match outcome {
        Err(Error::Protocol(e)) => {
            assert!(e.to_string().contains("not valid;"), "error quotes it: {e}")
        }
        Err(Error::Status { code: 400, .. }) => {}
        other => panic!("invalid ETag header: expected a protocol error, got {other:?}"),
    }
    assert_absent(cache, &k, "created with an invalid ETag").await;
}

//! Checks of conditional and range requests (RFC 9110 §13, §14).

use crate::cache::Cache;
use crate::error::Error;
use crate::{ByteRange, CreateOptions, EtagCondition, OpenOptions};
use http::HeaderMap;

use super::helpers::*;

/// `If-Match` with a list, with `*`, and failing with 412, on Open and Stat.
pub async fn if_match(cache: &dyn Cache) {
    let k = key("if-match");
    let options = CreateOptions::default().with_etag(tag("v1"));
    put_with(cache, &k, b"conditional", HeaderMap::new(), &options).await;
    let cond = |s: &str| EtagCondition::parse_header(s).expect("valid condition");
    for (header_value, ok) in [
        ("\"v1\"", true),
        ("\"v0\", \"v1\"", true),
        ("*", true),
        ("\"v0\"", false),
        ("\"v0\", \"v2\"", false),
    ] {
        let opts = OpenOptions::default().with_if_match(cond(header_value));
        let opened = cache.open(&k, &opts).await;
        let statted = cache.stat(&k, &opts).await;
        if ok {
            let body = opened
                .expect("If-Match matches")
                .bytes()
                .await
                .expect("body");
            assert_eq!(body, &b"conditional"[..]);
            statted.expect("If-Match matches on stat");
        } else {
            assert!(
                matches!(opened, Err(Error::PreconditionFailed)),
                "If-Match: {header_value} on open: {opened:?}"
            );
            assert!(
                matches!(statted, Err(Error::PreconditionFailed)),
                "If-Match: {header_value} on stat: {statted:?}"
            );
        }
    }
    let absent = cache
        .open(
            &key("if-match-absent"),
            &OpenOptions::default().with_if_match(cond("*")),
        )
        .await;
    assert!(
        matches!(absent, Err(Error::NotFound | Error::PreconditionFailed)),
        "If-Match on an absent object: {absent:?}"
    );
}

/// `If-None-Match` with a list and with `*` answers not-modified with the
/// stored headers; a non-matching list serves the object.
pub async fn if_none_match(cache: &dyn Cache) {
    let k = key("if-none-match");
    let options = CreateOptions::default().with_etag(tag("v1"));
    put_with(
        cache,
        &k,
        b"cached",
        headers(&[("content-type", "text/plain")]),
        &options,
    )
    .await;
    let cond = |s: &str| EtagCondition::parse_header(s).expect("valid condition");
    for (header_value, modified) in [
        ("\"v1\"", false),
        ("\"v0\", \"v1\"", false),
        ("*", false),
        ("\"v0\"", true),
        ("\"v0\", \"v2\"", true),
    ] {
        let opts = OpenOptions::default().with_if_none_match(cond(header_value));
        for (what, result) in [
            ("open", cache.open(&k, &opts).await.map(|o| o.meta)),
            ("stat", cache.stat(&k, &opts).await),
        ] {
            match (modified, result) {
                (true, Ok(meta)) => assert_eq!(meta.etag, Some(tag("v1"))),
                (false, Err(Error::NotModified { headers })) => {
                    assert_eq!(
                        headers.get("etag").and_then(|v| v.to_str().ok()),
                        Some("\"v1\""),
                        "304 carries the ETag: {headers:?}"
                    );
                    assert_eq!(
                        headers.get("content-type").and_then(|v| v.to_str().ok()),
                        Some("text/plain"),
                        "304 carries the stored headers: {headers:?}"
                    );
                }
                (_, other) => panic!(
                    "If-None-Match: {header_value} on {what}: expected {}, got {other:?}",
                    if modified {
                        "the object"
                    } else {
                        "NotModified"
                    }
                ),
            }
        }
    }
    // If-Match is evaluated first.
    let both = OpenOptions::default()
        .with_if_match(cond("\"v0\""))
        .with_if_none_match(cond("\"v1\""));
    assert!(matches!(
        cache.stat(&k, &both).await,
        Err(Error::PreconditionFailed)
    ));
}

/// Stat reports the whole object even when a range is given.
pub async fn stat_ignores_range(cache: &dyn Cache) {
    let k = key("stat-range");
    put(cache, &k, &pattern(100, 9)).await;
    let opts = OpenOptions::default().with_range(ByteRange::new(0, 10).expect("range"));
    let meta = cache.stat(&k, &opts).await.expect("stat");
    assert_eq!(meta.range, None);
    assert_eq!(meta.size, Some(100));
    expect_header(&meta, "content-length", "100", "stat with a range");
    assert!(meta.headers.get("content-range").is_none());
}

/// Partial, open-ended, suffix and clamped ranges return exactly those bytes
/// with `Content-Range`.
pub async fn ranges(cache: &dyn Cache) {
    let k = key("ranges");
    let data = pattern(1000, 4);
    put(cache, &k, &data).await;
    let cases = [
        (ByteRange::new(10, 20).expect("range"), 10, 10),
        (ByteRange::new(0, 1).expect("range"), 0, 1),
        (ByteRange::new(999, 1000).expect("range"), 999, 1),
        (ByteRange::new(990, 5000).expect("range"), 990, 10),
        (ByteRange::from_offset(900), 900, 100),
        (ByteRange::from_offset(0), 0, 1000),
        (ByteRange::suffix(7), 993, 7),
        (ByteRange::suffix(5000), 0, 1000),
    ];
    for (range, start, len) in cases {
        let opts = OpenOptions::default().with_range(range);
        let (meta, body) = read(cache, &k, &opts).await;
        let what = range.to_header();
        assert_eq!(meta.range, Some((start, len)), "{what}");
        assert_eq!(meta.size, Some(1000), "{what}: size is the whole object's");
        assert!(
            body == data[start as usize..(start + len) as usize],
            "{what}: wrong bytes"
        );
        expect_header(
            &meta,
            "content-range",
            &format!("bytes {start}-{}/1000", start + len - 1),
            &what,
        );
        expect_header(&meta, "content-length", &len.to_string(), &what);
    }
}

/// A range starting at or past the end is [`Error::RangeNotSatisfiable`]
/// with the object's size.
pub async fn range_not_satisfiable(cache: &dyn Cache) {
    let k = key("range-416");
    put(cache, &k, &pattern(100, 6)).await;
    for range in [
        ByteRange::from_offset(100),
        ByteRange::new(200, 300).expect("range"),
    ] {
        match cache
            .open(&k, &OpenOptions::default().with_range(range))
            .await
        {
            Err(e @ Error::RangeNotSatisfiable { .. }) => {
                assert_eq!(e.status(), Some(416));
                assert!(
                    matches!(e, Error::RangeNotSatisfiable { size: Some(100) }),
                    "{}: the error carries the size (bytes */100): {e:?}",
                    range.to_header()
                );
            }
            other => panic!("{}: expected 416, got {other:?}", range.to_header()),
        }
    }
}

/// `If-Range` applies the range only when the tag matches; otherwise the
/// full body is served.
pub async fn if_range(cache: &dyn Cache) {
    let k = key("if-range");
    let data = pattern(300, 8);
    let options = CreateOptions::default().with_etag(tag("current"));
    put_with(cache, &k, &data, HeaderMap::new(), &options).await;
    let range = ByteRange::new(100, 150).expect("range");
    let matching = OpenOptions::default()
        .with_range(range)
        .with_if_range(tag("current"));
    let (meta, body) = read(cache, &k, &matching).await;
    assert_eq!(meta.range, Some((100, 50)));
    assert!(body == data[100..150]);
    let stale = OpenOptions::default()
        .with_range(range)
        .with_if_range(tag("previous"));
    let (meta, body) = read(cache, &k, &stale).await;
    assert_eq!(meta.range, None, "a stale If-Range gets the full body");
    assert!(body == data);
    expect_header(&meta, "content-length", "300", "stale If-Range");
    assert!(meta.headers.get("content-range").is_none());
}

//! Parallel ranged downloads against a scripted in-memory source: the
//! protocol rules of `PROTOCOL.md` §6 and LESSONS 4–7, one fault at a time.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use cachew_client::parallel::{
    parallel_get, parallel_reader, ParallelOptions, RangedKind, RangedResponse, RangedSource,
};
use cachew_client::proto::header::ContentRange;
use cachew_client::proto::RangeResolution;
use cachew_client::{Body, ByteRange, EntityTag, Error, Result};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// What the source does to one request for a given start offset.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Ignore the range: 200 with the whole object.
    Full,
    /// Answer with the part starting this many bytes later.
    Shift(u64),
    /// Announce the right range but send one byte less.
    Short,
    /// Announce the right range but send one byte more.
    Long,
    /// Replace the object (new bytes, new ETag) before answering.
    Change,
    /// Wait this long before answering.
    Delay(Duration),
    /// Fail the request.
    Fail,
}

#[derive(Debug)]
struct Fake {
    data: Mutex<Vec<u8>>,
    etag: Mutex<EntityTag>,
    /// Always ignore ranges.
    ignore_ranges: bool,
    /// Send no ETag.
    no_etag: bool,
    /// Send `Content-Range: bytes a-b/*`.
    unknown_total: bool,
    /// Faults by requested start offset, consumed in order.
    faults: Mutex<HashMap<u64, VecDeque<Fault>>>,
    /// Every request: (range, if-match).
    log: Mutex<Vec<(Option<ByteRange>, Option<EntityTag>)>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    /// Delay of every request (to make requests overlap).
    delay: Duration,
}

impl Fake {
    fn new(data: Vec<u8>) -> Fake {
        Fake {
            data: Mutex::new(data),
            etag: Mutex::new(EntityTag::new("v1").unwrap()),
            ignore_ranges: false,
            no_etag: false,
            unknown_total: false,
            faults: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            delay: Duration::ZERO,
        }
    }

    fn fault(self, start: u64, faults: &[Fault]) -> Fake {
        self.faults
            .lock()
            .unwrap()
            .entry(start)
            .or_default()
            .extend(faults.iter().copied());
        self
    }

    fn requests(&self) -> Vec<(Option<ByteRange>, Option<EntityTag>)> {
        self.log.lock().unwrap().clone()
    }
}

/// A body that counts as in flight until it is dropped.
struct Tracked {
    inner: Body,
    in_flight: Arc<AtomicUsize>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_read(cx, buf)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl RangedSource for Fake {
    async fn get(
        &self,
        range: Option<ByteRange>,
        if_match: Option<&EntityTag>,
    ) -> Result<RangedResponse> {
        self.log.lock().unwrap().push((range, if_match.cloned()));
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let guard = Tracked {
            inner: Box::pin(tokio::io::empty()),
            in_flight: self.in_flight.clone(),
        };
        let start = match range {
            Some(ByteRange::Bounded { start, .. }) => start,
            _ => u64::MAX,
        };
        let fault = self
            .faults
            .lock()
            .unwrap()
            .get_mut(&start)
            .and_then(VecDeque::pop_front);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        match fault {
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::Change) => {
                let mut data = self.data.lock().unwrap();
                for b in data.iter_mut() {
                    *b = b.wrapping_add(1);
                }
                *self.etag.lock().unwrap() = EntityTag::new("v2").unwrap();
            }
            Some(Fault::Fail) => return Err(Error::Backend("injected failure".into())),
            _ => {}
        }
        let data = self.data.lock().unwrap().clone();
        let etag = self.etag.lock().unwrap().clone();
        if let Some(want) = if_match {
            if *want != etag {
                return Err(Error::PreconditionFailed);
            }
        }
        let size = data.len() as u64;
        let mut resolution = match range {
            Some(r) if !self.ignore_ranges => r.resolve(size),
            _ => RangeResolution::Full,
        };
        if matches!(fault, Some(Fault::Full)) {
            resolution = RangeResolution::Full;
        }
        let (kind, mut body) = match resolution {
            RangeResolution::Full => (RangedKind::Full { size: Some(size) }, data.clone()),
            RangeResolution::NotSatisfiable => {
                return Err(Error::RangeNotSatisfiable { size: Some(size) })
            }
            RangeResolution::Partial { mut start, len } => {
                if let Some(Fault::Shift(by)) = fault {
                    start += by;
                }
                let end = (start + len).min(size);
                (
                    RangedKind::Partial(ContentRange {
                        start,
                        len,
                        total: (!self.unknown_total).then_some(size),
                    }),
                    data[start as usize..end as usize].to_vec(),
                )
            }
        };
        match fault {
            Some(Fault::Short) => {
                body.pop();
            }
            Some(Fault::Long) => body.push(0),
            _ => {}
        }
        Ok(RangedResponse {
            kind,
            etag: (!self.no_etag).then_some(etag),
            headers: Default::default(),
            body: Box::pin(Tracked {
                inner: Box::pin(io::Cursor::new(body)),
                in_flight: {
                    // The guard's count moves to the real body.
                    std::mem::forget(guard);
                    self.in_flight.clone()
                },
            }),
        })
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn opts(concurrency: usize, chunk: u64) -> ParallelOptions {
    ParallelOptions::default()
        .with_concurrency(concurrency)
        .with_chunk_size(chunk)
}

async fn read_all(fake: Arc<Fake>, o: &ParallelOptions) -> Result<Vec<u8>> {
    let (info, mut reader) = parallel_reader(fake, o).await?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await?;
    assert_eq!(info.size, Some(out.len() as u64));
    Ok(out)
}

async fn get_all(fake: Arc<Fake>, o: &ParallelOptions) -> Result<Vec<u8>> {
    let sink = Arc::new(Mutex::new(Vec::new()));
    let info = parallel_get(fake, sink.clone(), o).await?;
    let out = sink.lock().unwrap().clone();
    assert_eq!(info.size, Some(out.len() as u64));
    Ok(out)
}

fn message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[tokio::test]
async fn every_size_and_concurrency_round_trips() {
    let chunk = 100;
    for size in [1usize, 99, 100, 101, 250, 1000, 1003] {
        for concurrency in [1, 2, 3, 8] {
            let data = pattern(size);
            let o = opts(concurrency, chunk);
            let fake = Arc::new(Fake::new(data.clone()));
            let got = read_all(fake.clone(), &o).await.unwrap();
            assert!(
                got == data,
                "reader: size {size}, concurrency {concurrency}"
            );
            let expected_requests = if concurrency == 1 {
                1
            } else {
                size.div_ceil(chunk as usize)
            };
            assert_eq!(fake.requests().len(), expected_requests, "size {size}");

            let fake = Arc::new(Fake::new(data.clone()));
            let got = get_all(fake, &o).await.unwrap();
            assert!(got == data, "get: size {size}, concurrency {concurrency}");
        }
    }
}

#[tokio::test]
async fn chunks_are_pinned_with_if_match() {
    let fake = Arc::new(Fake::new(pattern(350)));
    read_all(fake.clone(), &opts(4, 100)).await.unwrap();
    let log = fake.requests();
    assert_eq!(log[0], (ByteRange::new(0, 100), None));
    let mut rest: Vec<_> = log[1..].to_vec();
    rest.sort_by_key(|(r, _)| r.map(|r| r.to_header()));
    let v1 = Some(EntityTag::new("v1").unwrap());
    assert_eq!(
        rest,
        vec![
            (ByteRange::new(100, 200), v1.clone()),
            (ByteRange::new(200, 300), v1.clone()),
            (ByteRange::new(300, 350), v1.clone()),
        ]
    );
}

#[tokio::test]
async fn concurrency_one_is_one_plain_get() {
    let fake = Arc::new(Fake::new(pattern(1000)));
    let got = read_all(fake.clone(), &opts(1, 10)).await.unwrap();
    assert_eq!(got.len(), 1000);
    assert_eq!(fake.requests(), vec![(None, None)]);
}

#[tokio::test]
async fn a_server_that_ignores_ranges_is_read_as_one_stream() {
    let data = pattern(1000);
    let mut fake = Fake::new(data.clone());
    fake.ignore_ranges = true;
    let fake = Arc::new(fake);
    let (info, mut reader) = parallel_reader(fake.clone(), &opts(8, 100)).await.unwrap();
    assert!(!info.parallel);
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    assert!(out == data);
    // Never retried: one request.
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_small_object_delivered_whole_by_discovery_is_a_success() {
    let fake = Arc::new(Fake::new(pattern(40)));
    let (info, mut reader) = parallel_reader(fake.clone(), &opts(8, 100)).await.unwrap();
    assert_eq!(info.size, Some(40));
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, pattern(40));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn an_empty_object_is_empty_not_an_error() {
    let fake = Arc::new(Fake::new(Vec::new()));
    assert_eq!(read_all(fake.clone(), &opts(8, 100)).await.unwrap(), b"");
    assert_eq!(get_all(fake, &opts(8, 100)).await.unwrap(), b"");
}

#[tokio::test]
async fn wrong_parts_are_retried() {
    let data = pattern(500);
    // Chunk 200: a 200 and then a shifted part, then right.
    // Chunk 300: shifted three times, right on the fourth attempt.
    let fake = Fake::new(data.clone())
        .fault(200, &[Fault::Full, Fault::Shift(5)])
        .fault(300, &[Fault::Shift(1), Fault::Shift(1), Fault::Shift(1)]);
    let fake = Arc::new(fake);
    assert!(read_all(fake.clone(), &opts(3, 100)).await.unwrap() == data);
    let at = |s: u64| {
        fake.requests()
            .iter()
            .filter(|(r, _)| matches!(r, Some(ByteRange::Bounded { start, .. }) if *start == s))
            .count()
    };
    assert_eq!(at(200), 3);
    assert_eq!(at(300), 4);

    let fake = Fake::new(data.clone())
        .fault(100, &[Fault::Shift(1), Fault::Shift(1)])
        .fault(200, &[Fault::Full]);
    assert!(get_all(Arc::new(fake), &opts(3, 100)).await.unwrap() == data);
}

#[tokio::test]
async fn a_chunk_that_keeps_answering_the_wrong_part_fails() {
    let fake = Fake::new(pattern(500)).fault(300, &[Fault::Shift(1); 4]);
    let err = read_all(Arc::new(fake), &opts(3, 100)).await.unwrap_err();
    assert!(err.to_string().contains("offset 300"), "{err}");

    let fake = Fake::new(pattern(500)).fault(300, &[Fault::Full; 4]);
    let err = get_all(Arc::new(fake), &opts(3, 100)).await.unwrap_err();
    assert!(err.to_string().contains("ignoring the range"), "{err}");
}

#[tokio::test]
async fn an_object_that_changes_mid_download_fails() {
    // The object is replaced just before chunk 300 is served: If-Match fails.
    for concurrency in [2, 8] {
        let fake = Fake::new(pattern(1000)).fault(300, &[Fault::Change]);
        let err = read_all(Arc::new(fake), &opts(concurrency, 100))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("changed during the download"), "{msg}");
        assert!(msg.contains("\"v1\""), "{msg}");

        let fake = Fake::new(pattern(1000)).fault(300, &[Fault::Change]);
        let err = get_all(Arc::new(fake), &opts(concurrency, 100))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");
    }
}

/// A source that ignores `If-Match` but reports the new ETag.
#[derive(Debug)]
struct IgnoresIfMatch(Fake);

#[async_trait]
impl RangedSource for IgnoresIfMatch {
    async fn get(
        &self,
        range: Option<ByteRange>,
        _if_match: Option<&EntityTag>,
    ) -> Result<RangedResponse> {
        self.0.get(range, None).await
    }
}

#[tokio::test]
async fn a_changed_etag_is_fatal_even_without_a_412() {
    let fake = IgnoresIfMatch(Fake::new(pattern(1000)).fault(500, &[Fault::Change]));
    let (_, mut reader) = parallel_reader(Arc::new(fake), &opts(4, 100))
        .await
        .unwrap();
    let mut out = Vec::new();
    let err = reader.read_to_end(&mut out).await.unwrap_err();
    let msg = message(&err);
    assert!(msg.contains("ETag was \"v1\", now \"v2\""), "{msg}");
    // Nothing from the new version was handed out.
    assert!(out.len() <= 500 && out[..] == pattern(1000)[..out.len()]);
}

#[tokio::test]
async fn short_and_overlong_chunks_are_errors() {
    for (start, fault, word) in [
        (0, Fault::Short, "short"),
        (0, Fault::Long, "overlong"),
        (400, Fault::Short, "short"),
        (400, Fault::Long, "overlong"),
    ] {
        let fake = Fake::new(pattern(1000)).fault(start, &[fault]);
        let err = read_all(Arc::new(fake), &opts(4, 100)).await.unwrap_err();
        let msg = message(&err);
        assert!(msg.contains(word), "{start} {fault:?}: {msg}");
        assert!(msg.contains(&format!("offset {start}")), "{msg}");

        let fake = Fake::new(pattern(1000)).fault(start, &[fault]);
        let err = get_all(Arc::new(fake), &opts(4, 100)).await.unwrap_err();
        assert!(err.to_string().contains(word), "{start} {fault:?}: {err}");
    }
    // The last, shorter chunk too.
    let fake = Fake::new(pattern(950)).fault(900, &[Fault::Long]);
    let err = read_all(Arc::new(fake), &opts(4, 100)).await.unwrap_err();
    assert!(message(&err).contains("overlong"), "{err}");
}

#[tokio::test]
async fn a_failed_sibling_does_not_deadlock_a_slow_reader() {
    // Chunk 100 is slow, chunk 500 fails at once: the reader, still waiting
    // for chunk 100, gets the error right away, without waiting for it.
    let fake = Fake::new(pattern(2000))
        .fault(100, &[Fault::Delay(Duration::from_secs(30))])
        .fault(500, &[Fault::Fail]);
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        read_all(Arc::new(fake), &opts(4, 100)),
    )
    .await
    .expect("the failed sibling ends the download at once");
    assert!(result.unwrap_err().to_string().contains("injected failure"));

    let fake = Fake::new(pattern(2000))
        .fault(100, &[Fault::Delay(Duration::from_secs(30))])
        .fault(500, &[Fault::Fail]);
    // parallel_get fails fast: the first error cancels the slow request.
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        get_all(Arc::new(fake), &opts(4, 100)),
    )
    .await
    .expect("no deadlock");
    assert!(result.unwrap_err().to_string().contains("injected failure"));
}

#[tokio::test]
async fn fetchers_stay_within_the_window_and_the_concurrency() {
    let mut fake = Fake::new(pattern(100 * 100));
    fake.delay = Duration::from_millis(5);
    let fake = Arc::new(fake);
    let o = opts(3, 100);
    let (_, mut reader) = parallel_reader(fake.clone(), &o).await.unwrap();
    // Read nothing for a while: fetchers may only fill the window.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Discovery plus window - 1 = 2 × 3 - 1 chunk fetches.
    assert_eq!(fake.requests().len(), 1 + 5);
    let mut buf = vec![0u8; 101];
    reader.read_exact(&mut buf).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Chunk 0 is done: one more chunk may start.
    assert_eq!(fake.requests().len(), 1 + 6);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest.len(), 100 * 100 - 101);
    assert!(fake.max_in_flight.load(Ordering::SeqCst) <= 3);
    assert!(fake.max_in_flight.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn dropping_the_reader_cancels_all_fetches() {
    let mut fake = Fake::new(pattern(100 * 100));
    fake.delay = Duration::from_millis(300);
    let fake = Arc::new(fake);
    // The discovery takes 300 ms, then fetches start.
    let (_, reader) = parallel_reader(fake.clone(), &opts(4, 100)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = fake.requests().len();
    assert!(started > 1);
    drop(reader);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.requests().len(), started, "no new requests after drop");
    assert_eq!(fake.in_flight.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn without_an_etag_the_download_is_one_plain_stream() {
    let data = pattern(1000);
    let mut fake = Fake::new(data.clone());
    fake.no_etag = true;
    let fake = Arc::new(fake);
    let (info, mut reader) = parallel_reader(fake.clone(), &opts(8, 100)).await.unwrap();
    assert!(!info.parallel);
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    assert!(out == data);
    assert_eq!(
        fake.requests(),
        vec![(ByteRange::new(0, 100), None), (None, None)]
    );
}

#[tokio::test]
async fn a_missing_object_is_not_found() {
    #[derive(Debug)]
    struct Missing;
    #[async_trait]
    impl RangedSource for Missing {
        async fn get(&self, _: Option<ByteRange>, _: Option<&EntityTag>) -> Result<RangedResponse> {
            Err(Error::NotFound)
        }
    }
    let err = parallel_reader(Arc::new(Missing), &opts(8, 100))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
}

#[tokio::test]
async fn cache_objects_download_in_parallel_with_their_metadata() {
    use cachew_client::parallel::{open_object, CacheSource};
    use cachew_client::{Cache, CacheExt, Key, MemoryCache};

    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(0));
    let key = Key::new("object");
    let data = pattern(1000);
    let mut headers = http::HeaderMap::new();
    headers.insert("x-kind", "test".parse().unwrap());
    cache
        .put_bytes(&key, data.clone().into(), headers, &Default::default())
        .await
        .unwrap();

    // Through a CacheSource: chunks are real partial opens of the backend.
    let source = Arc::new(CacheSource::new(cache.clone(), key));
    let (info, mut reader) = parallel_reader(source, &opts(4, 100)).await.unwrap();
    assert!(info.parallel);
    assert_eq!(info.size, Some(1000));
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    assert!(out == data);

    // open_object keeps the Stat's metadata (stored headers included),
    // whether it splits the download or not.
    for min_size in [0, 1000, 1001] {
        let o = opts(4, 100).with_min_size(min_size);
        let mut object = open_object(&*cache, &key, &o).await.unwrap();
        assert_eq!(object.meta.size, Some(1000));
        assert_eq!(object.meta.headers["x-kind"], "test");
        let mut out = Vec::new();
        object.body.read_to_end(&mut out).await.unwrap();
        assert!(out == data, "min_size {min_size}");
    }
    let missing = open_object(&*cache, &Key::new("nope"), &opts(4, 100))
        .await
        .unwrap_err();
    assert!(missing.is_not_found());
}

#[tokio::test]
async fn without_the_total_size_the_download_is_one_plain_stream() {
    let data = pattern(1000);
    let mut fake = Fake::new(data.clone());
    fake.unknown_total = true;
    let fake = Arc::new(fake);
    assert!(read_all(fake.clone(), &opts(8, 100)).await.unwrap() == data);
    assert_eq!(
        fake.requests(),
        vec![(ByteRange::new(0, 100), None), (None, None)]
    );
}

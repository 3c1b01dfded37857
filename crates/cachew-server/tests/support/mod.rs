//! A small recording in-memory `Cache` for the server's tests: it applies the
//! protocol's conditional and range rules with `cachew_proto`'s helpers and
//! records what the server passed it (TTLs, aborts, stored headers).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use cachew_client::proto::{Precondition, RangeResolution};
use cachew_client::{
    AbortCause, Cache, CacheWriter, CreateOptions, EntityTag, Error, Key, Namespace, Object,
    ObjectMeta, OpenOptions, Result, Stats,
};
use http::HeaderMap;
use tokio::io::AsyncWrite;

#[derive(Clone)]
struct Stored {
    headers: HeaderMap,
    etag: EntityTag,
    body: Bytes,
    modified: SystemTime,
}

/// What the cache saw.
#[derive(Default)]
pub struct Log {
    objects: BTreeMap<(String, Key), Stored>,
    pub ttls: Vec<Option<Duration>>,
    pub aborts: Vec<String>,
    pub commits: usize,
    counter: u64,
}

/// The test cache; `stats` answers only when `with_stats` is set.
#[derive(Clone)]
pub struct TestCache {
    ns: Namespace,
    pub log: Arc<Mutex<Log>>,
    with_stats: bool,
}

impl fmt::Debug for TestCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TestCache({})", self.ns)
    }
}

impl fmt::Display for TestCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("test")
    }
}

impl TestCache {
    pub fn new(with_stats: bool) -> TestCache {
        TestCache {
            ns: Namespace::default(),
            log: Arc::default(),
            with_stats,
        }
    }

    fn get(&self, key: &Key) -> Result<Stored> {
        let log = self.log.lock().unwrap();
        log.objects
            .get(&(self.ns.to_string(), *key))
            .cloned()
            .ok_or(Error::NotFound)
    }
}

fn meta(s: &Stored, range: Option<(u64, u64)>) -> ObjectMeta {
    ObjectMeta {
        headers: s.headers.clone(),
        size: Some(s.body.len() as u64),
        etag: Some(s.etag.clone()),
        last_modified: s.modified,
        range,
    }
}

fn check(s: &Stored, options: &OpenOptions) -> Result<()> {
    match options.check(&s.etag) {
        Precondition::Proceed => Ok(()),
        Precondition::PreconditionFailed => Err(Error::PreconditionFailed),
        Precondition::NotModified => {
            // Like the real backends: the stored headers plus the ETag.
            let mut headers = s.headers.clone();
            headers.insert(http::header::ETAG, s.etag.to_header().parse().unwrap());
            Err(Error::NotModified {
                headers: Box::new(headers),
            })
        }
    }
}

#[async_trait]
impl Cache for TestCache {
    fn namespace(&self) -> &Namespace {
        &self.ns
    }

    fn with_namespace(&self, namespace: Namespace) -> Arc<dyn Cache> {
        Arc::new(TestCache {
            ns: namespace,
            ..self.clone()
        })
    }

    async fn stat(&self, key: &Key, options: &OpenOptions) -> Result<ObjectMeta> {
        let s = self.get(key)?;
        check(&s, options)?;
        Ok(meta(&s, None))
    }

    async fn open(&self, key: &Key, options: &OpenOptions) -> Result<Object> {
        let s = self.get(key)?;
        check(&s, options)?;
        let size = s.body.len() as u64;
        let (range, body) = match options.resolve_range(size, &s.etag) {
            RangeResolution::Full => (None, s.body.clone()),
            RangeResolution::Partial { start, len } => (
                Some((start, len)),
                s.body.slice(start as usize..(start + len) as usize),
            ),
            RangeResolution::NotSatisfiable => {
                return Err(Error::RangeNotSatisfiable { size: Some(size) })
            }
        };
        Ok(Object {
            meta: meta(&s, range),
            body: Box::pin(std::io::Cursor::new(body)),
        })
    }

    async fn create(
        &self,
        key: &Key,
        headers: HeaderMap,
        options: &CreateOptions,
    ) -> Result<Box<dyn CacheWriter>> {
        let mut log = self.log.lock().unwrap();
        log.ttls.push(options.ttl);
        log.counter += 1;
        let etag = options
            .etag
            .clone()
            .unwrap_or_else(|| EntityTag::new(format!("gen-{}", log.counter)).unwrap());
        Ok(Box::new(TestWriter {
            log: self.log.clone(),
            slot: (self.ns.to_string(), *key),
            headers,
            etag,
            buf: Vec::new(),
            done: false,
        }))
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let mut log = self.log.lock().unwrap();
        log.objects
            .remove(&(self.ns.to_string(), *key))
            .map(|_| ())
            .ok_or(Error::NotFound)
    }

    async fn invalidate(&self, key: &Key) -> Result<()> {
        let mut log = self.log.lock().unwrap();
        log.objects.remove(&(self.ns.to_string(), *key));
        Ok(())
    }

    async fn stats(&self) -> Result<Stats> {
        if !self.with_stats {
            return Err(Error::StatsUnavailable);
        }
        let log = self.log.lock().unwrap();
        Ok(Stats {
            objects: log.objects.len() as i64,
            size: log.objects.values().map(|s| s.body.len() as i64).sum(),
            capacity: 0,
        })
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let log = self.log.lock().unwrap();
        let mut names: Vec<String> = log.objects.keys().map(|(ns, _)| ns.clone()).collect();
        names.dedup();
        Ok(names)
    }
}

struct TestWriter {
    log: Arc<Mutex<Log>>,
    slot: (String, Key),
    headers: HeaderMap,
    etag: EntityTag,
    buf: Vec<u8>,
    done: bool,
}

impl fmt::Debug for TestWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TestWriter({} bytes)", self.buf.len())
    }
}

impl AsyncWrite for TestWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl CacheWriter for TestWriter {
    async fn commit(&mut self) -> Result<()> {
        if self.done {
            return Err(Error::WriterClosed("closed"));
        }
        self.done = true;
        let mut log = self.log.lock().unwrap();
        log.commits += 1;
        let stored = Stored {
            headers: self.headers.clone(),
            etag: self.etag.clone(),
            body: Bytes::from(std::mem::take(&mut self.buf)),
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        log.objects.insert(self.slot.clone(), stored);
        Ok(())
    }

    async fn abort(&mut self, cause: AbortCause) -> Result<()> {
        if !self.done {
            self.done = true;
            self.log.lock().unwrap().aborts.push(cause.to_string());
        }
        Ok(())
    }
}

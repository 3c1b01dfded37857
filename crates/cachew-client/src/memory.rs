//! [`MemoryCache`]: an in-process cache bounded by bytes (LRU) and TTL.
//!
//! The object-record rules it shares with the disk cache are in
//! `record.rs`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use cachew_proto::{CreateOptions, Key, Namespace, OpenOptions, Stats};
use http::HeaderMap;
use tokio::io::AsyncWrite;

use crate::cache::{AbortCause, Cache, CacheWriter, Object, ObjectMeta};
use crate::error::{Error, Result};
use crate::record::{content_etag, too_large, PendingRecord, Record, WriterState};

/// An in-process cache, bounded by bytes with least-recently-used eviction
/// and by time to live.
///
/// Handles from [`Cache::with_namespace`] and clones share the same store.
/// Expired objects behave as absent and are dropped when next touched.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use cachew_client::{CacheExt, CreateOptions, Key, MemoryCache};
///
/// let cache = MemoryCache::new(64 << 20).with_default_ttl(Duration::from_secs(3600));
/// let key = Key::new("greeting");
/// cache
///     .put_bytes(&key, "hello".into(), Default::default(), &CreateOptions::default())
///     .await
///     .unwrap();
/// assert_eq!(cache.get_bytes(&key).await.unwrap(), "hello");
/// assert_eq!(cache.to_string(), "memory");
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryCache {
    shared: Arc<Shared>,
    namespace: Namespace,
    /// TTL rules, applied when an object is created through this handle.
    default_ttl: Option<Duration>,
    max_ttl: Option<Duration>,
}

struct Shared {
    /// Maximum total body bytes; 0 means unlimited.
    capacity: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<(Namespace, Key), Entry>,
    /// Access tick → entry, oldest first.
    lru: BTreeMap<u64, (Namespace, Key)>,
    size: u64,
    tick: u64,
}

struct Entry {
    data: Bytes,
    record: Record,
    expires: Option<Instant>,
    tick: u64,
}

impl State {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The live entry, after dropping it if expired; marks it used.
    fn get(&mut self, id: &(Namespace, Key), now: Instant) -> Option<&Entry> {
        let expired = match self.entries.get(id) {
            None => return None,
            Some(entry) => entry.expires.is_some_and(|at| at <= now),
        };
        if expired {
            self.remove(id);
            return None;
        }
        let tick = self.next_tick();
        let entry = self.entries.get_mut(id)?;
        self.lru.remove(&entry.tick);
        entry.tick = tick;
        self.lru.insert(tick, id.clone());
        Some(entry)
    }

    fn remove(&mut self, id: &(Namespace, Key)) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.lru.remove(&entry.tick);
        self.size -= entry.data.len() as u64;
        Some(entry)
    }

    fn insert(
        &mut self,
        id: (Namespace, Key),
        data: Bytes,
        record: Record,
        expires: Option<Instant>,
    ) {
        self.remove(&id);
        let tick = self.next_tick();
        self.size += data.len() as u64;
        self.lru.insert(tick, id.clone());
        self.entries.insert(
            id,
            Entry {
                data,
                record,
                expires,
                tick,
            },
        );
    }

    /// Drops expired entries, then least recently used ones until the total
    /// fits `capacity` (0: unlimited).
    fn evict(&mut self, capacity: u64, now: Instant) {
        self.purge_expired(now);
        while capacity > 0 && self.size > capacity {
            let Some((_, id)) = self.lru.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&id) {
                self.size -= entry.data.len() as u64;
            }
        }
    }

    fn purge_expired(&mut self, now: Instant) {
        let expired: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires.is_some_and(|at| at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }
}

impl MemoryCache {
    /// A cache holding at most `capacity_bytes` of object bodies (0: no
    /// limit), in the `default` namespace, whose objects expire only when
    /// created with a TTL.
    pub fn new(capacity_bytes: u64) -> MemoryCache {
        MemoryCache {
            shared: Arc::new(Shared {
                capacity: capacity_bytes,
                state: Mutex::new(State::default()),
            }),
            namespace: Namespace::default(),
            default_ttl: None,
            max_ttl: None,
        }
    }

    /// Sets the TTL of objects created without one (zero: they never expire).
    ///
    /// The rule belongs to this handle (and the handles derived from it);
    /// the store stays shared with its clones.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> MemoryCache {
        self.default_ttl = Some(ttl).filter(|d| !d.is_zero());
        self
    }

    /// Caps every object's TTL (zero: no cap), for objects created through
    /// this handle (and the handles derived from it).
    #[must_use]
    pub fn with_max_ttl(mut self, ttl: Duration) -> MemoryCache {
        self.max_ttl = Some(ttl).filter(|d| !d.is_zero());
        self
    }

    /// The capacity in bytes (0: unlimited).
    pub fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // with `size` in a way that matters more than losing the cache, so
        // keep serving.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn id(&self, key: &Key) -> (Namespace, Key) {
        (self.namespace.clone(), *key)
    }
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("namespace", &self.namespace)
            .field("capacity", &self.shared.capacity)
            .field("default_ttl", &self.default_ttl)
            .field("max_ttl", &self.max_ttl)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("memory")
    }
}

#[async_trait]
impl Cache for MemoryCache {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn with_namespace(&self, namespace: Namespace) -> Arc<dyn Cache> {
        Arc::new(MemoryCache {
            namespace,
            ..self.clone()
        })
    }

    async fn stat(&self, key: &Key, options: &OpenOptions) -> Result<ObjectMeta> {
        let mut state = self.state();
        let entry = state
            .get(&self.id(key), Instant::now())
            .ok_or(Error::NotFound)?;
        entry.record.stat(options)
    }

    async fn open(&self, key: &Key, options: &OpenOptions) -> Result<Object> {
        let (meta, data) = {
            let mut state = self.state();
            let entry = state
                .get(&self.id(key), Instant::now())
                .ok_or(Error::NotFound)?;
            (entry.record.open(options)?, entry.data.clone())
        };
        let data = match meta.range {
            Some((start, len)) => data.slice(start as usize..(start + len) as usize),
            None => data,
        };
        Ok(Object {
            meta,
            body: Box::pin(Cursor::new(data)),
        })
    }

    async fn create(
        &self,
        key: &Key,
        headers: HeaderMap,
        options: &CreateOptions,
    ) -> Result<Box<dyn CacheWriter>> {
        let pending = PendingRecord::new(headers, options, self.default_ttl, self.max_ttl)?;
        Ok(Box::new(MemoryWriter {
            cache: self.clone(),
            key: *key,
            pending,
            buf: Vec::new(),
            state: WriterState::Open,
            failure: None,
        }))
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let mut state = self.state();
        let id = self.id(key);
        // An expired object is already gone as far as callers can tell.
        if state.get(&id, Instant::now()).is_none() {
            return Err(Error::NotFound);
        }
        state.remove(&id);
        Ok(())
    }

    async fn invalidate(&self, key: &Key) -> Result<()> {
        self.state().remove(&self.id(key));
        Ok(())
    }

    async fn stats(&self) -> Result<Stats> {
        let mut state = self.state();
        state.purge_expired(Instant::now());
        Ok(Stats {
            objects: state.entries.len() as i64,
            size: state.size as i64,
            capacity: self.shared.capacity as i64,
        })
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let mut state = self.state();
        state.purge_expired(Instant::now());
        let mut names: Vec<String> = state
            .entries
            .keys()
            .map(|(ns, _)| ns.as_str().to_owned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// The writer of a [`MemoryCache`] object: bytes are buffered and inserted
/// into the store on commit.
struct MemoryWriter {
    cache: MemoryCache,
    key: Key,
    pending: PendingRecord,
    buf: Vec<u8>,
    state: WriterState,
    /// Why the writer failed while writing (it outgrew the capacity).
    failure: Option<String>,
}

impl fmt::Debug for MemoryWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryWriter")
            .field("namespace", &self.cache.namespace)
            .field("key", &self.key)
            .field("written", &self.buf.len())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl AsyncWrite for MemoryWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.state != WriterState::Open {
            return Poll::Ready(Err(this.state.closed_io_error()));
        }
        let capacity = this.cache.shared.capacity;
        let size = (this.buf.len() + data.len()) as u64;
        if capacity > 0 && size > capacity {
            // Stop buffering now: the object can never be stored.
            let message = too_large("memory", size, capacity);
            this.failure = Some(message.clone());
            this.state = WriterState::Failed;
            this.buf = Vec::new();
            return Poll::Ready(Err(std::io::Error::other(message)));
        }
        this.buf.extend_from_slice(data);
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
impl CacheWriter for MemoryWriter {
    async fn commit(&mut self) -> Result<()> {
        if self.state != WriterState::Open {
            if let Some(failure) = &self.failure {
                return Err(Error::Backend(failure.clone()));
            }
            return self.state.commit_again();
        }
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let size = data.len() as u64;
        let (record, expires_at) = self.pending.finish(size, SystemTime::now(), || {
            content_etag(&blake3::hash(&data))
        });
        let expires = expires_at.and_then(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            Instant::now().checked_add(left)
        });
        let capacity = self.cache.shared.capacity;
        let mut state = self.cache.state();
        state.insert(self.cache.id(&self.key), data, record, expires);
        state.evict(capacity, Instant::now());
        self.state = WriterState::Committed;
        Ok(())
    }

    async fn abort(&mut self, cause: AbortCause) -> Result<()> {
        if self.state == WriterState::Open {
            tracing::debug!(key = %self.key, %cause, "memory cache write aborted");
            self.buf = Vec::new();
            self.state = WriterState::Aborted;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheExt;

    fn put_opts() -> CreateOptions {
        CreateOptions::default()
    }

    #[tokio::test]
    async fn lru_evicts_least_recently_used() {
        let cache = MemoryCache::new(10);
        let (a, b, c) = (Key::new("a"), Key::new("b"), Key::new("c"));
        cache
            .put_bytes(
                &a,
                Bytes::from_static(b"aaaa"),
                HeaderMap::new(),
                &put_opts(),
            )
            .await
            .unwrap();
        cache
            .put_bytes(
                &b,
                Bytes::from_static(b"bbbb"),
                HeaderMap::new(),
                &put_opts(),
            )
            .await
            .unwrap();
        // Reading `a` makes `b` the least recently used.
        assert_eq!(cache.get_bytes(&a).await.unwrap(), "aaaa");
        cache
            .put_bytes(
                &c,
                Bytes::from_static(b"cccc"),
                HeaderMap::new(),
                &put_opts(),
            )
            .await
            .unwrap();
        assert!(cache.exists(&a).await.unwrap());
        assert!(!cache.exists(&b).await.unwrap());
        assert!(cache.exists(&c).await.unwrap());
        let stats = cache.stats().await.unwrap();
        assert_eq!((stats.objects, stats.size, stats.capacity), (2, 8, 10));
    }

    #[tokio::test]
    async fn too_large_is_rejected_while_writing() {
        let cache = MemoryCache::new(4);
        let err = cache
            .put_bytes(
                &Key::new("big"),
                Bytes::from_static(b"12345"),
                HeaderMap::new(),
                &put_opts(),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("5 bytes") && err.contains("capacity of 4 bytes"),
            "{err}"
        );
        assert!(!cache.exists(&Key::new("big")).await.unwrap());
    }

    #[tokio::test]
    async fn ttl_settings_keep_the_shared_store() {
        let cache = MemoryCache::new(0);
        let short = cache.clone().with_default_ttl(Duration::from_millis(1));
        let key = Key::new("k");
        cache
            .put_bytes(
                &key,
                Bytes::from_static(b"v"),
                HeaderMap::new(),
                &put_opts(),
            )
            .await
            .unwrap();
        assert!(short.exists(&key).await.unwrap(), "same store");
        short
            .put_bytes(
                &key,
                Bytes::from_static(b"v"),
                HeaderMap::new(),
                &put_opts(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !cache.exists(&key).await.unwrap(),
            "created with the short default"
        );
        let ns = short.with_namespace(Namespace::new("other").unwrap());
        ns.put_bytes(
            &key,
            Bytes::from_static(b"v"),
            HeaderMap::new(),
            &put_opts(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !ns.exists(&key).await.unwrap(),
            "namespaces keep the TTL rules"
        );
    }
}

//! The [`Cache`] trait every backend implements, and the types it trades in.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use cachew_proto::{CreateOptions, EntityTag, Key, Namespace, OpenOptions, Stats};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};

/// A readable object body.
pub type Body = Pin<Box<dyn AsyncRead + Send>>;

/// The cause given to [`CacheWriter::abort`].
pub type AbortCause = Box<dyn std::error::Error + Send + Sync>;

/// What a backend knows about a stored object, as Open and Stat report it.
#[derive(Debug, Clone)]
pub struct ObjectMeta {
    /// The headers a server would send: the stored headers (e.g.
    /// `Content-Type`, custom ones) plus `ETag`, `Last-Modified`,
    /// `Content-Length` (of the returned part), `Accept-Ranges` and, for a
    /// partial answer, `Content-Range`; minus the client-filtered ones.
    pub headers: HeaderMap,
    /// Size of the whole object in bytes; `None` when a server answered
    /// without `Content-Length` (older servers; `PROTOCOL.md` §5,
    /// tolerance). Embedded backends always know it.
    pub size: Option<u64>,
    /// The object's strong ETag; `None` when a server answered without one
    /// (objects stored before ETags were recorded). Embedded backends
    /// always have one.
    pub etag: Option<EntityTag>,
    /// When the object was stored, or the `Last-Modified` given at Create.
    pub last_modified: SystemTime,
    /// For a partial answer, `(start, len)` of the returned bytes.
    pub range: Option<(u64, u64)>,
}

impl ObjectMeta {
    /// Length of the body that accompanies this metadata, when known.
    pub fn content_length(&self) -> Option<u64> {
        match self.range {
            Some((_, len)) => Some(len),
            None => self.size,
        }
    }
}

/// An open object: its metadata and a body stream.
pub struct Object {
    /// What the backend knows about the object.
    pub meta: ObjectMeta,
    /// The (possibly partial) body.
    pub body: Body,
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Object {
    /// Reads the whole body into memory.
    pub async fn bytes(mut self) -> Result<Bytes> {
        let mut buf = Vec::with_capacity(
            usize::try_from(self.meta.content_length().unwrap_or(0))
                .unwrap_or(0)
                .min(64 << 20),
        );
        self.body
            .read_to_end(&mut buf)
            .await
            .map_err(Error::Stream)?;
        Ok(buf.into())
    }
}

/// An in-progress upload of one object.
///
/// Bytes are written through [`AsyncWrite`]; [`commit`](CacheWriter::commit)
/// makes the object visible, [`abort`](CacheWriter::abort) discards it.
/// **Architecture invariant:** an object is never visible before commit, and
/// a failed or aborted write never becomes visible. Dropping a writer without
/// committing aborts it. Commit and abort are idempotent: after the first
/// call, commit again returns the first outcome's success or
/// [`Error::WriterClosed`], and abort again is a no-op.
#[async_trait]
pub trait CacheWriter: AsyncWrite + Send + Unpin + fmt::Debug {
    /// Finishes the upload and makes the object visible.
    async fn commit(&mut self) -> Result<()>;

    /// Discards the upload; the object never becomes visible. `cause` is
    /// recorded (a remote upload fails its request body with it).
    async fn abort(&mut self, cause: AbortCause) -> Result<()>;
}

/// A cache of objects addressed by [`Key`] within a [`Namespace`], modelled on
/// the Go `cache.Cache` interface.
///
/// Object-safe: use it as `Arc<dyn Cache>`. `Display` describes the backend
/// (`disk:/path`, `memory`, `remote:URL`).
#[async_trait]
pub trait Cache: Send + Sync + fmt::Debug + fmt::Display + 'static {
    /// The namespace this handle reads and writes.
    fn namespace(&self) -> &Namespace;

    /// A handle on the same backend bound to another namespace.
    fn with_namespace(&self, namespace: Namespace) -> Arc<dyn Cache>;

    /// The object's metadata, with `If-Match`/`If-None-Match` applied
    /// (`range` and `if_range` are ignored).
    async fn stat(&self, key: &Key, options: &OpenOptions) -> Result<ObjectMeta>;

    /// Opens the object, with conditional and range options applied.
    async fn open(&self, key: &Key, options: &OpenOptions) -> Result<Object>;

    /// Starts an upload. `headers` are stored with the object (minus
    /// transport headers) and returned by `open` and `stat`.
    async fn create(
        &self,
        key: &Key,
        headers: HeaderMap,
        options: &CreateOptions,
    ) -> Result<Box<dyn CacheWriter>>;

    /// Deletes the object; [`Error::NotFound`] if there is none.
    async fn delete(&self, key: &Key) -> Result<()>;

    /// Drops the object if present; absent keys are fine.
    async fn invalidate(&self, key: &Key) -> Result<()>;

    /// Usage statistics, or [`Error::StatsUnavailable`].
    async fn stats(&self) -> Result<Stats>;

    /// The namespaces that hold objects.
    async fn list_namespaces(&self) -> Result<Vec<String>>;
}

/// Conveniences on every [`Cache`].
#[async_trait]
pub trait CacheExt: Cache {
    /// Reads a whole object into memory.
    async fn get_bytes(&self, key: &Key) -> Result<Bytes> {
        self.open(key, &OpenOptions::default()).await?.bytes().await
    }

    /// Stores `data` under `key` in one call.
    async fn put_bytes(
        &self,
        key: &Key,
        data: Bytes,
        headers: HeaderMap,
        options: &CreateOptions,
    ) -> Result<()> {
        let mut writer = self.create(key, headers, options).await?;
        if let Err(e) = writer.write_all(&data).await {
            let _ = writer
                .abort(Box::new(std::io::Error::new(e.kind(), e.to_string())))
                .await;
            return Err(Error::from(e));
        }
        writer.commit().await
    }

    /// Whether an object exists under `key` (a Stat that maps not-found to
    /// `false`).
    async fn exists(&self, key: &Key) -> Result<bool> {
        match self.stat(key, &OpenOptions::default()).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<T: Cache + ?Sized> CacheExt for T {}

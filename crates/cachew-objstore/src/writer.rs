//! [`ObjectStoreWriter`]: one upload, buffered up to a part and sent in one
//! `PUT` at commit, or else a multipart upload completed at commit; the
//! object is visible only then, and an abort or a drop leaves none.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use cachew_client::record::{PendingRecord, WriterState};
use cachew_client::{
    AbortCause, CacheWriter, CreateOptions, EntityTag, Error, Key, Namespace, Result,
};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::HeaderMap;
use object_store::path::Path;
use object_store::{
    Attributes, MultipartUpload, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    WriteMultipart,
};
use tokio::io::AsyncWrite;

use crate::meta::{self, StoredRecord, INLINE_LIMIT};
use crate::Shared;

type Creating = BoxFuture<'static, object_store::Result<Box<dyn MultipartUpload>>>;

enum Phase {
    /// Up to one part, sent whole at commit.
    Buffer(Vec<u8>),
    /// Past one part: the multipart upload is being created; the buffer
    /// becomes its first bytes.
    Creating(Creating, Vec<u8>),
    /// Parts are being uploaded.
    Uploading(WriteMultipart),
    /// Committed, aborted or failed.
    Done,
}

/// The writer of an [`ObjectStoreCache`](crate::ObjectStoreCache) object.
pub(crate) struct ObjectStoreWriter {
    shared: Arc<Shared>,
    path: Path,
    attributes: Attributes,
    /// The sidecar written for this upload, removed if it is not committed.
    sidecar: Option<Path>,
    phase: Phase,
    state: WriterState,
    written: u64,
    failure: Option<String>,
}

impl fmt::Debug for ObjectStoreWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Buffer(_) => "buffer",
            Phase::Creating(..) => "creating",
            Phase::Uploading(_) => "uploading",
            Phase::Done => "done",
        };
        f.debug_struct("ObjectStoreWriter")
            .field("path", &self.path.as_ref())
            .field("phase", &phase)
            .field("written", &self.written)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl ObjectStoreWriter {
    /// Checks the Create (headers, ETag, TTL), fixes the record, and writes
    /// its sidecar if it is too large for user metadata.
    pub(crate) async fn start(
        shared: Arc<Shared>,
        namespace: Namespace,
        key: Key,
        headers: HeaderMap,
        options: &CreateOptions,
    ) -> Result<ObjectStoreWriter> {
        let pending = PendingRecord::new(
            headers,
            options,
            shared.options.default_ttl,
            shared.options.max_ttl,
        )?;
        let (record, expires) = pending.finish(0, SystemTime::now(), random_etag);
        let stored = StoredRecord::new(&record, expires);
        let inline = stored.encode_inline();
        let path = shared.object_path(&namespace, &key);
        let (attributes, sidecar) = if inline.len() <= INLINE_LIMIT {
            (meta::attributes(Some(inline), None), None)
        } else {
            let id = random_id();
            let sidecar = shared.sidecar_path(&namespace, &key, &id);
            shared
                .store
                .put(&sidecar, PutPayload::from(stored.to_json()))
                .await
                .map_err(|e| shared.error(&format!("PUT of the sidecar {sidecar}"), e))?;
            (meta::attributes(None, Some(&id)), Some(sidecar))
        };
        Ok(ObjectStoreWriter {
            shared,
            path,
            attributes,
            sidecar,
            phase: Phase::Buffer(Vec::new()),
            state: WriterState::Open,
            written: 0,
            failure: None,
        })
    }

    fn fail(&mut self, message: String) -> std::io::Error {
        self.failure = Some(message.clone());
        self.state = WriterState::Failed;
        self.discard();
        std::io::Error::other(message)
    }

    /// Leaves nothing behind: aborts a multipart upload and removes the
    /// sidecar, on a task (this also runs from `Drop`).
    fn discard(&mut self) {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        let sidecar = self.sidecar.take();
        if matches!(phase, Phase::Buffer(_) | Phase::Done) && sidecar.is_none() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let path = self.path.clone();
        let cleanup = async move {
            let aborted = match phase {
                Phase::Creating(creating, _) => match creating.await {
                    Ok(mut upload) => upload.abort().await,
                    Err(_) => Ok(()),
                },
                Phase::Uploading(upload) => upload.abort().await,
                Phase::Buffer(_) | Phase::Done => Ok(()),
            };
            if let Err(e) = aborted {
                tracing::warn!(%path, error = %e, "aborting a multipart upload failed; the bucket's lifecycle rule removes it");
            }
            if let Some(sidecar) = sidecar {
                let _ = shared.store.delete(&sidecar).await;
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(cleanup);
            }
            Err(_) => tracing::warn!(path = %self.path, "no runtime to abort an upload on"),
        }
    }

    fn start_multipart(&self) -> Creating {
        let store = Arc::clone(&self.shared.store);
        let path = self.path.clone();
        let opts = PutMultipartOptions {
            attributes: self.attributes.clone(),
            ..PutMultipartOptions::default()
        };
        async move { store.put_multipart_opts(&path, opts).await }.boxed()
    }

    fn uploader(&self, upload: Box<dyn MultipartUpload>, first: Vec<u8>) -> WriteMultipart {
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.shared.options.part_size);
        writer.put(Bytes::from(first));
        writer
    }

    async fn finish(&mut self) -> object_store::Result<()> {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Buffer(buf) => {
                let opts = PutOptions {
                    attributes: self.attributes.clone(),
                    ..PutOptions::default()
                };
                self.shared
                    .store
                    .put_opts(&self.path, PutPayload::from(buf), opts)
                    .await?;
            }
            Phase::Creating(creating, first) => {
                let upload = creating.await?;
                self.uploader(upload, first).finish().await?;
            }
            Phase::Uploading(upload) => {
                upload.finish().await?;
            }
            Phase::Done => {}
        }
        Ok(())
    }
}

impl AsyncWrite for ObjectStoreWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.state != WriterState::Open {
            return Poll::Ready(Err(this.state.closed_io_error()));
        }
        let part_size = this.shared.options.part_size;
        loop {
            match &mut this.phase {
                Phase::Buffer(buf) => {
                    buf.extend_from_slice(data);
                    if buf.len() > part_size {
                        let first = std::mem::take(buf);
                        this.phase = Phase::Creating(this.start_multipart(), first);
                    }
                    break;
                }
                Phase::Creating(creating, first) => match creating.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(upload)) => {
                        let first = std::mem::take(first);
                        this.phase = Phase::Uploading(this.uploader(upload, first));
                    }
                    Poll::Ready(Err(e)) => {
                        let message =
                            format!("starting the multipart upload of {}: {e}", this.path);
                        return Poll::Ready(Err(this.fail(message)));
                    }
                },
                Phase::Uploading(upload) => {
                    match upload.poll_for_capacity(cx, this.shared.options.part_concurrency) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(())) => {
                            upload.write(data);
                            break;
                        }
                        Poll::Ready(Err(e)) => {
                            let message = format!("uploading a part of {}: {e}", this.path);
                            return Poll::Ready(Err(this.fail(message)));
                        }
                    }
                }
                Phase::Done => return Poll::Ready(Err(this.state.closed_io_error())),
            }
        }
        this.written += data.len() as u64;
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
impl CacheWriter for ObjectStoreWriter {
    async fn commit(&mut self) -> Result<()> {
        if self.state != WriterState::Open {
            if let Some(failure) = &self.failure {
                return Err(Error::Backend(failure.clone()));
            }
            return self.state.commit_again();
        }
        match self.finish().await {
            Ok(()) => {
                self.state = WriterState::Committed;
                // The sidecar now belongs to the object.
                self.sidecar = None;
                Ok(())
            }
            Err(e) => {
                let message = format!(
                    "{}: committing {}: {e}",
                    self.shared_description(),
                    self.path
                );
                self.fail(message.clone());
                Err(Error::Backend(message))
            }
        }
    }

    async fn abort(&mut self, cause: AbortCause) -> Result<()> {
        if self.state == WriterState::Open {
            tracing::debug!(path = %self.path, %cause, "object store write aborted");
            self.state = WriterState::Aborted;
            self.discard();
        }
        Ok(())
    }
}

impl ObjectStoreWriter {
    fn shared_description(&self) -> &str {
        self.shared.description()
    }
}

impl Drop for ObjectStoreWriter {
    fn drop(&mut self) {
        if self.state == WriterState::Open {
            self.state = WriterState::Aborted;
            self.discard();
        }
    }
}

/// 128 random bits as 32 hex digits.
fn random_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The ETag of an object created without one: fixed before the body is
/// sent, because the record travels with the upload's first request.
fn random_etag() -> EntityTag {
    EntityTag::new(random_id()).unwrap_or_else(|_| unreachable!("hex is a valid ETag"))
}

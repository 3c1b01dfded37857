//! [`DiskWriter`]: an upload into a locked temporary file, buffered,
//! size-checked against the capacity, and published on commit by one atomic
//! rename once body and trailer are `fsync`ed.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use async_trait::async_trait;
use cachew_proto::{Key, Namespace};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::lock::FileId;
use super::trailer::encode_trailer;
use super::{blocking, Shared};
use crate::cache::{AbortCause, CacheWriter};
use crate::error::{Error, Result};
use crate::record::{content_etag, PendingRecord, WriterState};

/// Bytes an upload gathers before they are written to its temporary file:
/// one blocking write per MiB instead of one per body frame (a save of
/// share/doc to the reference server sends 860 frames of 64 KiB).
pub(super) const WRITE_BUFFER: usize = 1 << 20;

impl Shared {
    /// Moves a complete temporary file into place and evicts what no longer
    /// fits.
    pub(super) fn publish(
        &self,
        namespace: &Namespace,
        key: &Key,
        temp: &Path,
        file: &File,
        len: u64,
    ) -> Result<()> {
        let dest = self.object_path(namespace, key);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io("create cache directory", dir, e))?;
        }
        let file_id = FileId::of(
            &file
                .metadata()
                .map_err(|e| Error::io("inspect temporary file", temp, e))?,
        );
        let victims = {
            // Renaming under the index lock keeps the index in the same order
            // as the renames when tasks of this process race on one key.
            let mut index = self.index();
            fs::rename(temp, &dest).map_err(|e| Error::io("publish cache object", &dest, e))?;
            index.upsert((namespace.clone(), *key), len, file_id);
            index.evict(self.options.capacity)
        };
        self.remove_victims(victims);
        Ok(())
    }
}

/// An upload into a locked temporary file, published on commit.
pub(super) struct DiskWriter {
    pub(super) shared: Arc<Shared>,
    pub(super) namespace: Namespace,
    pub(super) key: Key,
    pub(super) pending: PendingRecord,
    pub(super) temp: PathBuf,
    /// `Some` while open. Buffered: `tokio::fs::File` hands every write to
    /// a blocking thread, and an upload arrives in frames of 16–64 KiB.
    pub(super) file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    /// Digests the body for a generated ETag; `None` when one was given.
    pub(super) hasher: Option<blake3::Hasher>,
    pub(super) written: u64,
    pub(super) state: WriterState,
    /// Why the upload failed, repeated by a later commit.
    pub(super) failure: Option<String>,
}

impl fmt::Debug for DiskWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskWriter")
            .field("namespace", &self.namespace)
            .field("key", &self.key)
            .field("temp", &self.temp)
            .field("written", &self.written)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl DiskWriter {
    /// Drops the temporary file; the object never becomes visible.
    fn discard(&mut self, state: WriterState) {
        self.state = state;
        self.file = None;
        if let Err(e) = fs::remove_file(&self.temp) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.temp.display(), error = %e, "could not remove a temporary file");
            }
        }
    }

    fn fail(&mut self, message: String) {
        self.failure = Some(message);
        self.discard(WriterState::Failed);
    }

    async fn publish(&mut self) -> Result<()> {
        let mut file = self.file.take().ok_or(Error::WriterClosed("closed"))?;
        file.flush()
            .await
            .map_err(|e| Error::io("write temporary file", &self.temp, e))?;
        let mut file = file.into_inner().into_std().await;
        let hasher = self.hasher.take();
        let (record, expires) = self.pending.finish(self.written, SystemTime::now(), || {
            content_etag(&hasher.unwrap_or_default().finalize())
        });
        let trailer = encode_trailer(&self.key, &record, expires)?;
        let total = self.written + trailer.len() as u64;
        let capacity = self.shared.options.capacity;
        if capacity > 0 && total > capacity {
            return Err(Error::Backend(format!(
                "object of {} bytes ({total} bytes on disk with its metadata) exceeds the disk \
                 cache capacity of {capacity} bytes (objects larger than the capacity are never stored)",
                self.written
            )));
        }
        let (shared, ns, key, temp) = (
            self.shared.clone(),
            self.namespace.clone(),
            self.key,
            self.temp.clone(),
        );
        blocking(move || {
            file.write_all(&trailer)
                .map_err(|e| Error::io("write temporary file", &temp, e))?;
            // Durable before visible: the rename must not overtake the data.
            file.sync_all()
                .map_err(|e| Error::io("sync temporary file", &temp, e))?;
            shared.publish(&ns, &key, &temp, &file, total)
        })
        .await
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        if self.state == WriterState::Open {
            tracing::debug!(key = %self.key, "disk cache writer dropped without commit; discarding");
            self.discard(WriterState::Aborted);
        }
    }
}

impl AsyncWrite for DiskWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.state != WriterState::Open {
            return Poll::Ready(Err(this.state.closed_io_error()));
        }
        let capacity = this.shared.options.capacity;
        let size = this.written + data.len() as u64;
        if capacity > 0 && size > capacity {
            // Stop filling the disk now: the object can never be stored.
            let message = crate::record::too_large("disk", size, capacity);
            this.fail(message.clone());
            return Poll::Ready(Err(io::Error::other(message)));
        }
        let Some(file) = this.file.as_mut() else {
            return Poll::Ready(Err(this.state.closed_io_error()));
        };
        match Pin::new(file).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if let Some(hasher) = &mut this.hasher {
                    hasher.update(&data[..n]);
                }
                this.written += n as u64;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => {
                let message = format!("write temporary file {}: {e}", this.temp.display());
                this.fail(message.clone());
                Poll::Ready(Err(io::Error::new(e.kind(), message)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.file.as_mut() {
            Some(file) => Pin::new(file).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Shutting the stream down is not a commit; it only flushes.
        self.poll_flush(cx)
    }
}

#[async_trait]
impl CacheWriter for DiskWriter {
    async fn commit(&mut self) -> Result<()> {
        if self.state != WriterState::Open {
            if let Some(failure) = &self.failure {
                return Err(Error::Backend(failure.clone()));
            }
            return self.state.commit_again();
        }
        match self.publish().await {
            Ok(()) => {
                self.state = WriterState::Committed;
                self.file = None;
                Ok(())
            }
            Err(e) => {
                self.fail(e.to_string());
                Err(e)
            }
        }
    }

    async fn abort(&mut self, cause: AbortCause) -> Result<()> {
        if self.state == WriterState::Open {
            tracing::debug!(key = %self.key, %cause, "disk cache write aborted");
            self.discard(WriterState::Aborted);
        }
        Ok(())
    }
}

//! Loading an object file: open it once, decode and check its trailer,
//! treat expired and corrupt files as absent (and remove them), and record
//! reads in the index.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cachew_proto::{Key, Namespace};

use super::lock::{remove_if_same, FileId};
use super::trailer::{read_trailer, unix_ms, TrailerError};
use super::{ObjectId, Shared};
use crate::error::{Error, Result};
use crate::record::Record;

/// An object file, opened and checked.
pub(super) struct Loaded {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) record: Record,
    pub(super) id: FileId,
    pub(super) len: u64,
}

impl Shared {
    /// Opens the object file and decodes its trailer; expired and corrupt
    /// files are removed and reported as [`Error::NotFound`].
    pub(super) fn load(&self, namespace: &Namespace, key: &Key) -> Result<Loaded> {
        let id = (namespace.clone(), *key);
        let path = self.object_path(namespace, key);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut index = self.index();
                // Under the lock no publish of this process can be halfway,
                // so a path still missing means the index entry is stale.
                if !path.exists() {
                    index.forget(&id);
                }
                return Err(Error::NotFound);
            }
            Err(e) => return Err(Error::io("open cache object", path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io("inspect cache object", &path, e))?;
        let file_id = FileId::of(&meta);
        match read_trailer(&mut file, meta.len(), key) {
            Ok(trailer) => {
                if trailer
                    .expires_ms
                    .is_some_and(|at| at <= unix_ms(SystemTime::now()))
                {
                    if self.discard(&id, &path, file_id) {
                        self.counters.expired(1);
                    }
                    return Err(Error::NotFound);
                }
                Ok(Loaded {
                    file,
                    path,
                    record: trailer.record,
                    id: file_id,
                    len: meta.len(),
                })
            }
            Err(TrailerError::Io(e)) => Err(Error::io("read cache object", path, e)),
            Err(TrailerError::Foreign) => {
                tracing::debug!(path = %path.display(), "skipping an object of another format version");
                Err(Error::NotFound)
            }
            Err(TrailerError::Corrupt(why)) => {
                tracing::warn!(path = %path.display(), why, "removing a corrupt cache object");
                self.discard(&id, &path, file_id);
                Err(Error::NotFound)
            }
        }
    }

    /// Marks a just-read object as the most recently used, unless a newer
    /// version replaced it meanwhile (whose publish indexed it already).
    pub(super) fn touch(&self, id: ObjectId, loaded: &Loaded) {
        let mut index = self.index();
        let current = fs::symlink_metadata(&loaded.path)
            .ok()
            .map(|m| FileId::of(&m));
        if current == Some(loaded.id) {
            index.upsert(id, loaded.len, loaded.id);
        }
    }

    /// Removes the object file if it still is `file`, and forgets it;
    /// whether this call removed the file.
    pub(super) fn discard(&self, id: &ObjectId, path: &Path, file: FileId) -> bool {
        let mut index = self.index();
        let removed = remove_if_same(path, file).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a cache object");
            false
        });
        index.forget_file(id, file);
        removed
    }
}

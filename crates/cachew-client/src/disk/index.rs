//! The LRU index of the objects a handle knows about: sizes and recency,
//! rebuilt from the files when the root is opened (`scan`), and the
//! eviction that keeps the total under the capacity.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::time::SystemTime;

use cachew_proto::{Key, Namespace};

use super::lock::FileId;
use super::ObjectId;
use crate::error::{Error, Result};

/// The objects this handle knows about, least recently used first.
#[derive(Default)]
pub(super) struct Index {
    pub(super) entries: HashMap<ObjectId, Slot>,
    lru: BTreeMap<u64, ObjectId>,
    pub(super) size: u64,
    tick: u64,
}

pub(super) struct Slot {
    len: u64,
    file: FileId,
    tick: u64,
}

impl Index {
    /// Records the object as the most recently used.
    pub(super) fn upsert(&mut self, id: ObjectId, len: u64, file: FileId) {
        self.forget(&id);
        self.tick += 1;
        self.size += len;
        self.lru.insert(self.tick, id.clone());
        self.entries.insert(
            id,
            Slot {
                len,
                file,
                tick: self.tick,
            },
        );
    }

    pub(super) fn forget(&mut self, id: &ObjectId) {
        if let Some(slot) = self.entries.remove(id) {
            self.lru.remove(&slot.tick);
            self.size -= slot.len;
        }
    }

    /// Forgets the object only if the index still describes `file`.
    pub(super) fn forget_file(&mut self, id: &ObjectId, file: FileId) {
        if self.entries.get(id).is_some_and(|slot| slot.file == file) {
            self.forget(id);
        }
    }

    /// Drops least recently used objects until the total fits, returning
    /// them for removal.
    pub(super) fn evict(&mut self, capacity: u64) -> Vec<(ObjectId, FileId)> {
        let mut victims = Vec::new();
        while capacity > 0 && self.size > capacity {
            let Some((_, id)) = self.lru.pop_first() else {
                break;
            };
            if let Some(slot) = self.entries.remove(&id) {
                self.size -= slot.len;
                victims.push((id, slot.file));
            }
        }
        victims
    }
}

/// Lists the object files under `objects/` with their size, identity and
/// modification time. Entries that are not objects are skipped.
pub(super) fn scan(objects: &Path) -> Result<Vec<(ObjectId, u64, FileId, SystemTime)>> {
    let mut found = Vec::new();
    let namespaces =
        fs::read_dir(objects).map_err(|e| Error::io("read cache directory", objects, e))?;
    for ns_entry in namespaces {
        let ns_entry = ns_entry.map_err(|e| Error::io("read cache directory", objects, e))?;
        let name = ns_entry.file_name();
        let Some(namespace) = name.to_str().and_then(|n| Namespace::new(n).ok()) else {
            tracing::warn!(path = %ns_entry.path().display(), "ignoring a directory that is not a namespace");
            continue;
        };
        let ns_dir = ns_entry.path();
        let shards = match fs::read_dir(&ns_dir) {
            Ok(shards) => shards,
            Err(e) => {
                tracing::warn!(path = %ns_dir.display(), error = %e, "skipping unreadable directory");
                continue;
            }
        };
        for shard in shards.flatten() {
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for file in files.flatten() {
                let file_name = file.file_name();
                let Some(hex) = file_name.to_str() else {
                    continue;
                };
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                let Ok(meta) = file.metadata() else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((
                    (namespace.clone(), Key::parse(hex)),
                    meta.len(),
                    FileId::of(&meta),
                    mtime,
                ));
            }
        }
    }
    Ok(found)
}

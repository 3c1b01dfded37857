//! The journal of an in-place publish (`publish.rs`): one record written
//! before each rename or metadata change in the target, so that a run
//! killed halfway can be rolled back by the next one (`docs/ARCHITECTURE.md`,
//! "Restores: staging, swap, recovery").
//!
//! The journal is the file `journal` in the staging directory. It starts
//! with the target's path; then each record names a path relative to the
//! target and the staged tree (`tree/` in the staging directory). Every
//! undo is decided from the state on disk, not from whether the record's
//! operation is known to have happened: a moved or exchanged entry is
//! recognised by the device and inode of the staged entry, which are in the
//! record, so undoing twice (a rollback that was itself killed) is safe. A
//! final `Commit` record says every entry is in place: what is left in
//! staging is then the old tree, and recovery only removes it.
//!
//! Records are appended with one `write` each, without `fsync`: the journal
//! survives the death of the process (SIGKILL, the OOM killer), not a
//! power loss.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The journal's file name inside a staging directory.
pub(crate) const JOURNAL: &str = "journal";
/// The staged tree's name inside a staging directory.
pub(crate) const TREE: &str = "tree";
/// Where entries replaced without `RENAME_EXCHANGE` are put aside.
pub(crate) const ASIDE: &str = "aside";

const MAGIC: &[u8; 8] = b"cachewj1";

/// One step of a publish, recorded before it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// `tree/REL` was renamed to `TARGET/REL`, where nothing was.
    Move { rel: Vec<u8>, dev: u64, ino: u64 },
    /// `tree/REL` and `TARGET/REL` were exchanged; `dev`/`ino` are the
    /// staged entry's.
    Exchange { rel: Vec<u8>, dev: u64, ino: u64 },
    /// `TARGET/REL` was renamed to `aside/N`, then `tree/REL` to
    /// `TARGET/REL` (no `RENAME_EXCHANGE` on this file system).
    Aside {
        rel: Vec<u8>,
        n: u64,
        dev: u64,
        ino: u64,
    },
    /// The directory `TARGET/REL` had this mode, owner and modification
    /// time before the publish changed it (or renamed entries in it).
    Meta {
        rel: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
        mtime_nsec: i64,
    },
    /// Every entry is in place.
    Commit,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

impl Op {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Op::Move { rel, dev, ino } | Op::Exchange { rel, dev, ino } => {
                out.push(if matches!(self, Op::Move { .. }) {
                    b'M'
                } else {
                    b'X'
                });
                put_bytes(&mut out, rel);
                out.extend_from_slice(&dev.to_le_bytes());
                out.extend_from_slice(&ino.to_le_bytes());
            }
            Op::Aside { rel, n, dev, ino } => {
                out.push(b'A');
                put_bytes(&mut out, rel);
                for v in [n, dev, ino] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Op::Meta {
                rel,
                mode,
                uid,
                gid,
                mtime,
                mtime_nsec,
            } => {
                out.push(b'T');
                put_bytes(&mut out, rel);
                for v in [mode, uid, gid] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.extend_from_slice(&mtime.to_le_bytes());
                out.extend_from_slice(&mtime_nsec.to_le_bytes());
            }
            Op::Commit => out.push(b'C'),
        }
        out
    }
}

/// A reader of encoded records that stops at a torn (incomplete) one.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
    fn op(&mut self) -> Option<Op> {
        let tag = *self.take(1)?.first()?;
        Some(match tag {
            b'M' | b'X' => {
                let (rel, dev, ino) = (self.bytes()?, self.u64()?, self.u64()?);
                if tag == b'M' {
                    Op::Move { rel, dev, ino }
                } else {
                    Op::Exchange { rel, dev, ino }
                }
            }
            b'A' => Op::Aside {
                rel: self.bytes()?,
                n: self.u64()?,
                dev: self.u64()?,
                ino: self.u64()?,
            },
            b'T' => Op::Meta {
                rel: self.bytes()?,
                mode: self.u32()?,
                uid: self.u32()?,
                gid: self.u32()?,
                mtime: self.u64()? as i64,
                mtime_nsec: self.u64()? as i64,
            },
            b'C' => Op::Commit,
            _ => return None,
        })
    }
}

/// The journal being written by a publish.
pub(crate) struct Journal {
    file: File,
}

impl Journal {
    /// Creates `staging/journal` naming `target`.
    pub(crate) fn create(staging: &Path, target: &Path) -> io::Result<Journal> {
        let mut file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(staging.join(JOURNAL))?;
        let mut head = MAGIC.to_vec();
        put_bytes(&mut head, target.as_os_str().as_bytes());
        file.write_all(&head)?;
        Ok(Journal { file })
    }

    /// Appends `op` (before it is carried out).
    pub(crate) fn log(&mut self, op: &Op) -> io::Result<()> {
        self.file.write_all(&op.encode())
    }
}

/// A journal read back: the target and the records, up to a torn one.
pub(crate) fn read(staging: &Path) -> io::Result<Option<(PathBuf, Vec<Op>)>> {
    let mut buf = Vec::new();
    match File::open(staging.join(JOURNAL)) {
        Ok(mut f) => f.read_to_end(&mut buf)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut c = Cursor(&buf);
    // A journal torn inside its header: nothing was done yet.
    if c.take(MAGIC.len()) != Some(MAGIC.as_slice()) {
        return Ok(None);
    }
    let Some(target) = c.bytes() else {
        return Ok(None);
    };
    let mut ops = Vec::new();
    while let Some(op) = c.op() {
        ops.push(op);
    }
    Ok(Some((PathBuf::from(OsStr::from_bytes(&target)), ops)))
}

/// `base/rel`, where an empty `rel` is `base` itself.
pub(crate) fn join(base: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(OsStr::from_bytes(rel))
    }
}

fn is(path: &Path, dev: u64, ino: u64) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// What [`settle`] found in a staging directory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// No publish had started (no journal): the target was never touched.
    NotStarted,
    /// The publish had finished: the staging holds the old tree.
    Committed,
    /// The publish was undone: the target is as it was.
    RolledBack(PathBuf),
}

/// Brings a target back to a whole state after a publish that stopped:
/// a committed journal is left as it is; otherwise every recorded step is
/// undone, renames last to first, then the directories' metadata. Safe to
/// run again if it is itself interrupted.
pub(crate) fn settle(staging: &Path) -> io::Result<Settled> {
    let Some((target, ops)) = read(staging)? else {
        return Ok(Settled::NotStarted);
    };
    if ops.contains(&Op::Commit) {
        return Ok(Settled::Committed);
    }
    let tree = staging.join(TREE);
    for op in ops.iter().rev() {
        match op {
            Op::Move { rel, dev, ino } => {
                let at = join(&target, rel);
                if is(&at, *dev, *ino) {
                    writable_parent(&at);
                    std::fs::rename(&at, join(&tree, rel))?;
                }
            }
            Op::Exchange { rel, dev, ino } => {
                let at = join(&target, rel);
                if is(&at, *dev, *ino) {
                    writable_parent(&at);
                    crate::publish::exchange(&join(&tree, rel), &at)?;
                }
            }
            Op::Aside { rel, n, dev, ino } => {
                let at = join(&target, rel);
                if is(&at, *dev, *ino) {
                    writable_parent(&at);
                    std::fs::rename(&at, join(&tree, rel))?;
                }
                let aside = staging.join(ASIDE).join(n.to_string());
                if std::fs::symlink_metadata(&at).is_err()
                    && std::fs::symlink_metadata(&aside).is_ok()
                {
                    std::fs::rename(&aside, &at)?;
                }
            }
            Op::Meta { .. } | Op::Commit => {}
        }
    }
    for op in ops.iter().rev() {
        if let Op::Meta {
            rel,
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec,
        } = op
        {
            let at = join(&target, rel);
            restore_meta(&at, *mode, *uid, *gid, *mtime, *mtime_nsec)?;
        }
    }
    Ok(Settled::RolledBack(target))
}

/// Gives a directory its recorded mode, owner and modification time.
pub(crate) fn restore_meta(
    dir: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    mtime_nsec: i64,
) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    if meta.uid() != uid || meta.gid() != gid {
        let _ = std::os::unix::fs::lchown(dir, Some(uid), Some(gid));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7777))?;
    let t = std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::new(
            mtime.max(0) as u64,
            mtime_nsec.clamp(0, 999_999_999) as u32,
        ))
        .unwrap_or(std::time::UNIX_EPOCH);
    let f = File::open(dir)?;
    f.set_times(std::fs::FileTimes::new().set_modified(t))
}

/// Makes `path`'s parent owner-writable if it is not (a read-only
/// directory of the target, for an unprivileged user); its recorded mode
/// is put back by the `Meta` step.
fn writable_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        if let Ok(m) = std::fs::symlink_metadata(parent) {
            let mode = m.mode();
            if m.is_dir() && mode & 0o300 != 0o300 {
                let _ = std::fs::set_permissions(
                    parent,
                    std::fs::Permissions::from_mode((mode | 0o300) & 0o7777),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_a_torn_one_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), Path::new("/t/a b\n")).unwrap();
        let ops = vec![
            Op::Meta {
                rel: vec![],
                mode: 0o40755,
                uid: 1,
                gid: 2,
                mtime: 1_700_000_000,
                mtime_nsec: 5,
            },
            Op::Move {
                rel: b"x/\xff".to_vec(),
                dev: 3,
                ino: 4,
            },
            Op::Exchange {
                rel: b"y".to_vec(),
                dev: 5,
                ino: 6,
            },
            Op::Aside {
                rel: b"z".to_vec(),
                n: 7,
                dev: 8,
                ino: 9,
            },
            Op::Commit,
        ];
        for op in &ops {
            j.log(op).unwrap();
        }
        drop(j);
        let (target, back) = read(dir.path()).unwrap().unwrap();
        assert_eq!(target, Path::new("/t/a b\n"));
        assert_eq!(back, ops);
        // A record cut short by a kill is not read.
        let path = dir.path().join(JOURNAL);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 2).unwrap();
        let (_, back) = read(dir.path()).unwrap().unwrap();
        assert_eq!(back, ops[..3]);
    }
}

//! Tree digests: a blake3 fingerprint of a directory tree as archived.
//!
//! The digest walks the include paths the way [`archive`](crate::archive)
//! does (no symlink is followed, excluded entries are left out with their
//! contents, children in bytewise name order) and covers, for each entry:
//! its name relative to the base directory, its kind (directory, regular
//! file, symlink), its permission bits (not for symlinks), its link target,
//! and for a regular file its size and the blake3 hash of its contents. Hard
//! links count as regular files; device nodes, FIFOs and sockets are left
//! out (extraction skips them). Modification times, owners and the order of
//! includes beyond their listing are not covered: the digest says "same
//! content", which is what skipping an upload needs.
//!
//! There are two ways to get one, and they agree (a test holds them to it):
//!
//! - [`tree_digest`] walks a tree on its own (with the archiver's walker,
//!   so both see the same entries in the same order), hashing file contents
//!   on several threads. It is what `restore --verify` runs on the restored
//!   tree and what `save --skip-unchanged` runs before deciding to upload.
//! - [`ArchiveOptions::digest`](crate::ArchiveOptions::digest) makes
//!   [`archive`](crate::archive) compute it in the same pass that reads the
//!   files, and append it to the archive as a *trailer*: a zstd skippable
//!   frame after the last data frame ([`TreeDigest::to_trailer`]). Every zstd
//!   decoder skips it (`zstd -dc`, `pzstd -d`), so the archive stays what
//!   `tar | zstd` would write; [`extract`](crate::extract) reports it in
//!   [`ExtractSummary::tree_digest`](crate::ExtractSummary::tree_digest), and
//!   a reader that only wants the digest reads the last [`TRAILER_LEN`]
//!   bytes ([`TreeDigest::from_trailer`]). A digest known only after the
//!   archive is written cannot go in an HTTP header sent before the body;
//!   the trailer costs no second pass over the files.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::{channel, sync_channel};
use std::sync::Mutex;

use rustix::fs::OFlags;

use crate::sys;
use crate::walk::{self, Item, Sink, Stop};
use crate::{Error, ExcludeSet, Result};

/// Files are read in chunks of this size.
const CHUNK: usize = 1 << 20;

/// blake3 key-derivation context of the tree digest; a change of the
/// definition needs a new context.
const CONTEXT: &str = "cachew-rs tree digest v1";

/// Magic number of the trailer's zstd skippable frame (the skippable range
/// is `0x184D2A50..=0x184D2A5F`; `pzstd` uses `…50` for its frame sizes).
pub const TRAILER_MAGIC: u32 = 0x184D_2A5E;
/// Tag that starts the trailer's payload, so another tool's skippable frame
/// with the same magic is not taken for a digest.
const TRAILER_TAG: &[u8; 16] = b"cachew-tree-v1\0\0";
/// Payload length of the trailer frame: the tag and the digest.
pub(crate) const TRAILER_PAYLOAD: usize = TRAILER_TAG.len() + 32;
/// Length of the whole trailer frame: magic, payload length, payload.
pub const TRAILER_LEN: usize = 8 + TRAILER_PAYLOAD;

/// The blake3 digest of a directory tree. Its text form is 64 lowercase
/// hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeDigest([u8; 32]);

impl TreeDigest {
    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The trailer frame that carries this digest at the end of an archive:
    /// a zstd skippable frame ([`TRAILER_MAGIC`]) holding a tag and the
    /// digest.
    pub fn to_trailer(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..4].copy_from_slice(&TRAILER_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&(TRAILER_PAYLOAD as u32).to_le_bytes());
        out[8..8 + TRAILER_TAG.len()].copy_from_slice(TRAILER_TAG);
        out[8 + TRAILER_TAG.len()..].copy_from_slice(&self.0);
        out
    }

    /// The payload of the trailer frame (what follows its 8-byte header).
    pub(crate) fn trailer_payload(&self) -> [u8; TRAILER_PAYLOAD] {
        let mut out = [0u8; TRAILER_PAYLOAD];
        out.copy_from_slice(&self.to_trailer()[8..]);
        out
    }

    /// Reads the digest from the end of an archive: `tail` is the last
    /// [`TRAILER_LEN`] bytes of the object, or more (only the last
    /// [`TRAILER_LEN`] count). `None` when they are not a digest trailer
    /// (an archive written without one, or by another tool).
    pub fn from_trailer(tail: &[u8]) -> Option<TreeDigest> {
        let tail = tail.get(tail.len().checked_sub(TRAILER_LEN)?..)?;
        if tail[..4] != TRAILER_MAGIC.to_le_bytes()
            || tail[4..8] != (TRAILER_PAYLOAD as u32).to_le_bytes()
        {
            return None;
        }
        TreeDigest::from_payload(TRAILER_MAGIC, &tail[8..])
    }

    /// The digest in a skippable frame's payload, if the frame is a trailer.
    pub(crate) fn from_payload(magic: u32, payload: &[u8]) -> Option<TreeDigest> {
        if magic != TRAILER_MAGIC || payload.len() != TRAILER_PAYLOAD {
            return None;
        }
        let (tag, digest) = payload.split_at(TRAILER_TAG.len());
        if tag != TRAILER_TAG {
            return None;
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(digest);
        Some(TreeDigest(out))
    }
}

impl fmt::Display for TreeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TreeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeDigest({self})")
    }
}

/// A tree digest's text form was not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tree digest {text:?}: want 64 hex digits")]
pub struct ParseDigestError {
    /// The text that was given.
    pub text: String,
}

impl FromStr for TreeDigest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<TreeDigest, ParseDigestError> {
        let s = s.trim();
        let bad = || ParseDigestError { text: s.to_owned() };
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            out[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(TreeDigest(out))
    }
}

/// What a tree digest covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DigestSummary {
    /// The digest.
    pub digest: TreeDigest,
    /// Entries covered (directories, files, symlinks).
    pub entries: u64,
    /// Regular files hashed.
    pub files: u64,
    /// Bytes of file contents hashed.
    pub bytes: u64,
}

/// Feeds entries, in walk order, into the digest. The one definition of
/// what an entry contributes, shared by [`tree_digest`] and the archiver.
pub(crate) struct DigestBuilder {
    hasher: blake3::Hasher,
    entries: u64,
    files: u64,
    bytes: u64,
}

impl DigestBuilder {
    pub(crate) fn new() -> DigestBuilder {
        DigestBuilder {
            hasher: blake3::Hasher::new_derive_key(CONTEXT),
            entries: 0,
            files: 0,
            bytes: 0,
        }
    }

    fn name(&mut self, name: &[u8]) {
        let name = normalize(name);
        self.hasher.update(&(name.len() as u64).to_le_bytes());
        self.hasher.update(name);
        self.entries += 1;
    }

    /// A directory; `name` as the archive stores it, without trailing slash.
    pub(crate) fn dir(&mut self, name: &[u8], mode: u32) {
        self.name(name);
        self.hasher.update(b"d");
        self.hasher.update(&(mode & 0o7777).to_le_bytes());
    }

    /// A regular file (or a hard link to one) and the blake3 hash of its
    /// contents.
    pub(crate) fn file(&mut self, name: &[u8], mode: u32, size: u64, hash: &[u8; 32]) {
        self.name(name);
        self.hasher.update(b"f");
        self.hasher.update(&(mode & 0o7777).to_le_bytes());
        self.hasher.update(&size.to_le_bytes());
        self.hasher.update(hash);
        self.files += 1;
        self.bytes += size;
    }

    /// A symlink and its target.
    pub(crate) fn symlink(&mut self, name: &[u8], target: &[u8]) {
        self.name(name);
        self.hasher.update(b"l");
        self.hasher.update(&(target.len() as u64).to_le_bytes());
        self.hasher.update(target);
    }

    pub(crate) fn finish(self) -> DigestSummary {
        DigestSummary {
            digest: TreeDigest(*self.hasher.finalize().as_bytes()),
            entries: self.entries,
            files: self.files,
            bytes: self.bytes,
        }
    }
}

/// The entry name relative to the base: `./a` → `a`, `.` → empty.
fn normalize(name: &[u8]) -> &[u8] {
    let mut n = name;
    while let Some(rest) = n.strip_prefix(b"./") {
        n = rest;
    }
    if n == b"." {
        n = b"";
    }
    n
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
}

struct Entry {
    name: Vec<u8>,
    kind: Kind,
    mode: u32,
    size: u64,
    /// Link target for a symlink.
    target: Vec<u8>,
    /// Content hash for a file, filled in by the workers.
    hash: Option<[u8; 32]>,
}

/// Computes the digest of `include_paths` under `base_dir`, leaving out
/// entries matched by `exclude_patterns` (GNU tar `--exclude` semantics),
/// hashing file contents on `threads` threads (0 = one per core).
///
/// Blocking: call it from `spawn_blocking` in async code. Errors if an
/// include path is missing or a file cannot be read.
pub fn tree_digest<P: AsRef<Path>, S: AsRef<str>>(
    base_dir: &Path,
    include_paths: &[P],
    exclude_patterns: &[S],
    threads: usize,
) -> Result<DigestSummary> {
    if include_paths.is_empty() {
        return Err(Error::NoIncludePaths);
    }
    let excludes = ExcludeSet::new(exclude_patterns);
    let threads = crate::resolve_threads(threads);
    let roots = walk::roots(base_dir, include_paths)?;

    let mut entries: Vec<Entry> = Vec::new();
    let (job_tx, job_rx) = sync_channel::<Vec<Job>>(64);
    let job_rx = Mutex::new(job_rx);
    let results = std::thread::scope(|s| -> Result<Vec<(usize, [u8; 32])>> {
        let (res_tx, res_rx) = channel::<Vec<(usize, Result<[u8; 32]>)>>();
        for _ in 0..threads {
            let res_tx = res_tx.clone();
            let job_rx = &job_rx;
            s.spawn(move || {
                // One buffer per worker: a fresh large allocation per file
                // would cost an mmap and page faults each time.
                let mut buf = vec![0u8; CHUNK];
                loop {
                    // The lock is held only while taking one batch.
                    let batch = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(batch)) = batch else {
                        return;
                    };
                    let results = batch
                        .into_iter()
                        .map(|(index, item)| (index, hash_item(&item, &mut buf)))
                        .collect::<Vec<_>>();
                    if res_tx.send(results).is_err() {
                        return;
                    }
                }
            });
        }
        drop(res_tx);
        let walked = {
            let mut sink = ToHashers {
                entries: &mut entries,
                jobs: job_tx,
                batch: Vec::new(),
                batch_bytes: 0,
                error: None,
            };
            // Regular files are `lstat`ed on this thread: their sizes
            // spread the hashing over the workers.
            let _ = walk::walk(roots, &excludes, true, &mut sink);
            sink.flush();
            match sink.error {
                Some(e) => Err(e),
                None => Ok(()),
            }
        };
        // The job sender is dropped with `sink`, so the workers finish.
        let mut hashes = Vec::new();
        let mut first_err = None;
        for (index, result) in res_rx.into_iter().flatten() {
            match result {
                Ok(h) => hashes.push((index, h)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        walked?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(hashes),
        }
    })?;
    for (index, hash) in results {
        entries[index].hash = Some(hash);
    }

    let mut builder = DigestBuilder::new();
    for e in &entries {
        match e.kind {
            Kind::Dir => builder.dir(&e.name, e.mode),
            Kind::File => {
                let hash = e
                    .hash
                    .ok_or_else(|| Error::Panicked("tree digest: a file was not hashed".into()))?;
                builder.file(&e.name, e.mode, e.size, &hash);
            }
            Kind::Symlink => builder.symlink(&e.name, &e.target),
        }
    }
    Ok(builder.finish())
}

/// Takes the walk's entries: records them in order and hands regular files
/// to the hashing workers in batches.
struct ToHashers<'a> {
    entries: &'a mut Vec<Entry>,
    jobs: std::sync::mpsc::SyncSender<Vec<Job>>,
    batch: Vec<Job>,
    batch_bytes: u64,
    /// The error that ended the walk.
    error: Option<Error>,
}

/// A file to hash: its entry index and where it is (its size known).
type Job = (usize, Item);

/// Files per batch handed to a worker: one hand-over per file meant a
/// futex wake-up per file (tens of thousands for a source tree).
const BATCH_FILES: usize = 64;
/// Bytes per batch, so big files still spread over the workers.
const BATCH_BYTES: u64 = 4 << 20;

impl Sink for ToHashers<'_> {
    fn send(&mut self, item: Result<Item>) -> Result<(), Stop> {
        match item.and_then(|item| self.take(item)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.error = Some(e);
                Err(Stop)
            }
        }
    }
}

impl ToHashers<'_> {
    fn flush(&mut self) {
        if !self.batch.is_empty() {
            self.batch_bytes = 0;
            // A closed channel means a worker died; the result loop reports it.
            let _ = self.jobs.send(std::mem::take(&mut self.batch));
        }
    }

    fn take(&mut self, item: Item) -> Result<()> {
        let kind = match item.kind {
            walk::Kind::Dir => Kind::Dir,
            walk::Kind::File => Kind::File,
            walk::Kind::Symlink => Kind::Symlink,
            // Device nodes and FIFOs are not covered (extraction skips them).
            walk::Kind::Char | walk::Kind::Block | walk::Kind::Fifo => return Ok(()),
        };
        let meta = item.meta;
        let index = self.entries.len();
        match kind {
            Kind::File => {
                self.entries.push(Entry {
                    name: item.name.clone(),
                    kind,
                    mode: meta.mode,
                    size: meta.size,
                    target: Vec::new(),
                    hash: None,
                });
                self.batch.push((index, item));
                self.batch_bytes += meta.size;
                if self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
                    self.flush();
                }
            }
            Kind::Dir | Kind::Symlink => {
                let target = if kind == Kind::Symlink {
                    item.at(sys::readlink_at)
                        .map_err(|e| Error::io("read link", item.path(), e))?
                } else {
                    Vec::new()
                };
                self.entries.push(Entry {
                    name: item.name,
                    kind,
                    mode: meta.mode,
                    size: 0,
                    target,
                    hash: None,
                });
            }
        }
        Ok(())
    }
}

/// blake3 of the contents of the regular file the walker found as `item`,
/// which must be as long as its `lstat` said, read through `buf`.
fn hash_item(item: &Item, buf: &mut [u8]) -> Result<[u8; 32]> {
    let size = item.meta.size;
    if size == 0 {
        // Three system calls saved per empty file (`__init__.py`, `.keep`…).
        return Ok(*blake3::hash(b"").as_bytes());
    }
    // Opened relative to its directory; O_NONBLOCK: should it have become
    // a FIFO, do not wait for a writer.
    let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let file = item
        .at(|dir, name| sys::open_at(dir, name, flags))
        .map_err(|e| Error::io("open", item.path(), e))?;
    hash_contents(File::from(file), size, buf, || item.path())
}

/// blake3 of the contents of the file at `path`, which must be `size`
/// bytes long, read through `buf`.
pub(crate) fn hash_file(path: &Path, size: u64, buf: &mut [u8]) -> Result<[u8; 32]> {
    if size == 0 {
        // Three system calls saved per empty file (`__init__.py`, `.keep`…).
        return Ok(*blake3::hash(b"").as_bytes());
    }
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    hash_contents(file, size, buf, || path.to_path_buf())
}

/// blake3 of what `file` holds, which must be `size` bytes, read through
/// `buf`; `path` names it in errors.
fn hash_contents(
    mut file: File,
    size: u64,
    buf: &mut [u8],
    path: impl Fn() -> PathBuf,
) -> Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", path(), e)),
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        // The size from the walk is known: skip the extra read that would
        // only report end of file (one syscall per file saved).
        if total >= size && n < buf.len() {
            break;
        }
    }
    if total != size {
        return Err(Error::FileChanged {
            path: path(),
            expected: size,
            actual: total,
        });
    }
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("src/sub")).unwrap();
        fs::create_dir_all(p.join("target/debug")).unwrap();
        fs::write(p.join("src/a.rs"), "fn main() {}\n").unwrap();
        fs::write(p.join("src/sub/b.o"), vec![7u8; 3 * CHUNK + 5]).unwrap();
        fs::write(p.join("target/debug/x"), "x").unwrap();
        symlink("src/a.rs", p.join("link")).unwrap();
        dir
    }

    fn digest(dir: &Path, excludes: &[&str]) -> DigestSummary {
        tree_digest(dir, &["."], excludes, 2).unwrap()
    }

    #[test]
    fn stable_and_thread_count_independent() {
        let dir = tree();
        let a = digest(dir.path(), &[]);
        let b = tree_digest(dir.path(), &["."], &[] as &[&str], 1).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.files, 3);
        assert_eq!(a.entries, 9);
        assert_eq!(
            a.digest.to_string().parse::<TreeDigest>().unwrap(),
            a.digest
        );
    }

    #[test]
    fn every_covered_property_changes_the_digest() {
        let dir = tree();
        let p = dir.path();
        let mut seen = vec![digest(p, &[]).digest];
        let mut check = |what: &str| {
            let d = digest(p, &[]).digest;
            assert!(!seen.contains(&d), "{what} did not change the digest");
            seen.push(d);
        };
        fs::write(p.join("src/a.rs"), "fn main() { }\n").unwrap();
        check("contents");
        fs::set_permissions(p.join("src/a.rs"), fs::Permissions::from_mode(0o600)).unwrap();
        check("file mode");
        fs::set_permissions(p.join("src/sub"), fs::Permissions::from_mode(0o700)).unwrap();
        check("directory mode");
        fs::remove_file(p.join("link")).unwrap();
        symlink("src/sub", p.join("link")).unwrap();
        check("link target");
        fs::rename(p.join("target/debug/x"), p.join("target/debug/y")).unwrap();
        check("name");
        fs::remove_file(p.join("link")).unwrap();
        fs::write(p.join("link"), "src/sub").unwrap();
        check("kind");
    }

    #[test]
    fn mtimes_do_not_matter() {
        let dir = tree();
        let before = digest(dir.path(), &[]);
        let f = File::options()
            .write(true)
            .open(dir.path().join("src/a.rs"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(digest(dir.path(), &[]), before);
    }

    #[test]
    fn excludes_follow_tar_semantics() {
        let dir = tree();
        let all = digest(dir.path(), &[]);
        let no_target = digest(dir.path(), &["target"]);
        assert_ne!(all.digest, no_target.digest);
        assert_eq!(no_target.files, 2);
        // Changing an excluded file does not change the digest.
        fs::write(dir.path().join("target/debug/x"), "changed").unwrap();
        assert_eq!(digest(dir.path(), &["target"]), no_target);
        let no_objects = digest(dir.path(), &["*.o"]);
        assert_eq!(no_objects.files, 2);
    }

    #[test]
    fn missing_include_is_an_error() {
        let dir = tree();
        let err = tree_digest(dir.path(), &["nope"], &[] as &[&str], 2).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(tree_digest(dir.path(), &[] as &[&str], &[] as &[&str], 2).is_err());
    }

    #[test]
    fn trailer_round_trips_and_rejects_other_frames() {
        let d = digest(tree().path(), &[]).digest;
        let t = d.to_trailer();
        assert_eq!(TreeDigest::from_trailer(&t), Some(d));
        // Only the last TRAILER_LEN bytes count.
        let mut longer = b"zstd frames before".to_vec();
        longer.extend_from_slice(&t);
        assert_eq!(TreeDigest::from_trailer(&longer), Some(d));
        assert_eq!(TreeDigest::from_trailer(&t[1..]), None);
        for i in [0, 5, 8, 20] {
            let mut bad = t;
            bad[i] ^= 1;
            assert_eq!(TreeDigest::from_trailer(&bad), None, "byte {i} flipped");
        }
        assert_eq!(
            TreeDigest::from_payload(TRAILER_MAGIC, &d.trailer_payload()),
            Some(d)
        );
        assert_eq!(
            TreeDigest::from_payload(0x184D_2A50, &d.trailer_payload()),
            None
        );
    }

    #[test]
    fn bad_digest_text_is_refused() {
        assert!("zz".parse::<TreeDigest>().is_err());
        let e = "g".repeat(64).parse::<TreeDigest>().unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
    }
}

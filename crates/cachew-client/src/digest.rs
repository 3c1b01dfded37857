//! Tree digests: a blake3 fingerprint of a directory tree, as saved.
//!
//! [`save`](crate::save()) stores the digest of what it archived in the
//! [`TREE_DIGEST`](cachew_proto::header::TREE_DIGEST) header, together with
//! the include paths and exclude patterns it used ([`TREE_PATHS`],
//! [`TREE_EXCLUDES`]). That powers two checks: `save --skip-unchanged`
//! (same digest as the stored object → no upload) and `restore --verify`
//! (the restored tree must have the stored digest).
//!
//! The digest walks the include paths the way the archiver does (no symlink
//! is followed, excluded entries are left out with their contents, children
//! in bytewise name order) and covers, for each entry: its name relative to
//! the base directory, its kind (directory, regular file, symlink), its
//! permission bits (not for symlinks), its link target, and for a regular
//! file its size and the blake3 hash of its contents. Hard links count as
//! regular files; device nodes, FIFOs and sockets are left out (extraction
//! skips them). Modification times, owners and the order of includes
//! beyond their listing are not covered: the digest says "same content",
//! which is what skipping an upload needs.
//!
//! File contents are hashed in parallel on `threads` threads while the
//! walk goes on.

use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::{channel, sync_channel};
use std::sync::Mutex;

use cachew_archive::ExcludeSet;

use crate::{Error, Result};

pub use cachew_proto::header::{TREE_EXCLUDES, TREE_PATHS};

/// Files up to this size are read whole; larger ones in chunks of this size.
const CHUNK: usize = 1 << 20;

/// The blake3 digest of a directory tree. Its text form (as stored in the
/// header) is 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeDigest([u8; 32]);

impl TreeDigest {
    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
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

impl FromStr for TreeDigest {
    type Err = Error;

    fn from_str(s: &str) -> Result<TreeDigest> {
        let s = s.trim();
        let bad = || Error::InvalidInput(format!("invalid tree digest {s:?}: want 64 hex digits"));
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
        return Err(Error::InvalidInput(
            "no include paths given: at least one path is required".into(),
        ));
    }
    let excludes = ExcludeSet::new(exclude_patterns);
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let mut roots = Vec::new();
    for inc in include_paths {
        let inc = inc.as_ref();
        let path = base_dir.join(inc);
        let meta = fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        let mut name = inc.as_os_str().as_bytes().to_vec();
        while name.len() > 1 && name.ends_with(b"/") {
            name.pop();
        }
        name.dedup_by(|a, b| *a == b'/' && *b == b'/');
        roots.push((name, path, meta));
    }

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
                        .map(|(index, path, size)| (index, hash_file(&path, size, &mut buf)))
                        .collect::<Vec<_>>();
                    if res_tx.send(results).is_err() {
                        return;
                    }
                }
            });
        }
        drop(res_tx);
        let walked = {
            let mut walk = Walk {
                excludes: &excludes,
                entries: &mut entries,
                jobs: job_tx,
                batch: Vec::new(),
                batch_bytes: 0,
            };
            let walked = roots
                .into_iter()
                .try_for_each(|(name, path, meta)| walk.visit(name, &path, meta));
            walk.flush();
            walked
        };
        // The job sender is dropped with `walk`, so the workers finish.
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

    let mut hasher = blake3::Hasher::new_derive_key("cachew-rs tree digest v1");
    let (mut files, mut bytes) = (0u64, 0u64);
    for e in &entries {
        hasher.update(&(e.name.len() as u64).to_le_bytes());
        hasher.update(&e.name);
        match e.kind {
            Kind::Dir => {
                hasher.update(b"d");
                hasher.update(&e.mode.to_le_bytes());
            }
            Kind::File => {
                hasher.update(b"f");
                hasher.update(&e.mode.to_le_bytes());
                hasher.update(&e.size.to_le_bytes());
                let hash = e.hash.ok_or_else(|| {
                    Error::Backend("tree digest: a file was not hashed".to_owned())
                })?;
                hasher.update(&hash);
                files += 1;
                bytes += e.size;
            }
            Kind::Symlink => {
                hasher.update(b"l");
                hasher.update(&(e.target.len() as u64).to_le_bytes());
                hasher.update(&e.target);
            }
        }
    }
    Ok(DigestSummary {
        digest: TreeDigest(*hasher.finalize().as_bytes()),
        entries: entries.len() as u64,
        files,
        bytes,
    })
}

struct Walk<'a> {
    excludes: &'a ExcludeSet,
    entries: &'a mut Vec<Entry>,
    jobs: std::sync::mpsc::SyncSender<Vec<Job>>,
    batch: Vec<Job>,
    batch_bytes: u64,
}

/// A file to hash: its entry index, path and size.
type Job = (usize, PathBuf, u64);

/// Files per batch handed to a worker: one hand-over per file meant a
/// futex wake-up per file (tens of thousands for a source tree).
const BATCH_FILES: usize = 64;
/// Bytes per batch, so big files still spread over the workers.
const BATCH_BYTES: u64 = 4 << 20;

impl Walk<'_> {
    fn flush(&mut self) {
        if !self.batch.is_empty() {
            self.batch_bytes = 0;
            // A closed channel means a worker died; the result loop reports it.
            let _ = self.jobs.send(std::mem::take(&mut self.batch));
        }
    }

    fn visit(&mut self, name: Vec<u8>, path: &Path, meta: Metadata) -> Result<()> {
        if self.excludes.is_excluded(&name) {
            return Ok(());
        }
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            return Ok(());
        };
        let target = if kind == Kind::Symlink {
            fs::read_link(path)
                .map_err(|e| Error::io("read link", path, e))?
                .as_os_str()
                .as_bytes()
                .to_vec()
        } else {
            Vec::new()
        };
        let index = self.entries.len();
        self.entries.push(Entry {
            name: normalize(&name),
            kind,
            mode: meta.mode() & 0o7777,
            size: if kind == Kind::File { meta.len() } else { 0 },
            target,
            hash: None,
        });
        if kind == Kind::File {
            // A closed channel means a worker died; the result loop reports it.
            self.batch.push((index, path.to_path_buf(), meta.len()));
            self.batch_bytes += meta.len();
            if self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
                self.flush();
            }
            return Ok(());
        }
        if kind != Kind::Dir {
            return Ok(());
        }
        let rd = fs::read_dir(path).map_err(|e| Error::io("read directory", path, e))?;
        let mut children = Vec::new();
        for ent in rd {
            children.push(ent.map_err(|e| Error::io("read directory", path, e))?);
        }
        children.sort_unstable_by_key(|a| a.file_name());
        for ent in children {
            let child_path = ent.path();
            let meta = match ent.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("stat", &child_path, e)),
            };
            let mut child = name.clone();
            if !child.ends_with(b"/") {
                child.push(b'/');
            }
            child.extend_from_slice(ent.file_name().as_bytes());
            self.visit(child, &child_path, meta)?;
        }
        Ok(())
    }
}

/// The entry name relative to the base: `./a` → `a`, `.` → empty.
fn normalize(name: &[u8]) -> Vec<u8> {
    let mut n = name;
    while let Some(rest) = n.strip_prefix(b"./") {
        n = rest;
    }
    if n == b"." {
        n = b"";
    }
    n.to_vec()
}

fn hash_file(path: &Path, size: u64, buf: &mut [u8]) -> Result<[u8; 32]> {
    if size == 0 {
        // Three system calls saved per empty file (`__init__.py`, `.keep`…).
        return Ok(*blake3::hash(b"").as_bytes());
    }
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", path, e)),
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        // The size from the walk is known: skip the extra read that would
        // only report end of file (one syscall per file saved). A file
        // that grew since is hashed as it was when walked plus what was
        // read, and the archive (which checks sizes) reports the change.
        if total >= size && n < buf.len() {
            break;
        }
    }
    if total != size {
        return Err(Error::Backend(format!(
            "{} changed while being hashed: expected {size} bytes, read {total}",
            path.display()
        )));
    }
    Ok(*hasher.finalize().as_bytes())
}

/// Encodes a list of paths or patterns for [`TREE_PATHS`] and
/// [`TREE_EXCLUDES`]: bytes outside `[A-Za-z0-9._/*?-]` become `%XX`,
/// items are separated by single spaces.
pub fn encode_list<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
{
    let mut out = String::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        for &b in item.as_ref() {
            if b.is_ascii_alphanumeric() || b"._/*?-".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Decodes [`encode_list`]'s output.
pub fn decode_list(text: &str) -> Result<Vec<Vec<u8>>> {
    let bad = || Error::InvalidInput(format!("malformed path list header {text:?}"));
    let mut items = Vec::new();
    for part in text.split(' ').filter(|p| !p.is_empty()) {
        let mut out = Vec::with_capacity(part.len());
        let bytes = part.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        items.push(out);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn list_encoding_round_trips() {
        let items: Vec<&[u8]> = vec![b".", b"a b/%c", b"\xff*.o", b"src/x"];
        let text = encode_list(&items);
        assert!(!text.contains("  "));
        assert_eq!(text, ". a%20b/%25c %FF*.o src/x");
        let back = decode_list(&text).unwrap();
        assert_eq!(back, items.iter().map(|i| i.to_vec()).collect::<Vec<_>>());
        assert!(decode_list("a%2").is_err());
        assert!("zz".parse::<TreeDigest>().is_err());
    }
}

//! The async entry points: round trip, error propagation both ways, and
//! prompt cancellation without deadlock.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cachew_archive::{archive_async, extract_async, ArchiveOptions, Error, ExtractOptions};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

fn tree(root: &Path, files: usize, size: usize) {
    for i in 0..files {
        let d = root.join(format!("d{}", i % 10));
        fs::create_dir_all(&d).unwrap();
        // Incompressible, so the compressed stream is as long as the data.
        let mut x = i as u64 + 1;
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        fs::write(d.join(format!("f{i}")), data).unwrap();
    }
}

/// Accepts `limit` bytes, then fails every write.
struct FailingWriter {
    limit: usize,
    written: usize,
}

impl AsyncWrite for FailingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.written >= self.limit {
            return Poll::Ready(Err(io::Error::other("upload failed")));
        }
        self.written += buf.len();
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Never accepts anything.
struct StuckWriter;

impl AsyncWrite for StuckWriter {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Pending
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

/// Yields `data`, then an error (or pends forever).
struct Source {
    data: Vec<u8>,
    pos: usize,
    then_fail: bool,
}

impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.data.len() {
            let n = buf.remaining().min(self.data.len() - self.pos).min(1000);
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        if self.then_fail {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "download failed",
            )))
        } else {
            Poll::Pending
        }
    }
}

/// Endless random-looking bytes: not a valid archive.
struct Garbage(u64);

impl AsyncRead for Garbage {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while buf.remaining() > 0 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
            buf.put_slice(&[(self.0 >> 56) as u8]);
        }
        Poll::Ready(Ok(()))
    }
}

async fn make_archive(src: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    archive_async(
        &mut out,
        src.to_path_buf(),
        vec![PathBuf::from(".")],
        vec![],
        ArchiveOptions::default(),
    )
    .await
    .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, 200, 3000);
    fs::write(src.join("excluded.o"), b"x").unwrap();
    let mut out = Vec::new();
    let s = archive_async(
        &mut out,
        src.clone(),
        vec![PathBuf::from(".")],
        vec!["*.o".into()],
        ArchiveOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(s.compressed_bytes, out.len() as u64);
    assert_eq!(s.entries, 1 + 10 + 200);
    let dst = dir.path().join("dst");
    let e = extract_async(out.as_slice(), dst.clone(), ExtractOptions::default())
        .await
        .unwrap();
    assert_eq!(e.files, 200);
    assert_eq!(
        fs::read(dst.join("d3/f13")).unwrap(),
        fs::read(src.join("d3/f13")).unwrap()
    );
    assert!(!dst.join("excluded.o").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_error_stops_the_archiver() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), 300, 20_000);
    let w = FailingWriter {
        limit: 1,
        written: 0,
    };
    let started = Instant::now();
    let r = archive_async(
        w,
        dir.path().to_path_buf(),
        vec![".".into()],
        vec![],
        ArchiveOptions::default(),
    )
    .await;
    match r {
        Err(Error::Write(e)) => assert_eq!(e.to_string(), "upload failed"),
        other => panic!("expected the write error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiver_error_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let r = archive_async(
        Vec::new(),
        dir.path().to_path_buf(),
        vec!["missing".into()],
        vec![],
        ArchiveOptions::default(),
    )
    .await;
    assert!(matches!(r, Err(Error::IncludeNotFound { .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_error_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, 50, 5000);
    let data = make_archive(&src).await;
    let half = data[..data.len() / 2].to_vec();
    let r = extract_async(
        Source {
            data: half,
            pos: 0,
            then_fail: true,
        },
        dir.path().join("dst"),
        ExtractOptions::default(),
    )
    .await;
    match r {
        Err(Error::Read(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected the read error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extractor_error_stops_reading() {
    let dir = tempfile::tempdir().unwrap();
    // The reader never ends; only the extractor failing can end this.
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        extract_async(
            Garbage(1),
            dir.path().join("dst"),
            ExtractOptions::default(),
        ),
    )
    .await
    .expect("extract_async must not hang when the extractor fails");
    assert!(matches!(r, Err(Error::Read(_))), "{r:?}");
}

#[test]
fn dropping_the_futures_stops_the_blocking_work() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, 400, 50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = rt.block_on(make_archive(&src));
    rt.block_on(async {
        // The writer never accepts anything, so the archiver fills its channel and waits.
        let fut = archive_async(
            StuckWriter,
            src.clone(),
            vec![".".into()],
            vec![],
            ArchiveOptions::default(),
        );
        assert!(tokio::time::timeout(Duration::from_millis(300), fut)
            .await
            .is_err());
        // The reader stalls half way, so the extractor waits for more.
        let fut = extract_async(
            Source {
                data: data[..data.len() / 2].to_vec(),
                pos: 0,
                then_fail: false,
            },
            dir.path().join("dst"),
            ExtractOptions::default(),
        );
        assert!(tokio::time::timeout(Duration::from_millis(300), fut)
            .await
            .is_err());
    });
    // Dropping a runtime waits for its blocking tasks: this returns only if
    // both blocking tasks noticed that their futures were dropped.
    let started = Instant::now();
    drop(rt);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "blocking work kept running"
    );
}

//! A per-connection bandwidth limit for what the server sends, for
//! benchmarks and tests (`ServerBuilder::rate_limit_per_connection`): it
//! makes loopback behave like a network where each TCP connection is slow,
//! the case parallel ranged downloads are for.
//!
//! A token bucket on the connection's write side: `rate` bytes per second,
//! with a burst of 1/20 s worth (at least 16 KiB). Reads are not limited.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream whose writes are limited to `rate` bytes per second, or passed
/// through unchanged without a rate.
pub(crate) struct Throttled<S> {
    inner: S,
    bucket: Option<Bucket>,
}

struct Bucket {
    rate: u64,
    burst: u64,
    tokens: f64,
    last: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> Throttled<S> {
    /// Wraps `inner`; `None` means no limit.
    pub(crate) fn new(inner: S, rate: Option<u64>) -> Self {
        let bucket = rate.filter(|r| *r > 0).map(|rate| {
            let burst = (rate / 20).max(16 << 10);
            Bucket {
                rate,
                burst,
                tokens: burst as f64,
                last: Instant::now(),
                sleep: None,
            }
        });
        Throttled { inner, bucket }
    }
}

impl Bucket {
    /// Bytes that may be written now; registers a wake-up when none.
    fn available(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(self.last).as_secs_f64();
            self.last = now;
            self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst as f64);
            if self.tokens >= 1.0 {
                self.sleep = None;
                return Poll::Ready(self.tokens as usize);
            }
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.rate as f64)
                .max(Duration::from_millis(1));
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Throttled<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Throttled<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(bucket) = this.bucket.as_mut() else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        let allowed = std::task::ready!(bucket.available(cx));
        let n = buf.len().min(allowed);
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..n]))?;
        bucket.tokens -= written as f64;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_are_limited_to_the_rate() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut limited = Throttled::new(a, Some(1 << 20));
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            b.read_to_end(&mut sink).await.unwrap();
            sink.len()
        });
        let started = std::time::Instant::now();
        // 256 KiB at 1 MiB/s: about 0.2 s after the 52 KiB burst.
        limited.write_all(&vec![7u8; 256 << 10]).await.unwrap();
        limited.shutdown().await.unwrap();
        drop(limited);
        assert_eq!(reader.await.unwrap(), 256 << 10);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(150), "{took:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }

    #[tokio::test]
    async fn without_a_rate_nothing_is_limited() {
        let (a, mut b) = tokio::io::duplex(8 << 20);
        let mut plain = Throttled::new(a, None);
        let started = std::time::Instant::now();
        plain.write_all(&vec![1u8; 4 << 20]).await.unwrap();
        drop(plain);
        let mut sink = Vec::new();
        b.read_to_end(&mut sink).await.unwrap();
        assert_eq!(sink.len(), 4 << 20);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}

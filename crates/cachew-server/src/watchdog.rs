//! Per-connection timers: the header timeout and the idle keep-alive
//! timeout, enforced by watching the connection's bytes and its requests.
//!
//! A connection is in one of three phases, like Go's `http.Server`:
//! - *header*: from the connection's start, or from the first byte after
//!   an idle wait, until a request's headers are parsed; limited by
//!   [`Limits::header_timeout`](crate::Limits). This catches sockets that
//!   send nothing and headers dribbled a byte at a time.
//! - *busy*: a request is being served, until its response body is done.
//!   Only a send stall is timed: a handler may legitimately work for
//!   minutes, and a stalled upload has its own timeout (`request_body.rs`),
//!   but a client that stops reading a download while the server has
//!   bytes to send is cut off after [`Limits::body_timeout`](crate::Limits)
//!   without progress.
//! - *idle*: between requests with nothing received; limited by
//!   [`Limits::idle_timeout`](crate::Limits).
//!
//! The timers live here rather than in hyper because hyper's header timer
//! also runs while a keep-alive connection is idle, which would make the
//! two timeouts one. HTTP/2 multiplexes requests and sends pings, so once a
//! connection is known to speak it only the idle timer applies to it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Busy,
    Idle,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    since: Instant,
    in_flight: usize,
    http2: bool,
    /// Since when a write has been waiting for the client to read.
    send_blocked: Option<Instant>,
}

/// The timeouts the watchdog enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
    pub(crate) send: Duration,
}

/// What a connection's stream, service and watchdog share.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    state: Arc<Mutex<State>>,
    /// Wakes the watchdog when a header phase starts after an idle wait,
    /// the one change that brings a deadline forward.
    woken: Arc<Notify>,
}

/// Why the watchdog ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// The headers did not arrive in time: cut the connection.
    Header,
    /// Idle for too long: close it gracefully.
    Idle,
    /// The client stopped reading a response: cut the connection.
    Send,
}

/// A request in progress; dropping it (when its response body is done)
/// lets the connection go idle.
#[derive(Debug)]
pub(crate) struct Busy {
    activity: Activity,
}

impl Activity {
    /// A new connection, in its header phase.
    pub(crate) fn new() -> Activity {
        Activity {
            state: Arc::new(Mutex::new(State {
                phase: Phase::Header,
                since: Instant::now(),
                in_flight: 0,
                http2: false,
                send_blocked: None,
            })),
            woken: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the connection as HTTP/2 (from ALPN or a request's version).
    pub(crate) fn set_http2(&self) {
        self.lock().http2 = true;
    }

    /// A request's headers were parsed and its handler starts.
    pub(crate) fn request(&self) -> Busy {
        let mut s = self.lock();
        s.in_flight += 1;
        s.phase = Phase::Busy;
        Busy {
            activity: self.clone(),
        }
    }

    fn received(&self) {
        let mut s = self.lock();
        if s.phase == Phase::Idle && !s.http2 {
            s.phase = Phase::Header;
            s.since = Instant::now();
            self.woken.notify_one();
        }
    }

    fn send_blocked(&self, blocked: bool) {
        let mut s = self.lock();
        match (blocked, s.send_blocked) {
            (true, None) => s.send_blocked = Some(Instant::now()),
            (false, Some(_)) => s.send_blocked = None,
            _ => {}
        }
    }

    /// Which timer has run out at `now`, if any, and when to look again.
    fn check(&self, now: Instant, t: &Timeouts) -> Result<Instant, Expired> {
        let s = self.lock();
        let (deadline, expired) = match (s.phase, s.send_blocked) {
            (Phase::Header, _) => (s.since + t.header, Expired::Header),
            (Phase::Idle, _) => (s.since + t.idle, Expired::Idle),
            (Phase::Busy, Some(blocked)) => (blocked + t.send, Expired::Send),
            // Nothing to time; look again in a while, since a write may
            // block meanwhile (phase changes to idle wake nobody, but
            // only move deadlines later).
            (Phase::Busy, None) => return Ok(now + t.send.min(t.header)),
        };
        if now >= deadline {
            Err(expired)
        } else {
            Ok(deadline)
        }
    }

    /// Resolves when the connection's header or idle timer runs out.
    pub(crate) async fn expired(&self, timeouts: Timeouts) -> Expired {
        loop {
            match self.check(Instant::now(), &timeouts) {
                Err(expired) => return expired,
                // Other phase changes only move the deadline later, so
                // waking at the old one and looking again is enough.
                Ok(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.woken.notified() => {}
                    }
                }
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.activity.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.phase = Phase::Idle;
            s.since = Instant::now();
        }
    }
}

/// A stream that reports received bytes to its connection's [`Activity`].
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, activity: Activity) -> Watched<S> {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.send_blocked(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.send_blocked(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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

    const H: Duration = Duration::from_secs(10);
    const I: Duration = Duration::from_secs(120);
    const T: Timeouts = Timeouts {
        header: H,
        idle: I,
        send: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn phases_and_deadlines() {
        let a = Activity::new();
        let t0 = Instant::now();
        assert_eq!(a.check(t0 + H, &T), Err(Expired::Header));
        let busy = a.request();
        assert!(a.check(t0 + H * 100, &T).is_ok(), "busy never expires");
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(busy);
        let t1 = Instant::now();
        assert!(a.check(t1 + H, &T).is_ok(), "idle uses the idle timeout");
        assert_eq!(a.check(t1 + I, &T), Err(Expired::Idle));
        tokio::time::advance(Duration::from_secs(30)).await;
        a.received();
        let t2 = Instant::now();
        assert_eq!(
            a.check(t2 + H, &T),
            Err(Expired::Header),
            "first byte starts the header timer"
        );
        let _b = a.request();
        a.set_http2();
        drop(_b);
        a.received();
        assert!(
            a.check(Instant::now() + H, &T).is_ok(),
            "HTTP/2 pings do not start it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_send_expires_only_while_it_stays_blocked() {
        let a = Activity::new();
        let _busy = a.request();
        a.send_blocked(true);
        tokio::time::advance(Duration::from_secs(30)).await;
        a.send_blocked(true);
        assert!(a.check(Instant::now(), &T).is_ok());
        a.send_blocked(false);
        a.send_blocked(true);
        let t = Instant::now();
        assert!(
            a.check(t + Duration::from_secs(59), &T).is_ok(),
            "progress restarts it"
        );
        assert_eq!(a.check(t + T.send, &T), Err(Expired::Send));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_waits_for_the_deadline() {
        let a = Activity::new();
        let t0 = Instant::now();
        assert_eq!(a.expired(T).await, Expired::Header);
        assert_eq!(t0.elapsed(), H);
        drop(a.request());
        let idle = Instant::now();
        let watch = tokio::spawn({
            let a = a.clone();
            async move { a.expired(T).await }
        });
        tokio::time::advance(Duration::from_secs(30)).await;
        a.received();
        assert_eq!(watch.await.unwrap(), Expired::Header);
        assert_eq!(
            idle.elapsed(),
            Duration::from_secs(30) + H,
            "woken, not at the idle deadline"
        );
    }
}

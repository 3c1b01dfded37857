//! Git's smart HTTP protocol, fetch side only, over the mirrors the `/git/`
//! endpoints hold (`git.rs`), so `git clone` and `git fetch` against
//! `{base}/git/{host}/{path}` work and a CI job can freshen a restored
//! clone from the cache instead of the forge.
//!
//! - `GET …/info/refs?service=git-upload-pack`: freshens the mirror (clone
//!   if needed, then `git fetch`, under the repository's lock as a snapshot
//!   request does), then answers `git upload-pack --stateless-rpc
//!   --advertise-refs` (`application/x-git-upload-pack-advertisement`).
//!   Protocol v0/v1 answers start with the `# service=git-upload-pack`
//!   packet and a flush; a v2 answer (`Git-Protocol: version=2`) is the
//!   capability advertisement alone, as `git http-backend` answers.
//! - `POST …/git-upload-pack`: `git upload-pack --stateless-rpc` with the
//!   request body streamed to its standard input
//!   (`application/x-git-upload-pack-result`). A `Content-Encoding: gzip`
//!   body is inflated on the way: git compresses every request over 1 KiB
//!   that fits its post buffer and does not retry uncompressed after a
//!   `415`, so refusing gzip would break any real negotiation.
//! - `git-receive-pack` (push), by either path: `403`.
//!
//! The `Git-Protocol` request header is passed to git as `GIT_PROTOCOL`.
//! The child's output is streamed back as it comes (never buffered whole),
//! with `Cache-Control: no-cache`; a child that fails makes the response
//! fail rather than end cleanly, and a child whose request is over (the
//! response was dropped: sent, or the client went away) is killed. Request
//! bodies keep the server's stall and size limits, and their inflated size
//! is capped at [`MAX_REQUEST`].

use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::process::Stdio;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_ENCODING, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::oneshot;

use crate::body::ResponseBody;
use crate::git::{not_allowed, Failure, GitState, Repo};
use crate::handler::text;
use crate::request_body::{BodyError, RequestBody};

type Resp = Response<ResponseBody>;

/// Largest upload-pack request accepted, after inflating: a negotiation is
/// want and have lines of ~50 bytes each, so this is a million haves.
pub(crate) const MAX_REQUEST: u64 = 64 << 20;

/// How much of a gzip body is inflated at a time: deflate expands at most
/// ~1032:1, so one step makes at most ~4 MiB.
const INFLATE_STEP: usize = 4 << 10;

/// How much of git's standard error is kept for the log and error answers.
const MAX_STDERR: u64 = 8 << 10;

/// The first packets of a v0/v1 `info/refs` answer.
const SERVICE_HEADER: &[u8] = b"001e# service=git-upload-pack\n0000";

/// A smart HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// `…/info/refs`.
    InfoRefs,
    /// `…/git-upload-pack`.
    UploadPack,
    /// `…/git-receive-pack`.
    ReceivePack,
}

/// Splits a path under `/git/` into the repository and the smart HTTP
/// service, or `None` for the other git endpoints.
pub(crate) fn split(rest: &str) -> Option<(&str, Service)> {
    [
        ("/info/refs", Service::InfoRefs),
        ("/git-upload-pack", Service::UploadPack),
        ("/git-receive-pack", Service::ReceivePack),
    ]
    .into_iter()
    .find_map(|(suffix, service)| rest.strip_suffix(suffix).map(|name| (name, service)))
}

/// Serves a smart HTTP request for repository `name` (`{host}/{path}`,
/// with or without `.git`).
pub(crate) async fn handle(
    state: &GitState,
    name: &str,
    service: Service,
    req: Request<RequestBody>,
) -> Resp {
    let pushing = || {
        text(
            StatusCode::FORBIDDEN,
            "pushing is not served: this is a read-only cache of the upstream",
        )
    };
    match service {
        Service::ReceivePack => return pushing(),
        Service::InfoRefs if req.method() != Method::GET => return not_allowed("GET"),
        Service::UploadPack if req.method() != Method::POST => return not_allowed("POST"),
        Service::InfoRefs => {
            let query = req.uri().query().unwrap_or_default();
            match query.split('&').find_map(|kv| kv.strip_prefix("service=")) {
                Some("git-upload-pack") => {}
                Some("git-receive-pack") => return pushing(),
                _ => {
                    return text(
                        StatusCode::FORBIDDEN,
                        "only git's smart HTTP protocol is served (?service=git-upload-pack)",
                    )
                }
            }
        }
        Service::UploadPack => {}
    }
    let protocol = match git_protocol(req.headers()) {
        Ok(p) => p,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let repo = match state.repo(name.strip_suffix(".git").unwrap_or(name)) {
        Ok(repo) => repo,
        Err((status, message)) => return text(status, &message),
    };
    if service == Service::InfoRefs {
        if let Err(e) = state.freshen(&repo, true).await {
            return text(StatusCode::BAD_GATEWAY, &e);
        }
        let v2 = protocol
            .as_deref()
            .is_some_and(|p| p.split(':').any(|v| v.trim() == "version=2"));
        let head = if v2 { &b""[..] } else { SERVICE_HEADER };
        let job = Job {
            repo: &repo,
            protocol: protocol.as_deref(),
            input: None,
            head: Bytes::from_static(head),
            content_type: "application/x-git-upload-pack-advertisement",
        };
        return job.run().await;
    }

    let content_type = req.headers().get(CONTENT_TYPE).map(HeaderValue::as_bytes);
    if content_type != Some(&b"application/x-git-upload-pack-request"[..]) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/x-git-upload-pack-request",
        );
    }
    let gzip = match req
        .headers()
        .get(CONTENT_ENCODING)
        .map(HeaderValue::as_bytes)
    {
        None | Some(b"identity") => false,
        Some(b"gzip" | b"x-gzip") => true,
        Some(_) => {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "only gzip request bodies are decoded",
            )
        }
    };
    // No fetch here: the client's `info/refs` request just did it, and the
    // refs it negotiates against must still be there.
    if let Err(e) = state.freshen(&repo, false).await {
        return text(StatusCode::BAD_GATEWAY, &e);
    }
    let job = Job {
        repo: &repo,
        protocol: protocol.as_deref(),
        input: Some((req.into_body(), gzip)),
        head: Bytes::new(),
        content_type: "application/x-git-upload-pack-result",
    };
    job.run().await
}

/// The `Git-Protocol` header, which git reads from `GIT_PROTOCOL`: printable
/// ASCII only (`version=2`, `version=2:object-format=sha256`, …).
fn git_protocol(headers: &http::HeaderMap) -> Result<Option<String>, &'static str> {
    let Some(value) = headers.get("git-protocol") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.len() > 1024 || !bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err("invalid Git-Protocol header");
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// One run of `git upload-pack` for a request.
struct Job<'a> {
    repo: &'a Repo,
    protocol: Option<&'a str>,
    /// The request body and whether it is gzipped; `None` advertises refs.
    input: Option<(RequestBody, bool)>,
    /// Sent before the child's output.
    head: Bytes,
    content_type: &'static str,
}

impl Job<'_> {
    async fn run(self) -> Resp {
        let mut cmd = tokio::process::Command::new("git");
        cmd.args(["upload-pack", "--stateless-rpc"]);
        if self.input.is_none() {
            cmd.arg("--advertise-refs");
        }
        cmd.arg(self.repo.mirror())
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(if self.input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match self.protocol {
            Some(p) => cmd.env("GIT_PROTOCOL", p),
            None => cmd.env_remove("GIT_PROTOCOL"),
        };
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot run git: {e}"),
                )
            }
        };
        let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "git has no pipes");
        };
        let stdin = child.stdin.take();
        let (tx, mut verdict) = oneshot::channel();
        let name = self.repo.name.clone();
        tokio::spawn(drive(child, stdin, self.input, stderr, tx, name));

        // The status line waits for the first output, so that a request
        // body that fails (too large, stalled, bad gzip) or a child that
        // fails at once is answered with its own status.
        let mut first = BytesMut::with_capacity(64 << 10);
        let read = stdout.read_buf(&mut first).await;
        let mut state = OutputState::Reading;
        if matches!(read, Ok(0) | Err(_)) {
            state = OutputState::Done;
            match (&mut verdict).await {
                Ok(Ok(())) => {}
                Ok(Err((status, message))) => {
                    let mut resp = text(status, &message);
                    if matches!(
                        status,
                        StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
                    ) {
                        // The rest of the body is not read: the
                        // connection cannot carry another request.
                        resp.headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    return resp;
                }
                Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "git vanished"),
            }
        }
        let mut head = BytesMut::from(&self.head[..]);
        head.extend_from_slice(&first);
        let output = Output {
            head: head.freeze(),
            stdout,
            verdict,
            state,
        };
        let mut resp = Response::new(ResponseBody::unsized_stream(Box::pin(output)));
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    }
}

/// Feeds the child, waits for it and reports how it ended on `tx`; kills it
/// as soon as nobody listens (the response was dropped).
async fn drive(
    mut child: Child,
    stdin: Option<ChildStdin>,
    input: Option<(RequestBody, bool)>,
    stderr: ChildStderr,
    mut tx: oneshot::Sender<Result<(), Failure>>,
    name: String,
) {
    let work = async {
        let errors = tokio::spawn(read_stderr(stderr));
        if let (Some(stdin), Some((body, gzip))) = (stdin, input) {
            feed(body, gzip, stdin).await?;
        }
        let status = child.wait().await.map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("waiting for git: {e}"),
            )
        })?;
        if status.success() {
            return Ok(());
        }
        let errors = errors.await.unwrap_or_default();
        tracing::warn!(repo = %name, %status, stderr = %errors, "git upload-pack failed");
        Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("git upload-pack failed ({status}): {errors}"),
        ))
    };
    let result = tokio::select! {
        result = work => Some(result),
        () = tx.closed() => None,
    };
    match result {
        Some(result) => {
            if result.is_err() {
                let _ = child.start_kill();
            }
            let _ = tx.send(result);
        }
        None => {
            tracing::debug!(repo = %name, "smart HTTP request over; killing git");
            let _ = child.start_kill();
        }
    }
    // Reaped here rather than left to the runtime.
    let _ = child.wait().await;
}

/// Streams the request body to git's standard input, inflating it if
/// `gzip`; closes the input at the end.
async fn feed(mut body: RequestBody, gzip: bool, stdin: ChildStdin) -> Result<(), Failure> {
    let mut inflater = gzip.then(|| flate2::write::GzDecoder::new(Vec::new()));
    let mut input = Input { stdin, total: 0 };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_failure)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match inflater.as_mut() {
            None => input.send(&data).await?,
            Some(inflater) => {
                for step in data.chunks(INFLATE_STEP) {
                    inflater.write_all(step).map_err(bad_gzip)?;
                    let out = std::mem::take(inflater.get_mut());
                    input.send(&out).await?;
                }
            }
        }
    }
    if let Some(mut inflater) = inflater {
        inflater.try_finish().map_err(bad_gzip)?;
        let out = std::mem::take(inflater.get_mut());
        input.send(&out).await?;
    }
    Ok(())
}

/// Git's standard input and what it was sent.
struct Input {
    stdin: ChildStdin,
    total: u64,
}

impl Input {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.total += bytes.len() as u64;
        if self.total > MAX_REQUEST {
            return Err(too_large(MAX_REQUEST));
        }
        // A child that stopped reading has answered or failed: its exit
        // status tells which.
        let _ = self.stdin.write_all(bytes).await;
        Ok(())
    }
}

fn body_failure(e: BodyError) -> Failure {
    match e {
        BodyError::TooLarge(max) => too_large(max),
        BodyError::Stalled(_) => (StatusCode::REQUEST_TIMEOUT, e.to_string()),
        BodyError::Incoming(_) => (
            StatusCode::BAD_REQUEST,
            format!("reading the request body failed: {e}"),
        ),
    }
}

fn too_large(max: u64) -> Failure {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {max} bytes"),
    )
}

fn bad_gzip(e: io::Error) -> Failure {
    (
        StatusCode::BAD_REQUEST,
        format!("invalid gzip request body: {e}"),
    )
}

/// The first [`MAX_STDERR`] bytes of git's standard error; the rest is
/// read and dropped so that git never blocks on it.
async fn read_stderr(stderr: ChildStderr) -> String {
    let mut kept = Vec::new();
    let mut limited = stderr.take(MAX_STDERR);
    let _ = limited.read_to_end(&mut kept).await;
    let _ = tokio::io::copy(&mut limited.into_inner(), &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&kept).trim().to_owned()
}

/// The response body: `head`, then the child's output, then an error if the
/// child failed.
struct Output {
    head: Bytes,
    stdout: ChildStdout,
    verdict: oneshot::Receiver<Result<(), Failure>>,
    state: OutputState,
}

enum OutputState {
    Reading,
    Waiting,
    Done,
}

impl AsyncRead for Output {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.head.is_empty() {
            let n = this.head.len().min(buf.remaining());
            buf.put_slice(&this.head[..n]);
            this.head.advance(n);
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.state {
                OutputState::Reading => {
                    let before = buf.filled().len();
                    ready!(Pin::new(&mut this.stdout).poll_read(cx, buf))?;
                    if buf.filled().len() > before {
                        return Poll::Ready(Ok(()));
                    }
                    this.state = OutputState::Waiting;
                }
                OutputState::Waiting => {
                    let verdict = ready!(Pin::new(&mut this.verdict).poll(cx));
                    this.state = OutputState::Done;
                    return Poll::Ready(match verdict {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err((_, message))) => Err(io::Error::other(message)),
                        Err(_) => Err(io::Error::other("git vanished")),
                    });
                }
                OutputState::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_finds_the_service_after_the_repository() {
        assert_eq!(
            split("github.com/org/repo/info/refs"),
            Some(("github.com/org/repo", Service::InfoRefs))
        );
        assert_eq!(
            split("github.com/org/repo.git/git-upload-pack"),
            Some(("github.com/org/repo.git", Service::UploadPack))
        );
        assert_eq!(
            split("github.com/org/repo/git-receive-pack"),
            Some(("github.com/org/repo", Service::ReceivePack))
        );
        assert_eq!(split("github.com/org/repo/snapshot.tar.zst"), None);
    }

    #[test]
    fn git_protocol_is_printable_ascii() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(git_protocol(&headers), Ok(None));
        headers.insert("git-protocol", HeaderValue::from_static("version=2"));
        assert_eq!(git_protocol(&headers), Ok(Some("version=2".to_owned())));
        headers.insert(
            "git-protocol",
            HeaderValue::from_bytes(b"version=\xff").unwrap(),
        );
        assert!(git_protocol(&headers).is_err());
    }
}

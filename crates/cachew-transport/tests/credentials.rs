//! Credentials in the URL (`http://user:pass@host`) become
//! `Authorization: Basic`, and the password appears nowhere: not in logs
//! at TRACE level, not in `Debug`, not in errors. Its own test binary, so
//! the global TRACE subscriber sees only this test.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use cachew_transport::RequestBody;
use http::{Request, Response};

const PASSWORD: &str = "hunter2-pw";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn url_credentials_are_sent_as_basic_auth_and_never_logged() {
    let logs = Buffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = support::serve(|req: Request<hyper::body::Incoming>| async move {
        let auth = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let host = req.headers()["host"].to_str().unwrap().to_owned();
        Response::new(support::full(format!("{auth}|{host}")))
    })
    .await;
    let url = format!("http://ci:{PASSWORD}@{}/api/v1/stats?x=1", server.addr);
    let client = support::builder().build().unwrap();
    let resp = client
        .send(Request::get(&url).body(RequestBody::empty()).unwrap())
        .await
        .unwrap();
    let body = resp.into_body().bytes().await.unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ci:{PASSWORD}"));
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("Basic {encoded}|{}", server.addr)
    );

    // An explicit Authorization is kept.
    let mut req = Request::get(&url).body(RequestBody::empty()).unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer t".parse().unwrap());
    let body = client
        .send(req)
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    assert!(body.starts_with(b"Bearer t|"));

    // Errors: a refused connection and a timeout.
    let dead = format!(
        "http://ci:{PASSWORD}@127.0.0.1:{}/x",
        support::unused_port().await
    );
    let err = client
        .send(Request::get(&dead).body(RequestBody::empty()).unwrap())
        .await
        .unwrap_err();
    let mut texts = vec![format!("{err}"), format!("{err:?}"), format!("{client:?}")];
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        texts.push(e.to_string());
        source = e.source();
    }

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(!logs.is_empty(), "nothing was logged");
    texts.push(logs);
    for text in texts {
        assert!(!text.contains(PASSWORD), "password leaked: {text}");
        assert!(!text.contains(&encoded), "credentials leaked: {text}");
    }
}

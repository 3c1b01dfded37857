//! `cachew` built with the `otel` feature exports its spans over OTLP/HTTP
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, to a fake collector here.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use support::{cachew, run, TestServer};

/// One request the collector got: request line, headers and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn collector() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut data = Vec::new();
            let mut buf = [0u8; 8192];
            // Read the head, then Content-Length bytes of body.
            let (head, body_start) = loop {
                let Ok(n) = s.read(&mut buf) else {
                    break (String::new(), 0);
                };
                if n == 0 {
                    break (String::new(), 0);
                }
                data.extend_from_slice(&buf[..n]);
                if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    break (String::from_utf8_lossy(&data[..i]).into_owned(), i + 4);
                }
            };
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while data.len() < body_start + len {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                }
            }
            let body = data[body_start.min(data.len())..].to_vec();
            log.lock().unwrap().push((head, body));
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (format!("http://{addr}"), seen)
}

#[test]
fn spans_are_exported_when_an_endpoint_is_set() {
    let server = TestServer::start();
    let (endpoint, seen) = collector();
    let (_, _, err) = run(cachew(&server.url())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .args(["stat", "ns", "k"]));
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "nothing exported; stderr:\n{err}");
    let (head, body) = &seen[0];
    assert!(head.starts_with("POST /v1/traces "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("application/x-protobuf"),
        "{head}"
    );
    // Protobuf keeps strings as they are: the span names travel verbatim.
    let text = String::from_utf8_lossy(body);
    assert!(text.contains("http.request"), "{text:?}");
    assert!(text.contains("cachew"), "{text:?}");
}

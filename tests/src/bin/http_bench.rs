//! The client side of `cargo xtask bench http`: serves, downloads and
//! uploads one object so that the xtask can time this client against `curl`
//! on the same URL. Build it with `--release`.
//!
//! ```text
//! http-bench serve [--backend memory|disk]   # prints the base URL; stops when stdin closes
//! http-bench get URL KEY                     # downloads to nowhere, prints bytes and seconds
//! http-bench put URL KEY FILE                # uploads FILE, prints bytes and seconds
//! http-bench gen FILE BYTES                  # writes a file of incompressible-looking bytes
//! ```
//!
//! `KEY` is a 64-hex key (as in the object URL) or any text, hashed as the
//! protocol says.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use cachew_client::{
    Cache, CreateOptions, DiskCache, DiskCacheOptions, Key, MemoryCache, OpenOptions, RemoteCache,
};
use cachew_server::Server;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const USAGE: &str = "usage: http-bench serve [--backend memory|disk] | get URL KEY | put URL KEY FILE | gen FILE BYTES";

/// Read size of the download loop and of the upload's file reader: small
/// enough to stay in the CPU cache between copies, as curl's buffers do.
/// (Measured on the 2-core build machine: 1 MiB buffers were slower.)
const BUF: usize = 64 << 10;
/// Size of the generated file's write buffer.
const GEN_BUF: usize = 1 << 20;

async fn serve(backend: &str) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cache: Arc<dyn Cache> = match backend {
        "memory" => Arc::new(MemoryCache::new(16 << 30)),
        "disk" => Arc::new(
            DiskCache::open_with(scratch.path(), DiskCacheOptions::default())
                .map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("unknown backend {other:?}")),
    };
    let server = Server::new(cache)
        .bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    println!("{}", server.url());
    // Serve until whoever started us closes our stdin (or dies).
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = lines.next_line().await {}
    server.shutdown().await;
    Ok(())
}

async fn get(url: &str, key: &str) -> Result<(), String> {
    let cache = RemoteCache::new(url).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let object = cache
        .open(&Key::parse(key), &OpenOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let expected = object.meta.content_length();
    let mut body = object.body;
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = body.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    if expected.is_some_and(|e| e != total) {
        return Err(format!("read {total} bytes, expected {expected:?}"));
    }
    println!("bytes={total} secs={:.6}", started.elapsed().as_secs_f64());
    Ok(())
}

async fn put(url: &str, key: &str, file: &str) -> Result<(), String> {
    use std::io::Read;
    let cache = RemoteCache::new(url).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut input = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
    let mut writer = cache
        .create(
            &Key::parse(key),
            Default::default(),
            &CreateOptions::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        // A plain blocking read, like curl's: the benchmark file is in the
        // page cache, and tokio's file adapter would add a thread hand-off
        // and a copy per read that have nothing to do with HTTP.
        let n = match input.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                let msg = format!("{file}: {e}");
                let _ = writer.abort(Box::new(e)).await;
                return Err(msg);
            }
        };
        if n == 0 {
            break;
        }
        if let Err(e) = writer.write_all(&buf[..n]).await {
            let msg = e.to_string();
            let _ = writer.abort(Box::new(e)).await;
            return Err(msg);
        }
        total += n as u64;
    }
    writer.commit().await.map_err(|e| e.to_string())?;
    println!("bytes={total} secs={:.6}", started.elapsed().as_secs_f64());
    Ok(())
}

fn gen(file: &str, bytes: &str) -> Result<(), String> {
    use std::io::Write;
    let size: u64 = bytes.parse().map_err(|_| format!("bad size {bytes:?}"))?;
    let out = std::fs::File::create(file).map_err(|e| format!("{file}: {e}"))?;
    let mut out = std::io::BufWriter::with_capacity(GEN_BUF, out);
    // xorshift: cheap, and not compressible by anything on the path.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; GEN_BUF];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(GEN_BUF as u64) as usize;
        out.write_all(&block[..n])
            .map_err(|e| format!("{file}: {e}"))?;
        left -= n as u64;
    }
    out.flush().map_err(|e| format!("{file}: {e}"))?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["serve"] => serve("memory").await,
        ["serve", "--backend", backend] => serve(backend).await,
        ["get", url, key] => get(url, key).await,
        ["put", url, key, file] => put(url, key, file).await,
        ["gen", file, bytes] => gen(file, bytes),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("http-bench: {msg}");
            ExitCode::FAILURE
        }
    }
}

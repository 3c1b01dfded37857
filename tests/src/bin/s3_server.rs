//! Starts the tests' S3 server (SeaweedFS through `cachew_testkit::s3`) for
//! `cargo xtask bench s3`, prints `ENDPOINT BUCKET` on one line, and runs
//! until its standard input closes (then the server is killed).
//!
//! ```text
//! s3-server [BUCKET]
//! ```
//!
//! The server's data goes under `$TMPDIR` (the benchmark points it at
//! `/dev/shm`).

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let bucket = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "cachew-bench".to_owned());
    let Some(server) = cachew_testkit::s3::S3Server::start(&bucket) else {
        return ExitCode::FAILURE;
    };
    println!("{} {}", server.endpoint(), server.bucket());
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(server);
    ExitCode::SUCCESS
}

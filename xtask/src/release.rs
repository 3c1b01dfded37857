//! `cargo xtask release`: an optimised, stripped `cachew` binary and its
//! SHA-256 checksum under `dist/`.
//!
//! The `dist` cargo profile (workspace `Cargo.toml`) is `release` with fat
//! LTO, one codegen unit, no debug info and `strip = true`. The checksum file
//! is in `sha256sum` format, so `cd dist && sha256sum -c SHA256SUMS` checks it.

use std::fs;
use std::process::Command;

use crate::demo::target_dir;
use crate::{cargo, root, run};

pub(crate) fn release() -> Result<(), String> {
    run(cargo().args([
        "build",
        "--profile",
        "dist",
        "-p",
        "cachew-cli",
        "--bin",
        "cachew",
    ]))?;
    let built = target_dir().join("dist/cachew");
    let host = host_triple()?;
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("cachew-{version}-{host}");
    let dist = root().join("dist");
    fs::create_dir_all(&dist).map_err(|e| format!("create {}: {e}", dist.display()))?;
    let out = dist.join(&name);
    fs::copy(&built, &out)
        .map_err(|e| format!("copy {} to {}: {e}", built.display(), out.display()))?;

    // The binary must run and be stripped (no .symtab left).
    let version_out = Command::new(&out)
        .arg("--version")
        .output()
        .map_err(|e| format!("run {}: {e}", out.display()))?;
    if !version_out.status.success() {
        return Err(format!("{} --version failed", out.display()));
    }
    if let Ok(sections) = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(&out)
        .output()
    {
        if String::from_utf8_lossy(&sections.stdout).contains(".symtab") {
            return Err(format!("{} is not stripped", out.display()));
        }
    }

    let sums = Command::new("sha256sum")
        .arg(&name)
        .current_dir(&dist)
        .output()
        .map_err(|e| format!("run sha256sum: {e}"))?;
    if !sums.status.success() {
        return Err("sha256sum failed".into());
    }
    let sums_path = dist.join("SHA256SUMS");
    fs::write(&sums_path, &sums.stdout)
        .map_err(|e| format!("write {}: {e}", sums_path.display()))?;
    let size = fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!("{}", String::from_utf8_lossy(&version_out.stdout).trim());
    println!(
        "dist/{name} ({:.1} MiB, stripped)",
        size as f64 / (1 << 20) as f64
    );
    print!("dist/SHA256SUMS: {}", String::from_utf8_lossy(&sums.stdout));
    Ok(())
}

fn host_triple() -> Result<String, String> {
    let out = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-vV")
        .output()
        .map_err(|e| format!("run rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "rustc -vV printed no host triple".into())
}

//! `cargo xtask release`: an optimised, stripped `cachew` binary and its
//! SHA-256 checksum under `dist/`, with the man page (`cachew.1`) and shell
//! completions (`completions/`) that the built binary prints (its hidden
//! `cachew man` and `cachew completions SHELL`), so they match its grammar.
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

    let mut shipped = vec![name.clone()];
    let generated = [
        (vec!["man"], "cachew.1"),
        (vec!["completions", "bash"], "completions/cachew.bash"),
        (vec!["completions", "zsh"], "completions/_cachew"),
        (vec!["completions", "fish"], "completions/cachew.fish"),
        (vec!["completions", "powershell"], "completions/_cachew.ps1"),
        (vec!["completions", "elvish"], "completions/cachew.elv"),
    ];
    fs::create_dir_all(dist.join("completions"))
        .map_err(|e| format!("create {}: {e}", dist.join("completions").display()))?;
    for (args, file) in generated {
        let printed = Command::new(&out)
            .args(&args)
            .output()
            .map_err(|e| format!("run {} {}: {e}", out.display(), args.join(" ")))?;
        if !printed.status.success() || printed.stdout.is_empty() {
            return Err(format!("{} {} failed", out.display(), args.join(" ")));
        }
        let path = dist.join(file);
        fs::write(&path, &printed.stdout).map_err(|e| format!("write {}: {e}", path.display()))?;
        shipped.push(file.to_owned());
    }

    let sums = Command::new("sha256sum")
        .args(&shipped)
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
    println!("dist/cachew.1, dist/completions/ (bash, zsh, fish, powershell, elvish)");
    print!(
        "dist/SHA256SUMS:\n{}",
        String::from_utf8_lossy(&sums.stdout)
    );
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

//! External programs the kit drives (mksquashfs, xorriso, syslinux, mtools...), found in
//! PATH; a missing one is reported with the Debian package that provides it.

use super::error::KitError;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The Debian package providing `tool`, so the error tells the person what to install.
pub fn package_of(tool: &str) -> &'static str {
    match tool {
        "mksquashfs" | "unsquashfs" => "squashfs-tools",
        "xorriso" => "xorriso",
        "syslinux" => "syslinux",
        "mcopy" | "mdir" | "mmd" | "mattrib" => "mtools",
        "mkfs.vfat" | "mkfs.fat" => "dosfstools",
        "zstd" => "zstd",
        "xz" => "xz-utils",
        "busybox" => "busybox-static",
        "cpio" => "cpio",
        _ => "(unknown package)",
    }
}

/// A file the kit needs from a Debian package (boot loader pieces).
pub fn require_file(path: &str, package: &str) -> Result<PathBuf, KitError> {
    let p = PathBuf::from(path);
    if p.is_file() {
        Ok(p)
    } else {
        Err(KitError::MissingTool { tool: path.to_string(), package: package.to_string() })
    }
}

/// Looks `tool` up in PATH (plus the sbin directories, which a normal user's PATH lacks).
pub fn find(tool: &str) -> Result<PathBuf, KitError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().map(PathBuf::from);
    for dir in std::env::split_paths(&path).chain(extra) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(KitError::MissingTool { tool: tool.to_string(), package: package_of(tool).to_string() })
}

/// Runs a command to completion, capturing its output; a non-zero exit is an error that
/// carries the tail of stderr.
pub fn run_captured(tool: &str, cmd: &mut Command) -> Result<Vec<u8>, KitError> {
    log::debug!("running {:?}", cmd);
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| KitError::ToolFailed {
        tool: tool.to_string(),
        status: "not started".into(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(failed(tool, &out.status, &out.stderr, &out.stdout));
    }
    Ok(out.stdout)
}

/// Runs a command whose progress output goes straight to the person's terminal.
pub fn run_visible(tool: &str, cmd: &mut Command) -> Result<(), KitError> {
    log::debug!("running {:?}", cmd);
    let status = cmd.stdin(Stdio::null()).status().map_err(|e| KitError::ToolFailed {
        tool: tool.to_string(),
        status: "not started".into(),
        detail: e.to_string(),
    })?;
    if !status.success() {
        return Err(failed(tool, &status, b"(see the output above)", b""));
    }
    Ok(())
}

fn failed(tool: &str, status: &std::process::ExitStatus, stderr: &[u8], stdout: &[u8]) -> KitError {
    let text = String::from_utf8_lossy(if stderr.is_empty() { stdout } else { stderr }).to_string();
    let tail: Vec<&str> = text.lines().rev().take(8).collect();
    let detail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    let lower = detail.to_lowercase();
    let detail = if lower.contains("no space left") { format!("no space left on device: {detail}") } else { detail };
    KitError::ToolFailed { tool: tool.to_string(), status: status.to_string(), detail }
}

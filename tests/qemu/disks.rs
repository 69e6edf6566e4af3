//! Disk images for tests (wrappers of qemu-harness/mkdisk) and the Debian root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::paths::{debian_root_tarball, repo_dir};

/// Runs `qemu-harness/mkdisk ARGS...` (see that script for the kinds and options).
pub fn mkdisk(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let script = repo_dir().join("qemu-harness/mkdisk");
    let output = Command::new("bash").arg(&script).args(args).output().map_err(|e| format!("run {}: {e}", script.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("mkdisk {args:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim_end()))
    }
}

/// Options of the filesystem disk images.
#[derive(Clone, Debug, Default)]
pub struct DiskOpts {
    /// Put the filesystem in partition 1 of an MBR table (at 1 MiB) instead of the whole disk.
    pub mbr: bool,
    /// Size in MiB; None: the contents plus slack.
    pub size_mib: Option<u32>,
    pub label: Option<String>,
}

fn mkdisk_fs(kind: &str, src: &Path, out: &Path, opts: &DiskOpts) -> PathBuf {
    let size = opts.size_mib.map(|s| s.to_string());
    let mut args: Vec<&std::ffi::OsStr> = vec![kind.as_ref(), src.as_os_str(), out.as_os_str()];
    if opts.mbr {
        args.push("--mbr".as_ref());
    }
    if let Some(size) = &size {
        args.push("--size".as_ref());
        args.push(size.as_ref());
    }
    if let Some(label) = &opts.label {
        args.push("--label".as_ref());
        args.push(label.as_ref());
    }
    mkdisk(&args).unwrap_or_else(|e| panic!("{e}"));
    out.to_path_buf()
}

/// ext4 image with `dir`'s contents (owners and modes kept).
pub fn disk_ext4(dir: &Path, out: &Path, opts: &DiskOpts) -> PathBuf {
    mkdisk_fs("ext4", dir, out, opts)
}
/// FAT32 image with `dir`'s contents.
pub fn disk_vfat(dir: &Path, out: &Path, opts: &DiskOpts) -> PathBuf {
    mkdisk_fs("vfat", dir, out, opts)
}
/// ISO 9660 (Rock Ridge + Joliet) image of `dir` (no MBR, not bootable).
pub fn disk_iso(dir: &Path, out: &Path) -> PathBuf {
    mkdisk_fs("iso", dir, out, &DiskOpts { label: None, ..DiskOpts::default() })
}
/// A squashfs file as a whole disk (or as partition 1 with `mbr`).
pub fn disk_squashfs(squashfs: &Path, out: &Path, mbr: bool) -> PathBuf {
    mkdisk_fs("squashfs", squashfs, out, &DiskOpts { mbr, ..DiskOpts::default() })
}
/// `mib` MiB of random bytes, optionally under an MBR with one (garbage) partition.
pub fn disk_garbage(out: &Path, mib: u32, mbr: bool) -> PathBuf {
    let size = mib.to_string();
    let mut args: Vec<&std::ffi::OsStr> = vec!["garbage".as_ref(), out.as_os_str(), "--size".as_ref(), size.as_ref()];
    if mbr {
        args.push("--mbr".as_ref());
    }
    mkdisk(&args).unwrap_or_else(|e| panic!("{e}"));
    out.to_path_buf()
}

/// Lays out a medium's directory the way VIVER looks for it:
/// `dir/viver/<name>.squashfs` + `dir/viver/<name>.toml`. Returns `dir`.
pub fn viver_medium_dir(image: &Path, manifest: &Path, dir: &Path, name: &str) -> PathBuf {
    let viver = dir.join("viver");
    fs::create_dir_all(&viver).unwrap_or_else(|e| panic!("mkdir {}: {e}", viver.display()));
    fs::copy(image, viver.join(format!("{name}.squashfs"))).unwrap_or_else(|e| panic!("copy {}: {e}", image.display()));
    fs::copy(manifest, viver.join(format!("{name}.toml"))).unwrap_or_else(|e| panic!("copy {}: {e}", manifest.display()));
    dir.to_path_buf()
}

/// Unpacks the Debian root (make-debian-root) into `dest` (as root: keeps owners).
pub fn extract_debian_root(dest: &Path) -> PathBuf {
    let tarball = debian_root_tarball();
    fs::create_dir_all(dest).unwrap_or_else(|e| panic!("mkdir {}: {e}", dest.display()));
    let status = Command::new("tar")
        .args(["--zstd", "--numeric-owner", "-xpf"])
        .arg(&tarball)
        .arg("-C")
        .arg(dest)
        .status()
        .unwrap_or_else(|e| panic!("tar: {e}"));
    assert!(status.success(), "extracting {} into {} failed", tarball.display(), dest.display());
    dest.to_path_buf()
}

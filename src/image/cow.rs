//! The new root: the image read-only at the bottom, a writable layer on top (tmpfs, or a
//! directory on a disk that keeps the changes), joined by overlayfs.

use nix::mount::{mount, MsFlags};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CowError {
    #[error("cannot create {path}: {source}")]
    Mkdir { path: String, source: std::io::Error },
    #[error("cannot mount {what} on {target}: {errno}")]
    Mount { what: String, target: String, errno: nix::Error },
    #[error("the image at {path} is not readable: {source}")]
    Image { path: String, source: std::io::Error },
    #[error("not enough memory to copy the image to RAM: it needs {needed_mib} MiB, {available_mib} MiB available")]
    NoRoom { needed_mib: u64, available_mib: u64 },
    #[error("copying {path} to RAM failed: {source}")]
    Copy { path: String, source: std::io::Error },
}

pub fn mkdir_all(path: &Path) -> Result<(), CowError> {
    std::fs::create_dir_all(path).map_err(|source| CowError::Mkdir { path: path.display().to_string(), source })
}

pub fn mount_fs(source: &Path, target: &Path, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<(), CowError> {
    mkdir_all(target)?;
    mount(Some(source), target, Some(fstype), flags, data).map_err(|errno| CowError::Mount {
        what: format!("{} ({fstype}{})", source.display(), data.map(|d| format!(", {d}")).unwrap_or_default()),
        target: target.display().to_string(),
        errno,
    })
}

/// The SquashFS on `device` (a loop device or a raw partition), read-only, at `target`.
pub fn mount_image(device: &Path, target: &Path) -> Result<(), CowError> {
    mount_fs(device, target, "squashfs", MsFlags::MS_RDONLY | MsFlags::MS_NODEV, None)
}

/// The upper and work directories of an overlay, and where they live.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Layer {
    pub upper: PathBuf,
    pub work: PathBuf,
    /// "tmpfs size=50%", or "persistent /dev/sdb1:/viver-cow/<id>".
    pub description: String,
}

/// A tmpfs of `size` at `base`, with `upper/` and `work/` in it.
pub fn tmpfs_layer(base: &Path, size: &str) -> Result<Layer, CowError> {
    let data = format!("size={size},mode=0755");
    mount_fs(Path::new("tmpfs"), base, "tmpfs", MsFlags::MS_NODEV | MsFlags::MS_NOSUID, Some(&data))?;
    let layer = Layer { upper: base.join("upper"), work: base.join("work"), description: format!("tmpfs size={size}") };
    mkdir_all(&layer.upper)?;
    mkdir_all(&layer.work)?;
    Ok(layer)
}

/// `dir/<image id>/upper` and `.../work` on an already mounted writable filesystem. The
/// image id keeps the changes made to one image from being laid over another.
pub fn persistent_layer(mounted_at: &Path, dir: &str, image_id: &str, device_shown: &str) -> Result<Layer, CowError> {
    let base = mounted_at.join(dir.trim_start_matches('/')).join(image_id.replace(['/', ':'], "_"));
    let layer =
        Layer { upper: base.join("upper"), work: base.join("work"), description: format!("persistent {device_shown}:{dir}/{image_id}") };
    mkdir_all(&layer.upper)?;
    mkdir_all(&layer.work)?;
    Ok(layer)
}

/// The overlay of `layer` on the image at `lower`, mounted at `target`.
pub fn mount_overlay(lower: &Path, layer: &Layer, target: &Path) -> Result<(), CowError> {
    let data = format!("lowerdir={},upperdir={},workdir={}", lower.display(), layer.upper.display(), layer.work.display());
    mount_fs(Path::new("overlay"), target, "overlay", MsFlags::empty(), Some(&data))
}

/// The kernel's estimate of the memory that can be used without swapping, in bytes.
pub fn mem_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

/// Copies the image into a tmpfs at `ram_dir` (sized to fit it), hashing it on the way so
/// the copy is checked against the manifest in the same pass. Returns the copy's path and
/// its SHA-256.
pub fn copy_to_ram(image: &Path, ram_dir: &Path, progress: impl FnMut(u64, u64)) -> Result<(PathBuf, String), CowError> {
    let shown = image.display().to_string();
    let mut source = std::fs::File::open(image).map_err(|source| CowError::Image { path: shown.clone(), source })?;
    let size = {
        use std::io::{Seek, SeekFrom};
        let size = source.seek(SeekFrom::End(0)).map_err(|source| CowError::Image { path: shown.clone(), source })?;
        source.seek(SeekFrom::Start(0)).map_err(|source| CowError::Image { path: shown.clone(), source })?;
        size
    };
    // Keep a quarter of what is free for the system that is about to run from it.
    let available = mem_available().unwrap_or(0);
    if size.saturating_mul(4) / 3 > available {
        return Err(CowError::NoRoom { needed_mib: (size.saturating_mul(4) / 3) >> 20, available_mib: available >> 20 });
    }
    let tmpfs_size = format!("size={}k,mode=0755", size / 1024 + 1024);
    mount_fs(Path::new("tmpfs"), ram_dir, "tmpfs", MsFlags::MS_NODEV | MsFlags::MS_NOSUID, Some(&tmpfs_size))?;
    let copy_path = ram_dir.join(image.file_name().unwrap_or_else(|| std::ffi::OsStr::new("image.squashfs")));
    let mut copy = std::fs::File::create(&copy_path).map_err(|source| CowError::Copy { path: shown.clone(), source })?;
    let mut progress = progress;
    let digest = super::verify::sha256_copy(&mut source, Some(&mut copy), |done| progress(done, size))
        .map_err(|source| CowError::Copy { path: shown.clone(), source })?;
    Ok((copy_path, digest))
}

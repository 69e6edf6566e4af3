//! Exposing an image file as a read-only block device.

use crate::sys::loop_uapi::{self, LoopConfig, LoopInfo64};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("no free loop device (LOOP_CTL_GET_FREE on /dev/loop-control): {0}")]
    NoFree(nix::Error),
    #[error("cannot attach {image} to {device}: LOOP_CONFIGURE said {configure}, LOOP_SET_FD said {set_fd}")]
    Attach { image: String, device: String, configure: nix::Error, set_fd: nix::Error },
}

/// A loop device attached to an image. Autoclear detaches the device when its last user
/// goes, and this open descriptor is such a user: keep it until the filesystem on the
/// device is mounted (the mount then holds it), or the device vanishes under the mount.
pub struct LoopDevice {
    pub path: PathBuf,
    _holder: File,
}

/// Attaches `image` to a free loop device, read-only or not (a copy-on-write file).
///
/// The device is marked autoclear: it detaches itself once the last mount of it goes,
/// so a failed boot attempt leaves nothing behind.
pub fn attach(image: &Path, dev_dir: &Path, read_only: bool) -> Result<LoopDevice, LoopError> {
    let control_path = dev_dir.join("loop-control");
    let control = open(&control_path, false)?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
    let number = unsafe { loop_uapi::loop_ctl_get_free(control.as_raw_fd()) }.map_err(LoopError::NoFree)?;
    let device = dev_dir.join(format!("loop{number}"));
    let backing = open(image, !read_only)?;
    let loop_dev = wait_for_node(&device, !read_only)?;

    let mut info = LoopInfo64::zeroed();
    info.lo_flags = loop_uapi::LO_FLAGS_AUTOCLEAR | if read_only { loop_uapi::LO_FLAGS_READ_ONLY } else { 0 };
    let name = image.as_os_str().as_encoded_bytes();
    let n = name.len().min(info.lo_file_name.len() - 1);
    info.lo_file_name[..n].copy_from_slice(&name[..n]);
    let config = LoopConfig { fd: backing.as_raw_fd() as u32, block_size: 0, info, reserved: [0; 8] };

    // SAFETY: `config` is a valid loop_config that outlives the call.
    let configured = unsafe { loop_uapi::loop_configure(loop_dev.as_raw_fd(), &config) };
    if let Err(configure) = configured {
        // Kernels before 5.8 lack LOOP_CONFIGURE: the two-step way.
        // SAFETY: plain fd argument; `info` outlives the call.
        let two_step = unsafe { loop_uapi::loop_set_fd(loop_dev.as_raw_fd(), backing.as_raw_fd()) }
            .and_then(|_| unsafe { loop_uapi::loop_set_status64(loop_dev.as_raw_fd(), &info) });
        if let Err(set_fd) = two_step {
            return Err(LoopError::Attach { image: image.display().to_string(), device: device.display().to_string(), configure, set_fd });
        }
    }
    Ok(LoopDevice { path: device, _holder: loop_dev })
}

fn open(path: &Path, write: bool) -> Result<File, LoopError> {
    OpenOptions::new().read(true).write(write).open(path).map_err(|source| LoopError::Open { path: path.display().to_string(), source })
}

/// devtmpfs creates /dev/loopN a moment after LOOP_CTL_GET_FREE adds it.
fn wait_for_node(device: &Path, write: bool) -> Result<File, LoopError> {
    let mut last = None;
    for _ in 0..200 {
        match open(device, write) {
            Ok(file) => return Ok(file),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(last.unwrap_or_else(|| LoopError::Open {
        path: device.display().to_string(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    }))
}

//! Putting one module into the kernel: finit_module (init_module when the kernel
//! lacks it), compressed files handed to the kernel when it can decompress them,
//! otherwise decompressed here (gzip, xz, zstd) and given to init_module.

use super::error::HwError;
use super::modinfo::{compression_of, read_module_bytes, Compression};
use nix::errno::Errno;
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// What the detector calls to load a module; tests inject a fake.
pub trait LoadModule: Send + Sync {
    /// `path` is relative to the release directory; `params` is "p1=v1 p2=v2".
    /// EEXIST (already loaded) may be returned; the caller counts it as success.
    fn load(&self, module: &str, path: &Path, params: &str) -> Result<(), HwError>;
}

/// The real thing, for PID 1.
pub struct KernelLoader {
    pub release_dir: PathBuf,
}

/// finit_module's flag for "the file is compressed, decompress it yourself" (Linux 6.1+).
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// The compression the running kernel can undo itself (/sys/module/compression).
fn kernel_decompresses(c: Compression) -> bool {
    let Ok(s) = std::fs::read_to_string("/sys/module/compression") else { return false };
    let s = s.trim();
    matches!((c, s), (Compression::Gzip, "gzip") | (Compression::Xz, "xz") | (Compression::Zstd, "zstd"))
}

fn finit(file: &std::fs::File, params: &CString, flags: libc::c_uint) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall with a valid open fd and a NUL-terminated string that outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

impl LoadModule for KernelLoader {
    fn load(&self, module: &str, path: &Path, params: &str) -> Result<(), HwError> {
        let full = self.release_dir.join(path);
        let params_c = CString::new(params.replace('\0', ""))
            .map_err(|_| HwError::Module { module: module.into(), reason: "parameters hold a NUL".into() })?;
        let name = full.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let compression = compression_of(name).unwrap_or(Compression::None);
        let failed = |errno| HwError::LoadFailed { module: module.to_string(), errno };
        if compression == Compression::None || kernel_decompresses(compression) {
            let file = std::fs::File::open(&full).map_err(|e| HwError::io(&full, e))?;
            let flags = if compression == Compression::None { 0 } else { MODULE_INIT_COMPRESSED_FILE };
            match finit(&file, &params_c, flags) {
                Ok(()) => return Ok(()),
                // No finit_module, or it refuses this file: fall back to init_module below.
                Err(Errno::ENOSYS) => {}
                Err(Errno::EINVAL) if compression != Compression::None => {}
                Err(e) => return Err(failed(e)),
            }
        }
        let image = read_module_bytes(&full)?;
        nix::kmod::init_module(&image, &params_c).map_err(failed)
    }
}

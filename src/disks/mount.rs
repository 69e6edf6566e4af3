//! Read-only mount of a probed medium. The caller loads the filesystem's modules
//! first ([`FsKind::module_aliases`](crate::disks::superblock::FsKind::module_aliases)):
//! there is no modprobe for the kernel to call back.

use crate::disks::error::DiskError;
use crate::disks::superblock::Filesystem;
use log::{info, warn};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use std::path::Path;

/// Read-only, and nothing on the medium may become a device node or a setuid program.
const FLAGS: MsFlags = MsFlags::MS_RDONLY.union(MsFlags::MS_NOSUID).union(MsFlags::MS_NODEV);

/// Mounts `dev_path` on `target` (which must exist) read-only, with the filesystem's
/// type and options. A journaled filesystem left dirty cannot replay its log on a
/// read-only mount; it is retried once without replay (`noload`/`norecovery`), which
/// is safe for reading an image file and better than not booting.
pub fn mount_readonly(dev_path: &Path, fs: &Filesystem, target: &Path) -> Result<(), DiskError> {
    let fstype = fs.kind.mount_type();
    let options = fs.kind.mount_options();
    match try_mount(dev_path, fstype, options, target) {
        Ok(()) => {
            info!("disks: mounted {} ({fstype}) read-only on {}", dev_path.display(), target.display());
            Ok(())
        }
        Err(first) => {
            let Some(fallback) = fs.kind.recovery_fallback_options() else {
                return Err(mount_error(dev_path, fstype, target, first));
            };
            // EBUSY/ENOENT/ENODEV are not journal trouble; retrying would hide the real cause.
            if !matches!(first, Errno::EROFS | Errno::EINVAL | Errno::EIO | Errno::EACCES) {
                return Err(mount_error(dev_path, fstype, target, first));
            }
            warn!("disks: mounting {} ({fstype}) failed ({first}); retrying with {fallback}", dev_path.display());
            try_mount(dev_path, fstype, fallback, target).map_err(|e| mount_error(dev_path, fstype, target, e))?;
            info!("disks: mounted {} ({fstype},{fallback}) read-only on {}", dev_path.display(), target.display());
            Ok(())
        }
    }
}

fn try_mount(dev_path: &Path, fstype: &str, options: &str, target: &Path) -> Result<(), Errno> {
    let data = (!options.is_empty()).then_some(options);
    mount(Some(dev_path), target, Some(fstype), FLAGS, data)
}

fn mount_error(dev_path: &Path, fstype: &'static str, target: &Path, source: Errno) -> DiskError {
    DiskError::Mount { device: dev_path.to_path_buf(), target: target.to_path_buf(), fstype, source }
}

//! Stage `cow`: the copy-on-write layer (tmpfs, a persistent directory or image file
//! on a medium, or none) and the overlay that becomes the new root.

use super::disks::search::{MediaSearch, MEDIA_DIR};
use super::report::Failure;
use super::settings::CowSpec;
use super::stage::Stage;
use super::{Boot, MountedImage, COW_DIR, COW_FILE_MOUNT, IMAGE_MOUNT, NEW_ROOT};
use crate::hardware::detect::Detector;
use crate::image::{cow, loopdev};
use std::path::{Path, PathBuf};

impl Boot {
    pub(super) fn cow(&mut self, image: &MountedImage, search: &MediaSearch, detector: &Detector) -> Result<(), Failure> {
        let failure = |message: String, details: Vec<String>| Failure { stage: Stage::Cow, message, details };
        let new_root = Path::new(NEW_ROOT);
        let mut keep_medium = None;
        let layer = match &self.settings.cow {
            CowSpec::None => {
                cow::mkdir_all(new_root).map_err(|e| failure(e.to_string(), vec![]))?;
                nix::mount::mount(Some(IMAGE_MOUNT), new_root, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
                    .map_err(|e| failure(format!("binding the image to {NEW_ROOT}: {e}"), vec![]))?;
                self.report.cow = Some("none (read-only root)".into());
                return Ok(());
            }
            CowSpec::Tmpfs { size } => cow::tmpfs_layer(Path::new(COW_DIR), size).map_err(|e| failure(e.to_string(), vec![]))?,
            CowSpec::Persistent { device, dir } => {
                let medium = search
                    .find_device(device)
                    .ok_or_else(|| failure(format!("viver.cow={device}:{dir}: no such device among the disks found"), search.describe()))?;
                let mounted = match &medium.mounted_at {
                    Some(path) => path.clone(),
                    None => return Err(failure(format!("{device} has no mountable filesystem for the changes"), search.describe())),
                };
                // The medium was mounted read-only like every other; this one we write to.
                nix::mount::mount(None::<&str>, &mounted, None::<&str>, nix::mount::MsFlags::MS_REMOUNT, None::<&str>)
                    .map_err(|e| failure(format!("cannot make {device} writable for the changes: {e}"), vec![]))?;
                keep_medium = Some(mounted.clone());
                let target = mounted.join(dir.trim_start_matches('/'));
                if target.is_file() {
                    // An image file (a filesystem in a file) holds the changes: on FAT
                    // media, which cannot carry an overlay's upper layer, this is the way.
                    let file_mount =
                        self.mount_cow_file(&target, detector).map_err(|e| failure(format!("viver.cow={device}:{dir}: {e}"), vec![]))?;
                    cow::persistent_layer(&file_mount, "/", &image.id, &format!("{device}:{dir}"))
                        .map_err(|e| failure(e.to_string(), vec![]))?
                } else {
                    cow::persistent_layer(&mounted, dir, &image.id, device).map_err(|e| failure(e.to_string(), vec![]))?
                }
            }
        };
        cow::mount_overlay(Path::new(IMAGE_MOUNT), &layer, new_root).map_err(|e| failure(e.to_string(), vec![]))?;
        self.report.cow = Some(layer.description.clone());
        if image.chosen.toram {
            // The image is in RAM: let go of the media so they can be removed.
            release_media_except(keep_medium.as_deref());
        }
        Ok(())
    }

    /// Attaches a copy-on-write image file read-write and mounts the filesystem in it.
    fn mount_cow_file(&self, file: &Path, detector: &Detector) -> Result<PathBuf, String> {
        let fs = crate::disks::superblock::probe_path(file)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{} holds no filesystem VIVER knows (make one with mkfs.ext4)", file.display()))?;
        for alias in fs.kind.module_aliases() {
            let _ = detector.load_module(alias);
        }
        let attached = loopdev::attach(file, Path::new("/dev"), false).map_err(|e| e.to_string())?;
        let target = Path::new(COW_FILE_MOUNT);
        cow::mount_fs(&attached.path, target, fs.kind.mount_type(), nix::mount::MsFlags::MS_NODEV, None).map_err(|e| e.to_string())?;
        Ok(target.to_path_buf())
    }
}

/// After a copy to RAM the media are not needed: detach them so they can be removed.
fn release_media_except(keep: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(MEDIA_DIR) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if Some(path.as_path()) == keep {
            continue;
        }
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
    }
}

//! Images found on the media: each file `/viver/<name>.squashfs` with its manifest
//! `/viver/<name>.toml` on a mounted medium, or a SquashFS written straight to a device.

use super::manifest::Manifest;
use crate::disks::blockdev::BlockDevice;
use crate::disks::superblock::Filesystem;
use std::path::{Path, PathBuf};

/// The folders searched on every medium, in order (the original VIVER's habit of an
/// upper-case variant survives FAT media written on other systems).
pub const IMAGE_DIRS: &[&str] = &["viver", "VIVER"];

#[derive(Debug, Clone)]
pub struct Candidate {
    /// The device that holds it (the partition, or the whole disk).
    pub device: BlockDevice,
    /// The filesystem of that device (for `viver.media=LABEL=...` and the report).
    pub filesystem: Option<Filesystem>,
    /// Where the image's bytes are: a file on the mounted medium, or the device itself.
    pub image_path: PathBuf,
    /// The path a person would type: `/viver/debian.squashfs` on that medium, or `/dev/sdb2`.
    pub medium_path: String,
    pub manifest: Option<Manifest>,
    /// Manifest name, else the file stem, else the device name.
    pub name: String,
    /// Manifest id; a raw device gets `dev:<name>` (nothing to compare it with).
    pub id: String,
    pub created: u64,
}

impl Candidate {
    /// Does `viver.image=` name this candidate? By name, id, file name, or path on the medium.
    pub fn matches(&self, wanted: &str) -> bool {
        let file_name = Path::new(&self.medium_path).file_name().and_then(|n| n.to_str()).unwrap_or("");
        wanted == self.name
            || wanted == self.id
            || wanted == file_name
            || wanted.trim_start_matches('/') == self.medium_path.trim_start_matches('/')
    }
}

/// What was looked at on one medium, for the report when nothing is found.
#[derive(Debug, Default)]
pub struct Findings {
    pub candidates: Vec<Candidate>,
    /// `path: why it is not a candidate`.
    pub rejected: Vec<String>,
}

/// Looks for images on a medium mounted at `mount_dir`.
pub fn find_on_medium(device: &BlockDevice, filesystem: &Filesystem, mount_dir: &Path) -> Findings {
    let mut findings = Findings::default();
    // Read the medium's root once and match case-insensitively: on FAT and ISO 9660
    // `viver` and `VIVER` are one directory, which two lookups would report twice.
    let mut dirs: Vec<String> = std::fs::read_dir(mount_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| IMAGE_DIRS.iter().any(|d| d.eq_ignore_ascii_case(name)))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    for dir_name in &dirs {
        let dir = mount_dir.join(dir_name);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
            let medium_path = format!("/{dir_name}/{file_name}");
            if let Some(stem) = file_name.strip_suffix(".squashfs") {
                let manifest_path = dir.join(format!("{stem}.toml"));
                let manifest = if manifest_path.exists() {
                    match Manifest::load(&manifest_path) {
                        Ok(m) if m.image == file_name => Some(m),
                        Ok(m) => {
                            findings.rejected.push(format!(
                                "{medium_path} on {}: its manifest names another image ({:?})",
                                device.dev_path.display(),
                                m.image
                            ));
                            continue;
                        }
                        Err(e) => {
                            findings.rejected.push(format!("{medium_path} on {}: {e}", device.dev_path.display()));
                            continue;
                        }
                    }
                } else {
                    None
                };
                let (name, id, created) = match &manifest {
                    Some(m) => (m.name.clone(), m.id.clone(), m.created),
                    // No manifest: usable, but it cannot be matched with copies elsewhere.
                    None => (stem.to_string(), format!("file:{}:{medium_path}", device.name), 0),
                };
                findings.candidates.push(Candidate {
                    device: device.clone(),
                    filesystem: Some(filesystem.clone()),
                    image_path: path.clone(),
                    medium_path,
                    manifest,
                    name,
                    id,
                    created,
                });
            }
        }
    }
    findings
}

/// A device whose own superblock is SquashFS is an image with no medium around it.
pub fn raw_device(device: &BlockDevice, filesystem: &Filesystem, dev_path: &Path, mkfs_time: u32) -> Candidate {
    Candidate {
        device: device.clone(),
        filesystem: Some(filesystem.clone()),
        image_path: dev_path.to_path_buf(),
        medium_path: dev_path.display().to_string(),
        manifest: None,
        name: device.name.clone(),
        id: format!("dev:{}", device.name),
        created: u64::from(mkfs_time),
    }
}

//! Every block device and partition the kernel lists in `/sys/class/block`, with the
//! attributes PID 1 needs to choose where to look for the image.
//!
//! All reads go through a sysfs root argument so tests run against fixture trees
//! captured from real QEMU machines (`tests/fixtures/disks/sysfs/`).

use crate::disks::class::{self, AtaController, MediaClass, Transport};
use crate::disks::error::DiskError;
use log::debug;
use nix::sys::stat::{self, Mode, SFlag};
use serde::Serialize;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// Kernel name, e.g. `sda1`.
    pub name: String,
    /// Where the node lives in a standard `/dev`, e.g. `/dev/sda1`.
    pub dev_path: PathBuf,
    pub major: u32,
    pub minor: u32,
    pub size_bytes: u64,
    pub partition: bool,
    /// Whole-disk name for a partition (`sda` for `sda1`).
    pub parent: Option<String>,
    pub class: MediaClass,
    pub transport: Transport,
    pub rotational: bool,
    pub removable: bool,
    pub read_only: bool,
}

/// Devices that can never hold the boot medium: loop devices are ours to create
/// later, RAM disks and zram are empty, device-mapper/md/nbd need userspace setup
/// that does not exist in the initramfs.
const IGNORED_PREFIXES: &[&str] = &["loop", "ram", "zram", "dm-", "md", "nbd"];

/// Lists every whole disk and partition under `<sysfs>/class/block`, sorted by name.
/// A disk with partitions is still listed: SquashFS may be written to the whole disk.
/// Devices of size 0 (empty card readers, CD drives without a disc) are left out.
/// A device whose attributes cannot be read is logged and skipped, not fatal.
pub fn scan(sysfs: &Path) -> Result<Vec<BlockDevice>, DiskError> {
    let sysfs = fs::canonicalize(sysfs).map_err(|source| DiskError::Sysfs { path: sysfs.to_path_buf(), source })?;
    let class_dir = sysfs.join("class/block");
    let entries = fs::read_dir(&class_dir).map_err(|source| DiskError::Sysfs { path: class_dir.clone(), source })?;
    let mut devices = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DiskError::Sysfs { path: class_dir.clone(), source })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if IGNORED_PREFIXES.iter().any(|p| name.starts_with(p)) || is_emmc_hardware_partition(&name) {
            continue;
        }
        match read_device(&sysfs, &name) {
            Ok(Some(dev)) => devices.push(dev),
            Ok(None) => debug!("disks: {name} is empty or hidden, skipped"),
            // Usually a device caught while the kernel is still creating it: the next scan
            // sees it whole. Debug level, or a truly broken one would flood the console.
            Err(e) => debug!("disks: skipping {name} for now: {e}"),
        }
    }
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(devices)
}

fn read_device(sysfs: &Path, name: &str) -> Result<Option<BlockDevice>, DiskError> {
    let link = sysfs.join("class/block").join(name);
    let dir = fs::canonicalize(&link).map_err(|source| DiskError::Sysfs { path: link.clone(), source })?;
    let partition = dir.join("partition").exists();
    // Partitions carry only dev/size/ro: the rest is an attribute of the whole disk,
    // which is the parent directory.
    let disk_dir = if partition { dir.parent().unwrap_or(&dir).to_path_buf() } else { dir.clone() };
    let parent = if partition { disk_dir.file_name().map(|n| n.to_string_lossy().into_owned()) } else { None };

    // NVMe multipath controller paths (nvme0c0n1) are hidden: no node, the
    // subsystem's nvme0n1 is the device to use.
    if read_flag(&dir.join("hidden")) == Some(true) {
        return Ok(None);
    }
    let (major, minor) = parse_dev(&dir.join("dev"))?;
    let size_bytes = read_u64(&dir.join("size"))?.saturating_mul(512);
    if size_bytes == 0 {
        return Ok(None);
    }
    let read_only = read_flag(&dir.join("ro")).unwrap_or(false);
    let removable = read_flag(&disk_dir.join("removable")).unwrap_or(false);
    // No queue/rotational (old or odd drivers): assume spinning, the slower guess.
    let rotational = read_flag(&disk_dir.join("queue/rotational")).unwrap_or(true);
    // mmc devices have a textual `type` ("SD", "MMC"); only SCSI's numeric one counts.
    let scsi_type = read_trimmed(&disk_dir.join("device/type")).and_then(|t| t.parse::<u32>().ok());

    let devices_root = sysfs.join("devices");
    let device_path = dir.strip_prefix(&devices_root).unwrap_or(&dir).to_path_buf();
    let disk_name = parent.as_deref().unwrap_or(name);
    let transport = class::transport_from_path(disk_name, &device_path, |controller| ata_controller(&devices_root.join(controller)));
    let class = class::media_class(transport, rotational, scsi_type, disk_name);

    Ok(Some(BlockDevice {
        name: name.to_string(),
        dev_path: Path::new("/dev").join(node_name(name)),
        major,
        minor,
        size_bytes,
        partition,
        parent,
        class,
        transport,
        rotational,
        removable,
        read_only,
    }))
}

/// eMMC boot areas (`mmcblk0boot0`) are small, force-read-only firmware partitions and
/// `mmcblk0rpmb` is an authenticated store: neither can carry the image.
fn is_emmc_hardware_partition(name: &str) -> bool {
    name.strip_prefix("mmcblk").is_some_and(|rest| {
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        rest.starts_with("boot") || rest == "rpmb"
    })
}

/// sysfs spells `/` in device names as `!` (`cciss!c0d0` is `/dev/cciss/c0d0`).
fn node_name(name: &str) -> String {
    name.replace('!', "/")
}

fn ata_controller(dir: &Path) -> AtaController {
    let pci_class = read_trimmed(&dir.join("class")).and_then(|c| u32::from_str_radix(c.trim_start_matches("0x"), 16).ok());
    let driver = fs::read_link(dir.join("driver")).ok().and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));
    AtaController { pci_class, driver }
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_attr(path: &Path) -> Result<String, DiskError> {
    fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|source| DiskError::Sysfs { path: path.to_path_buf(), source })
}

fn read_u64(path: &Path) -> Result<u64, DiskError> {
    let value = read_attr(path)?;
    value.parse().map_err(|_| DiskError::BadAttribute { path: path.to_path_buf(), value, reason: "not a number" })
}

fn read_flag(path: &Path) -> Option<bool> {
    match read_trimmed(path)?.as_str() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

fn parse_dev(path: &Path) -> Result<(u32, u32), DiskError> {
    let value = read_attr(path)?;
    let parsed = value.split_once(':').and_then(|(ma, mi)| Some((ma.parse().ok()?, mi.parse().ok()?)));
    parsed.ok_or(DiskError::BadAttribute { path: path.to_path_buf(), value, reason: "expected MAJOR:MINOR" })
}

/// The device node of `dev` under `dev_dir` (normally `/dev`). devtmpfs creates it as
/// soon as the driver binds; if it is missing (no devtmpfs, a race) it is created with
/// mknod. An existing node with other numbers or of another type is an error, never
/// silently used: mounting the wrong disk would be worse than failing.
pub fn ensure_node(dev: &BlockDevice, dev_dir: &Path) -> Result<PathBuf, DiskError> {
    let path = dev_dir.join(node_name(&dev.name));
    let wanted = stat::makedev(u64::from(dev.major), u64::from(dev.minor));
    match fs::metadata(&path) {
        Ok(meta) => {
            if !meta.file_type().is_block_device() {
                return Err(DiskError::Node { path, reason: "exists but is not a block device".into() });
            }
            if meta.rdev() != wanted {
                return Err(DiskError::Node {
                    path,
                    reason: format!(
                        "has device number {}:{}, expected {}:{}",
                        stat::major(meta.rdev()),
                        stat::minor(meta.rdev()),
                        dev.major,
                        dev.minor
                    ),
                });
            }
            Ok(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)
                    .map_err(|e| DiskError::Node { path: path.clone(), reason: format!("cannot create {}: {e}", dir.display()) })?;
            }
            stat::mknod(&path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), wanted)
                .map_err(|e| DiskError::Node { path: path.clone(), reason: format!("mknod {}:{} failed: {e}", dev.major, dev.minor) })?;
            debug!("disks: created {} ({}:{})", path.display(), dev.major, dev.minor);
            Ok(path)
        }
        Err(e) => Err(DiskError::Node { path, reason: format!("cannot stat: {e}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emmc_boot_areas_are_not_media() {
        assert!(is_emmc_hardware_partition("mmcblk0boot1"));
        assert!(is_emmc_hardware_partition("mmcblk1rpmb"));
        assert!(!is_emmc_hardware_partition("mmcblk0p1"));
        assert!(!is_emmc_hardware_partition("mmcblk0"));
    }

    #[test]
    fn node_name_turns_bang_into_slash() {
        assert_eq!(node_name("cciss!c0d0p1"), "cciss/c0d0p1");
        assert_eq!(node_name("sda1"), "sda1");
    }

    #[test]
    fn ensure_node_rejects_a_regular_file() {
        let dir = std::env::temp_dir().join(format!("viver-disks-node-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("sdz"), b"x").unwrap();
        let dev = BlockDevice { dev_path: "/dev/sdz".into(), ..sample("sdz", 8, 400) };
        let err = ensure_node(&dev, &dir).unwrap_err();
        assert!(err.to_string().contains("not a block device"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// mknod needs CAP_MKNOD: as root the node is created and then recognised; as
    /// anyone else the error must name mknod and the numbers.
    #[test]
    fn ensure_node_creates_then_reuses_then_rejects_other_numbers() {
        let dir = std::env::temp_dir().join(format!("viver-disks-mknod-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut dev = sample("cciss!c0d0p1", 7, 200);
        match ensure_node(&dev, &dir) {
            Ok(path) => {
                assert_eq!(path, dir.join("cciss/c0d0p1"));
                let meta = fs::metadata(&path).unwrap();
                assert!(meta.file_type().is_block_device());
                assert_eq!((stat::major(meta.rdev()), stat::minor(meta.rdev())), (7, 200));
                assert_eq!(ensure_node(&dev, &dir).unwrap(), path);
                dev.minor = 201;
                let err = ensure_node(&dev, &dir).unwrap_err().to_string();
                assert!(err.contains("7:200") && err.contains("7:201"), "{err}");
            }
            Err(e) => {
                // SAFETY: geteuid has no preconditions and cannot fail.
                assert_ne!(unsafe { libc::geteuid() }, 0, "root could not mknod: {e}");
                assert!(e.to_string().contains("mknod 7:200"), "{e}");
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    fn sample(name: &str, major: u32, minor: u32) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            dev_path: Path::new("/dev").join(node_name(name)),
            major,
            minor,
            size_bytes: 1,
            partition: false,
            parent: None,
            class: MediaClass::Hdd,
            transport: Transport::Sata,
            rotational: true,
            removable: false,
            read_only: false,
        }
    }
}

//! The disk stage: every block device probed once, every filesystem on it mounted
//! read-only under /run/viver/media/<name>, and on each medium the images and
//! `viver.conf` files it carries.

use crate::boot::report::DeviceReport;
use crate::boot::settings::{ConfFile, ConfSource};
use crate::disks::blockdev::{self, BlockDevice};
use crate::disks::superblock::{self, Filesystem, FsKind};
use crate::hardware::detect::Detector;
use crate::image::candidate::{self, Candidate};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where each medium is mounted.
pub const MEDIA_DIR: &str = "/run/viver/media";

/// Where `viver.conf` may sit on a medium, in the original VIVER's order.
pub const CONF_PATHS: &[&str] = &["viver.conf", "etc/viver.conf", "viver/viver.conf", "VIVER/viver.conf"];

#[derive(Debug, Clone)]
pub struct Medium {
    pub device: BlockDevice,
    pub filesystem: Option<Filesystem>,
    pub mounted_at: Option<PathBuf>,
    pub report: DeviceReport,
    /// The probe failed in a way that may pass (device not ready yet).
    pub retry: bool,
}

#[derive(Default)]
pub struct MediaSearch {
    /// Every device seen, by kernel name (`sda1`), with what was made of it.
    pub media: BTreeMap<String, Medium>,
    pub candidates: Vec<Candidate>,
    /// Image files that were found but could not be candidates, with the reason.
    pub rejected: Vec<String>,
    pub confs: Vec<ConfFile>,
    /// `viver.conf` files that were found but could not be read, one sentence each.
    pub conf_problems: Vec<String>,
    /// Whole disks with a partition table whose partitions had not appeared yet, and
    /// when they were first seen: probed again until their partitions show up.
    deferred: BTreeMap<String, std::time::Instant>,
    /// The search ended at the fastest medium before the hardware settled.
    pub stopped_early: bool,
    /// Candidates (device, path) already tried and rejected.
    pub tried: Vec<(String, String)>,
    /// Why each tried candidate was rejected, one line each.
    pub rejections: Vec<String>,
}

/// How long a disk with a partition table may stay without partitions before it is
/// taken as it is (an empty table), and a disk that is not ready may stay so.
const PARTITIONS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Does the device start with an MBR signature (also the protective MBR of GPT)?
fn has_partition_table(dev_path: &Path) -> bool {
    use std::io::Read;
    let mut sector = [0u8; 512];
    std::fs::File::open(dev_path).and_then(|mut f| f.read_exact(&mut sector)).is_ok() && sector[510..] == [0x55, 0xAA]
}

impl MediaSearch {
    /// Probes the devices not seen before, fastest class first, and stops after the first
    /// one that carries an image so the caller can decide whether slower ones matter.
    /// Returns true when devices were left unprobed for that reason.
    pub fn scan(&mut self, detector: &Detector, sysfs: &Path, dev_dir: &Path) -> Result<bool, String> {
        let mut devices = blockdev::scan(sysfs).map_err(|e| format!("listing block devices in {}: {e}", sysfs.display()))?;
        devices.retain(|d| !self.media.contains_key(&d.name));
        devices.sort_by_key(|d| (crate::disks::rank::class_rank(d.class, d.rotational), d.name.clone()));
        let parents: Vec<String> = devices.iter().filter_map(|d| d.parent.clone()).collect();
        let known_parents: Vec<String> = self.media.values().filter_map(|m| m.device.parent.clone()).collect();
        let total = devices.len();
        for (index, device) in devices.into_iter().enumerate() {
            let name = device.name.clone();
            // The kernel lists a disk a moment before the partitions it is still reading
            // from its table: such a disk is probed again until they are there.
            let may_await_partitions = !device.partition
                && device.class != crate::disks::class::MediaClass::Optical
                && !parents.contains(&name)
                && !known_parents.contains(&name);
            let candidates_before = self.candidates.len();
            let medium = self.probe(device, detector, dev_dir);
            let awaiting_partitions = may_await_partitions
                && medium.filesystem.is_none()
                && medium.report.size_bytes > 0
                && has_partition_table(&medium.device.dev_path);
            if awaiting_partitions || medium.retry {
                let first_seen = *self.deferred.entry(name.clone()).or_insert_with(std::time::Instant::now);
                if first_seen.elapsed() < PARTITIONS_GRACE {
                    continue;
                }
            }
            self.media.insert(name, medium);
            if self.candidates.len() > candidates_before && index + 1 < total {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn probe(&mut self, device: BlockDevice, detector: &Detector, dev_dir: &Path) -> Medium {
        let mut report = DeviceReport {
            device: device.dev_path.display().to_string(),
            media: device.class.to_string(),
            size_bytes: device.size_bytes,
            removable: device.removable,
            rotational: device.rotational,
            ..DeviceReport::default()
        };
        let mut medium = Medium { device: device.clone(), filesystem: None, mounted_at: None, report: report.clone(), retry: false };
        if device.size_bytes == 0 {
            // An empty CD drive or card reader: nothing to read, and reading would block.
            report.note = Some("no medium (size 0)".into());
            medium.report = report;
            return medium;
        }
        let dev_path = match blockdev::ensure_node(&device, dev_dir) {
            Ok(path) => path,
            Err(e) => {
                report.note = Some(format!("no device node: {e}"));
                medium.report = report;
                return medium;
            }
        };
        log::debug!("disks: probing {}", dev_path.display());
        let filesystem = match superblock::probe_path(&dev_path) {
            Ok(Some(fs)) => fs,
            Ok(None) => {
                report.note = Some("no filesystem recognised".into());
                medium.report = report;
                return medium;
            }
            Err(e) => {
                // ENXIO: the node is there but the disk behind it is not ready yet (a USB
                // stick still being set up): worth another look.
                medium.retry = matches!(&e, crate::disks::DiskError::Open { source, .. } if source.raw_os_error() == Some(libc::ENXIO));
                report.note = Some(format!("unreadable: {e}"));
                medium.report = report;
                return medium;
            }
        };
        report.filesystem = Some(filesystem.kind.mount_type().to_string());
        report.label = filesystem.label.clone();
        report.uuid = filesystem.uuid.clone();
        medium.filesystem = Some(filesystem.clone());

        if filesystem.kind == FsKind::Squashfs {
            // A SquashFS written straight to the device is itself a candidate image.
            match crate::image::verify::quick(&dev_path, None) {
                Ok(info) => {
                    self.candidates.push(candidate::raw_device(&device, &filesystem, &dev_path, info.mkfs_time));
                    report.note = Some("SquashFS on the device itself".into());
                }
                Err(e) => report.note = Some(e.to_string()),
            }
            medium.report = report;
            return medium;
        }

        log::debug!("disks: {} has {}; loading its driver", dev_path.display(), filesystem.kind.mount_type());
        for alias in filesystem.kind.module_aliases() {
            if let Err(e) = detector.load_module(alias) {
                log::debug!("{}: module {alias}: {e} (trying the mount anyway)", device.name);
            }
        }
        let target = Path::new(MEDIA_DIR).join(&device.name);
        if let Err(e) = std::fs::create_dir_all(&target) {
            report.note = Some(format!("cannot create {}: {e}", target.display()));
            medium.report = report;
            return medium;
        }
        match crate::disks::mount::mount_readonly(&dev_path, &filesystem, &target) {
            Ok(()) => {
                report.mounted_at = Some(target.display().to_string());
                medium.mounted_at = Some(target.clone());
                let findings = candidate::find_on_medium(&device, &filesystem, &target);
                if findings.candidates.is_empty() && findings.rejected.is_empty() {
                    report.note = Some("mounted, no image in /viver".into());
                }
                self.candidates.extend(findings.candidates);
                self.rejected.extend(findings.rejected);
                self.read_confs(&device, &filesystem, &target);
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&target);
                report.note = Some(format!("mount failed: {e}"));
            }
        }
        log::debug!("{}: {} {:?}", device.name, device.class, report.note);
        medium.report = report;
        medium
    }

    fn read_confs(&mut self, device: &BlockDevice, filesystem: &Filesystem, mounted_at: &Path) {
        use std::os::unix::fs::MetadataExt;
        // On case-insensitive media two of the paths can be the same file: read it once.
        let mut read = Vec::new();
        for rel in CONF_PATHS {
            let path = mounted_at.join(rel);
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if read.contains(&meta.ino()) {
                continue;
            }
            read.push(meta.ino());
            let origin = format!("{}:/{rel}", device.dev_path.display());
            match std::fs::read(&path).map(String::from_utf8) {
                Ok(Ok(text)) => {
                    log::info!("found {} on {}", rel, device.dev_path.display());
                    let source = ConfSource::Medium {
                        dev_path: device.dev_path.display().to_string(),
                        label: filesystem.label.clone(),
                        uuid: filesystem.uuid.clone(),
                    };
                    self.confs.push(ConfFile { origin, text, source });
                }
                Ok(Err(_)) => self.conf_problems.push(format!("{origin}: not UTF-8 text, ignored")),
                Err(e) => self.conf_problems.push(format!("{origin}: cannot read it: {e}")),
            }
        }
    }

    /// A device named by `/dev/x`, `LABEL=x` or `UUID=x`, among those probed.
    pub fn find_device(&self, spec: &str) -> Option<&Medium> {
        self.media.values().find(|m| {
            if let Some(label) = spec.strip_prefix("LABEL=") {
                m.filesystem.as_ref().and_then(|f| f.label.as_deref()) == Some(label)
            } else if let Some(uuid) = spec.strip_prefix("UUID=") {
                m.filesystem.as_ref().and_then(|f| f.uuid.as_deref()).is_some_and(|u| u.eq_ignore_ascii_case(uuid))
            } else {
                m.device.dev_path == Path::new(spec)
            }
        })
    }

    /// One line per device, for a failure report.
    pub fn describe(&self) -> Vec<String> {
        self.media
            .values()
            .map(|m| {
                let r = &m.report;
                format!(
                    "{} ({}, {} MB): {}{}",
                    r.device,
                    r.media,
                    r.size_bytes / 1_000_000,
                    r.filesystem.as_deref().map(|f| format!("{f}, ")).unwrap_or_default(),
                    r.note.as_deref().unwrap_or("mounted")
                )
            })
            .collect()
    }

    pub fn reports(&self) -> Vec<DeviceReport> {
        self.media.values().map(|m| m.report.clone()).collect()
    }
}

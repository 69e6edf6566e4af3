//! The order in which PID 1 searches media for the image: the user's `viver.media=`
//! first, then the documented class order
//! NVMe > virtio > SATA/SCSI SSD > SATA/SCSI/IDE HDD > USB > SD/MMC > optical,
//! then, between media of the same class, the faster measured read.

use crate::disks::blockdev::BlockDevice;
use crate::disks::class::MediaClass;
use crate::disks::error::DiskError;
use crate::disks::superblock::Filesystem;
use log::debug;
use std::cmp::Ordering;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

pub use crate::disks::selector::{parse_media, MediaSelector};

/// Position in the documented order, lower = searched first. `rotational` corrects
/// the SSD/HDD split when the caller knows better than the class (it is the same
/// sysfs flag the class was derived from, so normally it agrees).
pub fn class_rank(class: MediaClass, rotational: bool) -> u32 {
    match class {
        MediaClass::Nvme => 0,
        MediaClass::Virtio => 1,
        MediaClass::Ssd | MediaClass::Hdd => {
            if rotational {
                3
            } else {
                2
            }
        }
        MediaClass::Usb => 4,
        MediaClass::Mmc => 5,
        MediaClass::Optical => 6,
        MediaClass::Unknown => 7,
    }
}

/// Sequential read speed of a device in MB/s (10^6 bytes per second) over its first
/// `bytes` (or less if the device is smaller). The page cache is dropped first so the
/// 128 KiB the superblock probe already read do not flatter the result.
pub fn measure_read_mbps(dev_path: &Path, bytes: u64) -> Result<f64, DiskError> {
    let mut file = File::open(dev_path).map_err(|source| DiskError::Open { path: dev_path.to_path_buf(), source })?;
    // Advisory only: failing to drop the cache just makes the number optimistic.
    let _ = nix::fcntl::posix_fadvise(file.as_fd(), 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    let mut buf = vec![0u8; 1 << 20];
    let mut total: u64 = 0;
    let start = Instant::now();
    while total < bytes {
        let want = usize::try_from((bytes - total).min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf.get_mut(..want).unwrap_or_default();
        match file.read(chunk) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => return Err(DiskError::Read { device: dev_path.display().to_string(), offset: total, source }),
        }
    }
    if total == 0 {
        return Err(DiskError::EmptyRead { path: dev_path.to_path_buf() });
    }
    // A 1 µs floor keeps a cached or tiny read from dividing by zero.
    let secs = start.elapsed().as_secs_f64().max(1e-6);
    let mbps = total as f64 / 1e6 / secs;
    debug!("disks: {} read {total} bytes in {secs:.3}s = {mbps:.1} MB/s", dev_path.display());
    Ok(mbps)
}

/// Stable sort of `items` into search order: media the selector names first (in the
/// order it names them), then by [`class_rank`]. Items the selector does not name keep
/// their class order after those it does.
pub fn order<T>(items: &mut [T], key: impl Fn(&T) -> (&BlockDevice, Option<&Filesystem>), selector: Option<&MediaSelector>) {
    order_with_speed(
        items,
        |item| {
            let (dev, fs) = key(item);
            (dev, fs, None)
        },
        selector,
    );
}

/// [`order`], with a measured speed (MB/s, from [`measure_read_mbps`]) breaking ties
/// within a class: faster first. Items without a measurement come after measured ones
/// of the same class.
pub fn order_with_speed<T>(
    items: &mut [T],
    key: impl Fn(&T) -> (&BlockDevice, Option<&Filesystem>, Option<f64>),
    selector: Option<&MediaSelector>,
) {
    let sort_key = |item: &T| {
        let (dev, fs, speed) = key(item);
        let preference = selector.map_or(0, |s| s.preference(dev, fs).unwrap_or(usize::MAX));
        (preference, class_rank(dev.class, dev.rotational), speed)
    };
    items.sort_by(|a, b| {
        let (pa, ca, sa) = sort_key(a);
        let (pb, cb, sb) = sort_key(b);
        pa.cmp(&pb).then(ca.cmp(&cb)).then_with(|| faster_first(sa, sb))
    });
}

/// Faster first; no measurement (or a NaN/infinite one from a caller) after any real
/// one. `total_cmp` keeps the order total: sort_by may panic on an inconsistent one.
fn faster_first(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a.filter(|v| v.is_finite()), b.filter(|v| v.is_finite())) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disks::class::Transport;
    use crate::disks::superblock::FsKind;

    fn dev(name: &str, class: MediaClass, rotational: bool) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            dev_path: format!("/dev/{name}").into(),
            major: 8,
            minor: 0,
            size_bytes: 1 << 30,
            partition: false,
            parent: None,
            class,
            transport: Transport::Unknown,
            rotational,
            removable: false,
            read_only: false,
        }
    }

    fn names(items: &[(BlockDevice, Option<Filesystem>, Option<f64>)]) -> Vec<&str> {
        items.iter().map(|(d, _, _)| d.name.as_str()).collect()
    }

    fn sample() -> Vec<(BlockDevice, Option<Filesystem>, Option<f64>)> {
        let fs = |label: &str| Some(Filesystem { kind: FsKind::Vfat, label: Some(label.into()), uuid: Some("1234-ABCD".into()) });
        vec![
            (dev("sr0", MediaClass::Optical, true), None, None),
            (dev("sdc1", MediaClass::Usb, true), fs("STICK"), None),
            (dev("mmcblk0p1", MediaClass::Mmc, false), None, None),
            (dev("sda", MediaClass::Hdd, true), None, Some(80.0)),
            (dev("sdb", MediaClass::Hdd, true), None, Some(150.0)),
            (dev("sdd", MediaClass::Ssd, false), None, None),
            (dev("vda", MediaClass::Virtio, true), None, None),
            (dev("nvme0n1", MediaClass::Nvme, false), None, None),
        ]
    }

    #[test]
    fn documented_class_order_is_stable() {
        let mut items = sample();
        order(&mut items, |(d, f, _)| (d, f.as_ref()), None);
        assert_eq!(names(&items), ["nvme0n1", "vda", "sdd", "sda", "sdb", "sdc1", "mmcblk0p1", "sr0"]);
    }

    #[test]
    fn measured_speed_breaks_ties_within_a_class() {
        let mut items = sample();
        order_with_speed(&mut items, |(d, f, s)| (d, f.as_ref(), *s), None);
        assert_eq!(names(&items), ["nvme0n1", "vda", "sdd", "sdb", "sda", "sdc1", "mmcblk0p1", "sr0"]);
    }

    #[test]
    fn nan_speeds_sort_like_unmeasured() {
        let mut items = sample();
        items[3].2 = Some(f64::NAN);
        items[4].2 = Some(f64::INFINITY);
        items[0].2 = Some(f64::NAN);
        order_with_speed(&mut items, |(d, f, s)| (d, f.as_ref(), *s), None);
        assert_eq!(names(&items), ["nvme0n1", "vda", "sdd", "sda", "sdb", "sdc1", "mmcblk0p1", "sr0"]);
    }

    #[test]
    fn selector_comes_first() {
        let mut items = sample();
        let usb_hdd = parse_media("usb,hdd").unwrap();
        order(&mut items, |(d, f, _)| (d, f.as_ref()), Some(&usb_hdd));
        assert_eq!(names(&items), ["sdc1", "sda", "sdb", "nvme0n1", "vda", "sdd", "mmcblk0p1", "sr0"]);

        let label = parse_media("LABEL=stick").unwrap();
        order(&mut items, |(d, f, _)| (d, f.as_ref()), Some(&label));
        assert_eq!(names(&items)[0], "sdc1");

        let device = parse_media("/dev/sr0").unwrap();
        order(&mut items, |(d, f, _)| (d, f.as_ref()), Some(&device));
        assert_eq!(names(&items)[0], "sr0");
    }

    #[test]
    fn rotation_splits_sata_classes() {
        assert!(class_rank(MediaClass::Nvme, false) < class_rank(MediaClass::Virtio, true));
        assert!(class_rank(MediaClass::Ssd, false) < class_rank(MediaClass::Hdd, true));
        assert!(class_rank(MediaClass::Hdd, true) < class_rank(MediaClass::Usb, false));
        assert!(class_rank(MediaClass::Mmc, false) < class_rank(MediaClass::Optical, true));
    }

    #[test]
    fn measures_a_file_and_rejects_an_empty_one() {
        let path = std::env::temp_dir().join(format!("viver-disks-speed-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 3 << 20]).unwrap();
        let mbps = measure_read_mbps(&path, 4 << 20).unwrap();
        assert!(mbps > 0.0 && mbps.is_finite());
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(measure_read_mbps(&path, 4 << 20), Err(DiskError::EmptyRead { .. })));
        std::fs::remove_file(&path).unwrap();
    }
}

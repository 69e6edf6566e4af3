//! Media that are slow to show up. A USB stick appears only after hub debouncing,
//! reset, enumeration, the usb-storage probe and a SCSI scan; an SD card after the
//! host's card-detect delay. Those gaps can outlast the hardware stage's quiet period, and
//! a boot that stops looking then takes the CD it already found while the faster USB
//! stick is still on its way (live-boot's classic "no medium found" in reverse).
//!
//! So when a controller for such media is present and has shown no disk yet, and it could
//! beat the best candidate found, the disk stage waits a little longer for it
//! (`viver.media_wait=`). Controllers that report their disks within their own probe
//! (virtio, NVMe, AHCI, IDE) need no such grace.

use crate::disks::class::MediaClass;
use crate::disks::controllers;
use crate::disks::rank::class_rank;
use std::path::Path;

/// The best class of medium each storage controller present could bring (the rows of
/// [`crate::disks::controllers`] found in `sysfs`).
pub fn controller_classes(sysfs: &Path) -> Vec<MediaClass> {
    let mut classes = Vec::new();
    for controller in controllers::present(sysfs) {
        if !classes.contains(&controller.medium) {
            classes.push(controller.medium);
        }
    }
    classes
}

/// The classes whose media come late (USB sticks, SD cards: the table's `late` rows),
/// among `controllers`.
pub fn late_classes(present: &[MediaClass]) -> Vec<MediaClass> {
    present.iter().copied().filter(|class| controllers::CONTROLLERS.iter().any(|c| c.late && c.medium == *class)).collect()
}

/// The late classes still worth waiting for: present, not yet seen on any block device,
/// and better than the best candidate so far (`best_rank`, lower is better; None when
/// there is no candidate yet, in which case anything is worth waiting for).
pub fn worth_waiting_for(present: &[MediaClass], seen: &[MediaClass], best_rank: Option<u32>) -> Vec<MediaClass> {
    present
        .iter()
        .copied()
        .filter(|class| !seen.contains(class))
        .filter(|class| best_rank.is_none_or(|best| class_rank(*class, false) < best))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cd_waits_for_usb_but_a_virtio_disk_does_not() {
        let present = [MediaClass::Usb, MediaClass::Mmc];
        let cd = class_rank(MediaClass::Optical, false);
        assert_eq!(worth_waiting_for(&present, &[], Some(cd)), vec![MediaClass::Usb, MediaClass::Mmc]);
        let virtio = class_rank(MediaClass::Virtio, false);
        assert!(worth_waiting_for(&present, &[], Some(virtio)).is_empty());
        // A stick already seen (even without an image) is not waited for again.
        assert_eq!(worth_waiting_for(&present, &[MediaClass::Usb], Some(cd)), vec![MediaClass::Mmc]);
    }

    #[test]
    fn reads_pci_classes_from_sysfs() {
        let root = std::env::temp_dir().join(format!("viver-late-media-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (dev, class) in [("0000:00:04.0", "0x0c0330"), ("0000:00:1f.2", "0x010601"), ("0000:00:05.0", "0x080501")] {
            let dir = root.join("bus/pci/devices").join(dev);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("class"), format!("{class}\n")).unwrap();
        }
        let virtio = root.join("bus/pci/devices/0000:00:06.0");
        std::fs::create_dir_all(&virtio).unwrap();
        std::fs::write(virtio.join("class"), "0x010000\n").unwrap();
        std::fs::write(virtio.join("vendor"), "0x1af4\n").unwrap();
        let controllers = controller_classes(&root);
        for class in [MediaClass::Usb, MediaClass::Ssd, MediaClass::Mmc, MediaClass::Virtio] {
            assert!(controllers.contains(&class), "{class:?} missing from {controllers:?}");
        }
        assert_eq!(controllers.len(), 4);
        let present = late_classes(&controllers);
        assert_eq!(present.len(), 2, "{present:?}");
        assert!(present.contains(&MediaClass::Usb) && present.contains(&MediaClass::Mmc));
        assert!(controller_classes(&root.join("nowhere")).is_empty());
    }
}

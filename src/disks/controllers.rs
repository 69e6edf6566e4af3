//! The one table from a PCI storage controller (class code, and vendor for virtio) to
//! what it means for the boot: the best class of medium it can bring, the transport of
//! its disks, when its driver loads, and the storage stack it needs on kernels that
//! only have the legacy module maps.
//!
//! Everyone who reasons about controllers derives from [`CONTROLLERS`]: the hardware
//! stage's load order (`hardware::detect`), the legacy maps' storage stacks
//! (`hardware::legacy`), AHCI vs IDE (`disks::class`), and the disk stage's early stop
//! and late-media wait (`boot::late_media`). The early stop is only sound while these
//! agree, which is why there is one table.

use super::kinds::{MediaClass, Transport};

/// Red Hat's PCI vendor id, which virtio devices carry.
pub const VIRTIO_VENDOR: u32 = 0x1af4;

/// One kind of storage controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controller {
    /// What the table row is, for messages.
    pub name: &'static str,
    /// PCI base class << 8 | subclass (0x0106 for SATA/AHCI).
    pub class: u16,
    /// Match on the base class only (the subclass is ignored).
    pub any_subclass: bool,
    /// Only for this vendor (virtio); `None`: any vendor.
    pub vendor: Option<u32>,
    /// The best class of medium this controller can bring (a SATA port may carry an SSD).
    pub medium: MediaClass,
    /// The transport of the disks behind it.
    pub transport: Transport,
    /// Load order of its driver: 0 first (fast storage, loaded before anything else).
    pub tier: u8,
    /// Its disks appear some time after its driver is in (hub enumeration, card
    /// detect), so the disk stage may wait a little for them (`viver.media_wait`).
    pub late: bool,
    /// The storage stack its disks need once its driver is in, on kernels whose only
    /// tables are modules.pcimap/usbmap (their disks have no modalias of their own).
    pub followers: &'static [&'static str],
}

const SCSI_STACK: &[&str] = &["sd_mod", "sr_mod", "ide_disk", "ide_cd", "ide_gd_mod", "ide_cd_mod"];

/// The tier of every device that is no storage controller.
pub const OTHER_TIER: u8 = 6;

/// First match wins: the vendor-specific row (virtio) comes before the generic ones,
/// the catch-all of the mass-storage base class last.
pub const CONTROLLERS: &[Controller] = &[
    Controller {
        name: "virtio storage",
        class: 0x0100,
        any_subclass: true,
        vendor: Some(VIRTIO_VENDOR),
        medium: MediaClass::Virtio,
        transport: Transport::Virtio,
        tier: 0,
        late: false,
        followers: SCSI_STACK,
    },
    Controller {
        name: "NVMe",
        class: 0x0108,
        any_subclass: false,
        vendor: None,
        medium: MediaClass::Nvme,
        transport: Transport::Nvme,
        tier: 0,
        late: false,
        followers: SCSI_STACK,
    },
    Controller {
        name: "SATA (AHCI)",
        class: 0x0106,
        any_subclass: false,
        vendor: None,
        medium: MediaClass::Ssd,
        transport: Transport::Sata,
        tier: 1,
        late: false,
        followers: SCSI_STACK,
    },
    Controller {
        name: "SCSI",
        class: 0x0100,
        any_subclass: false,
        vendor: None,
        medium: MediaClass::Ssd,
        transport: Transport::Scsi,
        tier: 2,
        late: false,
        followers: SCSI_STACK,
    },
    Controller {
        name: "RAID",
        class: 0x0104,
        any_subclass: false,
        vendor: None,
        medium: MediaClass::Ssd,
        transport: Transport::Scsi,
        tier: 2,
        late: false,
        followers: SCSI_STACK,
    },
    Controller {
        name: "SAS",
        class: 0x0107,
        any_subclass: false,
        vendor: None,
        medium: MediaClass::Ssd,
        transport: Transport::Scsi,
        tier: 2,
        late: false,
        followers: SCSI_STACK,
    },
    Controller {
        name: "IDE",
        class: 0x0101,
        any_subclass: false,
        vendor: None,
        medium: MediaClass::Ssd,
        transport: Transport::Ide,
        tier: 3,
        late: false,
        followers: SCSI_STACK,
    },
    Controller {
        name: "other mass storage",
        class: 0x0100,
        any_subclass: true,
        vendor: None,
        medium: MediaClass::Ssd,
        transport: Transport::Scsi,
        tier: 3,
        late: false,
        followers: SCSI_STACK,
    },
    Controller {
        name: "USB host",
        class: 0x0c03,
        any_subclass: false,
        vendor: None,
        medium: MediaClass::Usb,
        transport: Transport::Usb,
        tier: 4,
        late: true,
        followers: &["usb_storage", "uas", "sd_mod", "sr_mod"],
    },
    Controller {
        name: "FireWire",
        class: 0x0c00,
        any_subclass: false,
        vendor: None,
        // sbp2 disks are SCSI disks: an SSD on FireWire ranks as an SSD.
        medium: MediaClass::Ssd,
        transport: Transport::Scsi,
        tier: 4,
        // Waiting for late media is by class of medium; an SSD class is not waited for.
        late: false,
        followers: &["firewire_sbp2", "sbp2", "sd_mod", "sr_mod"],
    },
    Controller {
        name: "SD host",
        class: 0x0805,
        any_subclass: false,
        vendor: None,
        medium: MediaClass::Mmc,
        transport: Transport::Mmc,
        tier: 5,
        late: true,
        followers: &["mmc_block"],
    },
];

impl Controller {
    fn matches(&self, vendor: u32, class: u32) -> bool {
        let code = (class >> 8) as u16;
        let class_ok = if self.any_subclass { code >> 8 == self.class >> 8 } else { code == self.class };
        class_ok && self.vendor.is_none_or(|v| v == vendor)
    }
}

/// The row for a PCI device: `vendor` its vendor id, `class` its 24-bit class code
/// (base class << 16 | subclass << 8 | prog-if, as sysfs and modaliases give it).
pub fn controller(vendor: u32, class: u32) -> Option<&'static Controller> {
    CONTROLLERS.iter().find(|c| c.matches(vendor, class))
}

/// The load tier of a PCI device: its controller's, or [`OTHER_TIER`].
pub fn tier(vendor: u32, class: u32) -> u8 {
    controller(vendor, class).map_or(OTHER_TIER, |c| c.tier)
}

/// The controllers present on a machine: the table row of every PCI device under
/// `sysfs/bus/pci/devices` that is a storage controller.
pub fn present(sysfs: &std::path::Path) -> Vec<&'static Controller> {
    let mut found: Vec<&'static Controller> = Vec::new();
    let Ok(entries) = std::fs::read_dir(sysfs.join("bus/pci/devices")) else { return found };
    let hex = |path: std::path::PathBuf| -> Option<u32> {
        let text = std::fs::read(path).ok()?;
        let text = String::from_utf8_lossy(&text);
        u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
    };
    for entry in entries.flatten() {
        let Some(class) = hex(entry.path().join("class")) else { continue };
        let vendor = hex(entry.path().join("vendor")).unwrap_or(0);
        if let Some(c) = controller(vendor, class) {
            if !found.iter().any(|f| std::ptr::eq(*f, c)) {
                found.push(c);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disks::rank::class_rank;

    #[test]
    fn rows_resolve_as_documented() {
        let row = |vendor, class| controller(vendor, class).map(|c| c.name);
        assert_eq!(row(VIRTIO_VENDOR, 0x010000), Some("virtio storage"));
        assert_eq!(row(VIRTIO_VENDOR, 0x018000), Some("virtio storage"));
        assert_eq!(row(0x1b36, 0x010802), Some("NVMe"));
        assert_eq!(row(0x8086, 0x010601), Some("SATA (AHCI)"));
        assert_eq!(row(0x8086, 0x010180), Some("IDE"));
        assert_eq!(row(0x1000, 0x010000), Some("SCSI"));
        assert_eq!(row(0x1000, 0x018000), Some("other mass storage"));
        assert_eq!(row(0x1b36, 0x0c0330), Some("USB host"));
        assert_eq!(row(0x1b36, 0x080501), Some("SD host"));
        assert_eq!(row(VIRTIO_VENDOR, 0x020000), None, "a virtio NIC is no storage");
        assert_eq!(row(0x1234, 0x030000), None);
        assert_eq!(tier(0x1234, 0x030000), OTHER_TIER);
    }

    /// The views derived from the table agree: a controller whose media rank faster
    /// never loads after one whose media rank slower, tier 0 is exactly the fast
    /// storage (NVMe, virtio), and exactly the USB and SD hosts bring media that come late.
    #[test]
    fn load_order_follows_media_speed() {
        for a in CONTROLLERS {
            assert_eq!(a.tier == 0, matches!(a.medium, MediaClass::Nvme | MediaClass::Virtio), "{}", a.name);
            assert_eq!(a.late, matches!(a.medium, MediaClass::Usb | MediaClass::Mmc), "{}", a.name);
            assert!(a.tier < OTHER_TIER, "{}", a.name);
            for b in CONTROLLERS {
                if class_rank(a.medium, false) < class_rank(b.medium, false) {
                    assert!(a.tier <= b.tier, "{} (tier {}) loads after {} (tier {})", a.name, a.tier, b.name, b.tier);
                }
            }
        }
    }

    #[test]
    fn reads_the_controllers_of_a_sysfs_tree() {
        let root = std::env::temp_dir().join(format!("viver-controllers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (dev, vendor, class) in [
            ("0000:00:04.0", "0x1b36", "0x0c0330"),
            ("0000:00:1f.2", "0x8086", "0x010601"),
            ("0000:00:1f.3", "0x8086", "0x010601"),
            ("0000:00:06.0", "0x1af4", "0x010000"),
            ("0000:00:02.0", "0x1234", "0x030000"),
        ] {
            let dir = root.join("bus/pci/devices").join(dev);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("class"), format!("{class}\n")).unwrap();
            std::fs::write(dir.join("vendor"), format!("{vendor}\n")).unwrap();
        }
        let mut names: Vec<&str> = present(&root).iter().map(|c| c.name).collect();
        names.sort();
        assert_eq!(names, vec!["SATA (AHCI)", "USB host", "virtio storage"]);
        assert!(present(&root.join("nowhere")).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}

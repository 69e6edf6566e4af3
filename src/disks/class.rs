//! What kind of medium a block device is, read from where the kernel placed it in the
//! sysfs device tree. The path from `/sys/devices` down to the block directory names
//! every bus on the way (`.../usb2/2-1/2-1:1.0/host6/...`, `.../ata1/host0/...`,
//! `.../virtio0/block/vda`), which is more reliable than guessing from the name:
//! `sda` may be SATA, IDE, SCSI or USB.

pub use super::kinds::{MediaClass, Transport};
use std::path::{Component, Path};

/// SCSI peripheral device type of CD/DVD drives (`device/type` in sysfs).
pub const SCSI_TYPE_ROM: u32 = 5;

/// Facts about the controller an ATA disk sits behind, used to tell AHCI from IDE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AtaController {
    /// PCI class code, e.g. 0x010601 (AHCI) or 0x010180 (IDE), when the controller is PCI.
    pub pci_class: Option<u32>,
    /// Name of the bound driver (`ahci`, `ata_piix`, `pata_via`...).
    pub driver: Option<String>,
}

/// The transport of a block device given its path below `/sys/devices` (whole disk
/// or partition) and, for ATA disks, what the controller looks like.
/// `controller` is called lazily with the path prefix up to the PCI function that
/// owns the `ataN` port, because reading it is only needed for ATA.
pub fn transport_from_path(name: &str, device_path: &Path, controller: impl FnOnce(&Path) -> AtaController) -> Transport {
    let parts: Vec<&str> = device_path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    // USB first: a USB stick is also a SCSI host and may sit behind anything.
    if parts.iter().any(|p| is_numbered(p, "usb")) {
        return Transport::Usb;
    }
    // virtio before SCSI: virtio-scsi disks show `virtioN/hostM/target...`.
    if parts.iter().any(|p| is_numbered(p, "virtio")) {
        return Transport::Virtio;
    }
    if parts.iter().any(|p| *p == "nvme" || p.starts_with("nvme-subsys")) {
        return Transport::Nvme;
    }
    if parts.iter().any(|p| *p == "mmc_host" || is_numbered(p, "mmc")) {
        return Transport::Mmc;
    }
    if let Some(ata_index) = parts.iter().position(|p| is_numbered(p, "ata")) {
        let controller_path: std::path::PathBuf = parts.iter().take(ata_index).collect();
        return ata_transport(&controller(&controller_path));
    }
    if parts.iter().any(|p| is_numbered(p, "host")) && parts.iter().any(|p| p.starts_with("target")) {
        return Transport::Scsi;
    }
    // Devices outside a recognisable bus (nvme multipath subsystems, odd platforms):
    // the kernel's naming is the last resort.
    transport_from_name(name)
}

fn transport_from_name(name: &str) -> Transport {
    if name.starts_with("nvme") {
        Transport::Nvme
    } else if name.starts_with("vd") {
        Transport::Virtio
    } else if name.starts_with("mmcblk") {
        Transport::Mmc
    } else if name.starts_with("hd") {
        Transport::Ide
    } else if name.starts_with("sd") || name.starts_with("sr") {
        Transport::Scsi
    } else {
        Transport::Unknown
    }
}

/// AHCI vs IDE: the PCI class says what interface the controller presents
/// ([`super::controllers`]: 0x0106 SATA/AHCI, 0x0101 IDE); the driver name settles non-PCI or odd cases.
fn ata_transport(controller: &AtaController) -> Transport {
    let row = controller.pci_class.and_then(|class| super::controllers::controller(0, class));
    match row.map(|c| c.transport) {
        Some(Transport::Sata) => return Transport::Sata,
        Some(Transport::Ide) => return Transport::Ide,
        _ => {}
    }
    match controller.driver.as_deref() {
        Some(d) if d == "ata_piix" || d.starts_with("pata_") || d == "ata_generic" => Transport::Ide,
        _ => Transport::Sata,
    }
}

/// `usb3` -> true for prefix "usb"; `usb-storage`, `usb` -> false.
fn is_numbered(part: &str, prefix: &str) -> bool {
    part.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// The media class from transport and the disk's own attributes. Optical wins over
/// the bus: a USB or SATA DVD drive is searched last either way.
pub fn media_class(transport: Transport, rotational: bool, scsi_type: Option<u32>, name: &str) -> MediaClass {
    if scsi_type == Some(SCSI_TYPE_ROM) || name.starts_with("sr") {
        return MediaClass::Optical;
    }
    match transport {
        Transport::Nvme => MediaClass::Nvme,
        Transport::Virtio => MediaClass::Virtio,
        Transport::Sata | Transport::Scsi | Transport::Ide => {
            if rotational {
                MediaClass::Hdd
            } else {
                MediaClass::Ssd
            }
        }
        Transport::Usb => MediaClass::Usb,
        Transport::Mmc => MediaClass::Mmc,
        Transport::Unknown => MediaClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_controller(_: &Path) -> AtaController {
        AtaController::default()
    }

    #[test]
    fn usb_wins_over_scsi_host() {
        let p = Path::new("pci0000:00/0000:00:04.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdc");
        assert_eq!(transport_from_path("sdc", p, no_controller), Transport::Usb);
    }

    #[test]
    fn virtio_scsi_is_virtio() {
        let p = Path::new("pci0000:00/0000:00:02.0/virtio1/host0/target0:0:0/0:0:0:0/block/sda");
        assert_eq!(transport_from_path("sda", p, no_controller), Transport::Virtio);
    }

    #[test]
    fn ata_controller_class_decides_ahci_or_ide() {
        let p = Path::new("pci0000:00/0000:00:01.1/ata1/host0/target0:0:0/0:0:0:0/block/sda");
        let ide = |c: &Path| {
            assert_eq!(c, Path::new("pci0000:00/0000:00:01.1"));
            AtaController { pci_class: Some(0x010180), driver: Some("ata_piix".into()) }
        };
        assert_eq!(transport_from_path("sda", p, ide), Transport::Ide);
        let ahci = |_: &Path| AtaController { pci_class: Some(0x010601), driver: Some("ahci".into()) };
        assert_eq!(transport_from_path("sda", p, ahci), Transport::Sata);
        let pata = |_: &Path| AtaController { pci_class: None, driver: Some("pata_via".into()) };
        assert_eq!(transport_from_path("sda", p, pata), Transport::Ide);
    }

    #[test]
    fn plain_scsi_and_name_fallback() {
        let p = Path::new("pci0000:00/0000:00:10.0/host2/target2:0:1/2:0:1:0/block/sdb");
        assert_eq!(transport_from_path("sdb", p, no_controller), Transport::Scsi);
        let p = Path::new("virtual/nvme-fabrics/ctl/nvme0/nvme0n1");
        assert_eq!(transport_from_path("nvme0n1", p, no_controller), Transport::Nvme);
        assert_eq!(transport_from_path("xvda", Path::new("vbd-51712/block/xvda"), no_controller), Transport::Unknown);
    }

    #[test]
    fn class_from_transport_and_rotation() {
        assert_eq!(media_class(Transport::Sata, false, Some(0), "sda"), MediaClass::Ssd);
        assert_eq!(media_class(Transport::Ide, true, Some(0), "sda"), MediaClass::Hdd);
        assert_eq!(media_class(Transport::Usb, false, Some(5), "sr1"), MediaClass::Optical);
        assert_eq!(media_class(Transport::Usb, true, Some(0), "sdc"), MediaClass::Usb);
        assert_eq!(MediaClass::Mmc.to_string(), "sd");
        assert_eq!(serde_json::to_string(&MediaClass::Optical).unwrap(), "\"cd\"");
    }
}

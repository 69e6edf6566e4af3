//! The two names a disk's kind goes by: its transport (the bus) and its media class
//! (the speed class the search ranks). A leaf module: the class reader and the
//! controller table both use it.

use serde::Serialize;
use std::fmt;

/// The bus a disk hangs off. Reported for the log and `boot.json`; ranking uses
/// [`MediaClass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Nvme,
    Virtio,
    /// ATA behind an AHCI controller (PCI class 0x0106).
    Sata,
    /// ATA behind a legacy IDE controller (PCI class 0x0101, `ata_piix`, `pata_*`).
    Ide,
    Scsi,
    Usb,
    Mmc,
    Unknown,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Nvme => "nvme",
            Transport::Virtio => "virtio",
            Transport::Sata => "sata",
            Transport::Ide => "ide",
            Transport::Scsi => "scsi",
            Transport::Usb => "usb",
            Transport::Mmc => "mmc",
            Transport::Unknown => "unknown",
        })
    }
}

/// The speed class of a medium: the unit of the documented search order and of the
/// `viver.media=` override. Display/Serialize give the names users type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum MediaClass {
    #[serde(rename = "nvme")]
    Nvme,
    #[serde(rename = "virtio")]
    Virtio,
    /// SATA/SCSI (or IDE) that reports itself non-rotational.
    #[serde(rename = "ssd")]
    Ssd,
    /// SATA/SCSI/IDE rotational.
    #[serde(rename = "hdd")]
    Hdd,
    #[serde(rename = "usb")]
    Usb,
    /// SD/MMC cards.
    #[serde(rename = "sd")]
    Mmc,
    /// CD/DVD/BD drives (SCSI peripheral type 5), whatever their bus.
    #[serde(rename = "cd")]
    Optical,
    #[serde(rename = "unknown")]
    Unknown,
}

impl MediaClass {
    /// The name used in `viver.media=` and `boot.json`.
    pub fn name(&self) -> &'static str {
        match self {
            MediaClass::Nvme => "nvme",
            MediaClass::Virtio => "virtio",
            MediaClass::Ssd => "ssd",
            MediaClass::Hdd => "hdd",
            MediaClass::Usb => "usb",
            MediaClass::Mmc => "sd",
            MediaClass::Optical => "cd",
            MediaClass::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MediaClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

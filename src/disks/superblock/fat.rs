//! FAT12/16/32 (mounted as vfat). FAT has no magic number, so the boot sector's BIOS
//! parameter block is checked for plausibility the way the kernel does before
//! trusting it. Label and serial come from the extended BPB (blkid's LABEL_FATBOOT).

use super::bytes::{label, le16, le32, serial, slice, u8_at};
use super::{Filesystem, FsKind};

pub fn probe(head: &[u8]) -> Option<Filesystem> {
    let oem = slice(head, 3, 8)?;
    if oem == b"EXFAT   " || oem == b"NTFS    " {
        return None;
    }
    if !matches!(u8_at(head, 0)?, 0xEB | 0xE9) {
        return None;
    }
    let bytes_per_sector = le16(head, 11)?;
    let sectors_per_cluster = u8_at(head, 13)?;
    let reserved = le16(head, 14)?;
    let fats = u8_at(head, 16)?;
    let media = u8_at(head, 21)?;
    let sectors16 = le16(head, 19)?;
    let sectors32 = le32(head, 32)?;
    let fat_size16 = le16(head, 22)?;
    let plausible = matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && sectors_per_cluster.is_power_of_two()
        && reserved > 0
        && (1..=4).contains(&fats)
        && (media == 0xF0 || media >= 0xF8)
        && (sectors16 != 0 || sectors32 != 0);
    if !plausible {
        return None;
    }
    // FAT32 has no 16-bit FAT size; its extended BPB sits after the 32-bit fields.
    let ebpb = if fat_size16 == 0 {
        if le32(head, 36)? == 0 {
            return None;
        }
        64
    } else {
        36
    };
    let (label_text, uuid) = match u8_at(head, ebpb + 2)? {
        0x29 => (
            label(slice(head, ebpb + 7, 11)?).filter(|l| l != "NO NAME"),
            Some(serial(le32(head, ebpb + 3)?)),
        ),
        0x28 => (None, Some(serial(le32(head, ebpb + 3)?))),
        _ => (None, None),
    };
    Some(Filesystem::new(FsKind::Vfat, label_text, uuid))
}

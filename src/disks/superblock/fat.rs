//! FAT12/16/32 (mounted as vfat). FAT has no magic number, so the boot sector's BIOS
//! parameter block is checked for plausibility the way the kernel does before
//! trusting it. The serial comes from the extended BPB; the label from the volume-label
//! entry of the root directory, as blkid does, because Windows relabels only that
//! entry and leaves the boot sector's copy stale; the boot sector copy is the fallback.

use super::bytes::{label, le16, le32, serial, slice, u8_at};
use super::Medium;
use super::{Filesystem, FsKind};

const DIR_ENTRY: usize = 32;
const ATTR_VOLUME_ID: u8 = 0x08;
/// Long-file-name entries carry all of read-only|hidden|system|volume-id.
const ATTR_LONG_NAME: u8 = 0x0F;
const ENTRY_DELETED: u8 = 0xE5;
/// The label is among the first entries; never read megabytes of directory.
const ROOT_READ_MAX: u64 = 64 * 1024;

/// The fields of a plausible boot sector.
struct BootSector {
    boot_label: Option<String>,
    serial: Option<String>,
    /// Byte offset and length of the root directory's first stretch.
    root: Option<(u64, u64)>,
}

pub(super) fn probe(medium: &mut Medium<'_>) -> Option<Filesystem> {
    let boot = boot_sector(&medium.head)?;
    let root_label = match boot.root {
        Some((offset, len)) => medium.read_at(offset, usize::try_from(len).unwrap_or(0)).and_then(|dir| root_dir_label(&dir)),
        None => None,
    };
    Some(Filesystem::new(FsKind::Vfat, root_label.or(boot.boot_label), boot.serial))
}

fn boot_sector(head: &[u8]) -> Option<BootSector> {
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
    let root_entries = le16(head, 17)?;
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
    let bps = u64::from(bytes_per_sector);
    let fat_start = u64::from(reserved) * bps;
    // FAT32 has no 16-bit FAT size; its extended BPB sits after the 32-bit fields and
    // its root directory is an ordinary cluster chain.
    let (ebpb, root) = if fat_size16 == 0 {
        let fat_size32 = le32(head, 36)?;
        if fat_size32 == 0 {
            return None;
        }
        let data_start = fat_start + u64::from(fats) * u64::from(fat_size32) * bps;
        let cluster = u64::from(sectors_per_cluster) * bps;
        let root_cluster = u64::from(le32(head, 44)?);
        let root = (root_cluster >= 2).then(|| (data_start + (root_cluster - 2) * cluster, cluster.min(ROOT_READ_MAX)));
        (64, root)
    } else {
        let root_start = fat_start + u64::from(fats) * u64::from(fat_size16) * bps;
        let root_len = (u64::from(root_entries) * DIR_ENTRY as u64).min(ROOT_READ_MAX);
        (36, (root_len > 0).then_some((root_start, root_len)))
    };
    let (boot_label, serial) = match u8_at(head, ebpb + 2)? {
        0x29 => (label(slice(head, ebpb + 7, 11)?).filter(|l| l != "NO NAME"), Some(serial(le32(head, ebpb + 3)?))),
        0x28 => (None, Some(serial(le32(head, ebpb + 3)?))),
        _ => (None, None),
    };
    Some(BootSector { boot_label, serial, root })
}

fn root_dir_label(dir: &[u8]) -> Option<String> {
    for entry in dir.chunks_exact(DIR_ENTRY) {
        let first = entry.first().copied()?;
        if first == 0 {
            return None; // end of directory
        }
        let attr = u8_at(entry, 11)?;
        if first == ENTRY_DELETED || attr & ATTR_LONG_NAME == ATTR_LONG_NAME || attr & ATTR_VOLUME_ID == 0 {
            continue;
        }
        return label(slice(entry, 0, 11)?).filter(|l| l != "NO NAME");
    }
    None
}

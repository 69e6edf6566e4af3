//! exFAT: `EXFAT   ` in the boot sector. The serial number is in the boot sector,
//! but the label is an entry of the root directory, which lies in the cluster heap
//! (megabytes into the volume), so it needs a positioned read.

use super::bytes::{le16, le32, serial, slice, u8_at};
use super::Medium;
use super::{Filesystem, FsKind};

const ENTRY: usize = 32;
const ENTRY_END: u8 = 0x00;
const ENTRY_LABEL: u8 = 0x83;
/// The label is one of the first entries; do not read a whole (up to 32 MiB) cluster.
const ROOT_READ_MAX: u64 = 64 * 1024;

pub(super) fn probe(medium: &mut Medium<'_>) -> Option<Filesystem> {
    let head = &medium.head;
    let boot = slice(head, 0, 512)?;
    if slice(boot, 3, 8)? != b"EXFAT   " {
        return None;
    }
    let heap_offset = le32(boot, 88)?;
    let root_cluster = le32(boot, 96)?;
    let serial_no = le32(boot, 100)?;
    let bps_shift = u8_at(boot, 108)?;
    let spc_shift = u8_at(boot, 109)?;
    if !(9..=12).contains(&bps_shift) || u32::from(bps_shift) + u32::from(spc_shift) > 25 || root_cluster < 2 {
        return None;
    }
    let uuid = Some(serial(serial_no));
    let cluster_bytes = 1u64 << (bps_shift + spc_shift);
    let root_offset = (u64::from(heap_offset) << bps_shift) + u64::from(root_cluster - 2) * cluster_bytes;
    let len = cluster_bytes.min(ROOT_READ_MAX) as usize;
    // A truncated image still is exFAT, only its label is unknown.
    let label = medium.read_at(root_offset, len).and_then(|root| volume_label(&root));
    Some(Filesystem::new(FsKind::Exfat, label, uuid))
}

/// Entry 0x83: byte 1 = length in UTF-16 units (at most 11), name from byte 2.
fn volume_label(root: &[u8]) -> Option<String> {
    for entry in root.chunks_exact(ENTRY) {
        match entry.first().copied()? {
            ENTRY_END => return None,
            ENTRY_LABEL => {
                let count = usize::from(u8_at(entry, 1)?).min(11);
                let units: Vec<u16> = (0..count).filter_map(|i| le16(entry, 2 + 2 * i)).collect();
                let text = String::from_utf16_lossy(&units);
                return (!text.is_empty()).then_some(text);
            }
            _ => continue,
        }
    }
    None
}

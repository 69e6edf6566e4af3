//! A classic MBR with up to four primary partitions, written by hand (no sfdisk needed).

pub const SECTOR: u64 = 512;
/// Partitions start at 1 MiB: aligned for flash media, room for the boot code.
pub const PARTITION_START_LBA: u64 = 2048;
/// FAT32 with LBA addressing.
pub const TYPE_FAT32_LBA: u8 = 0x0c;
/// EFI system partition.
pub const TYPE_EFI_SYSTEM: u8 = 0xef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub start_lba: u64,
    pub sectors: u64,
    pub kind: u8,
    /// The BIOS boot code (syslinux's mbr.bin) starts the active partition.
    pub active: bool,
}

/// The 512-byte MBR: `boot_code` (syslinux's mbr.bin, at most 440 bytes), a fixed disk
/// signature (deterministic output), the partitions in order.
pub fn build(boot_code: &[u8], partitions: &[Partition]) -> Result<[u8; 512], String> {
    let mut mbr = [0u8; 512];
    if boot_code.len() > 440 {
        return Err(format!("boot code is {} bytes, at most 440 fit in an MBR", boot_code.len()));
    }
    if partitions.len() > 4 {
        return Err(format!("{} partitions, an MBR holds 4", partitions.len()));
    }
    if let Some(dst) = mbr.get_mut(..boot_code.len()) {
        dst.copy_from_slice(boot_code);
    }
    if let Some(sig) = mbr.get_mut(440..444) {
        sig.copy_from_slice(b"VIVR");
    }
    for (i, p) in partitions.iter().enumerate() {
        let start = u32::try_from(p.start_lba).map_err(|_| "partition start beyond 2 TiB".to_string())?;
        let count = u32::try_from(p.sectors).map_err(|_| "partition larger than 2 TiB".to_string())?;
        let mut entry = [0u8; 16];
        entry[0] = if p.active { 0x80 } else { 0 };
        entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS unused: LBA only
        entry[4] = p.kind;
        entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
        entry[8..12].copy_from_slice(&start.to_le_bytes());
        entry[12..16].copy_from_slice(&count.to_le_bytes());
        let at = 446 + 16 * i;
        if let Some(dst) = mbr.get_mut(at..at + 16) {
            dst.copy_from_slice(&entry);
        }
    }
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    Ok(mbr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_data_partition_then_esp() {
        let data = Partition { start_lba: 2048, sectors: 100_000, kind: TYPE_FAT32_LBA, active: true };
        let esp = Partition { start_lba: 102_048, sectors: 16_384, kind: TYPE_EFI_SYSTEM, active: false };
        let m = build(&[0xfa; 440], &[data, esp]).unwrap();
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!((m[446], m[450]), (0x80, 0x0c));
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(m[458..462].try_into().unwrap()), 100_000);
        assert_eq!((m[462], m[466]), (0x00, 0xef));
        assert_eq!(u32::from_le_bytes(m[470..474].try_into().unwrap()), 102_048);
        assert_eq!(&m[478..510], &[0u8; 32][..]);
        assert!(build(&[0; 441], &[data]).is_err());
        assert!(build(&[], &[data; 5]).is_err());
    }
}

//! A classic MBR with one bootable partition, written by hand (no sfdisk needed).

pub const SECTOR: u64 = 512;
/// Partitions start at 1 MiB: aligned for flash media, room for the boot code.
pub const PARTITION_START_LBA: u64 = 2048;
/// FAT32 with LBA addressing.
pub const TYPE_FAT32_LBA: u8 = 0x0c;

/// The 512-byte MBR: `boot_code` (syslinux's mbr.bin, at most 440 bytes), a fixed disk
/// signature (deterministic output), one active partition.
pub fn build(boot_code: &[u8], start_lba: u64, sectors: u64, partition_type: u8) -> Result<[u8; 512], String> {
    let mut mbr = [0u8; 512];
    let code = boot_code.get(..boot_code.len().min(440)).unwrap_or_default();
    if boot_code.len() > 440 {
        return Err(format!("boot code is {} bytes, at most 440 fit in an MBR", boot_code.len()));
    }
    let start = u32::try_from(start_lba).map_err(|_| "partition start beyond 2 TiB".to_string())?;
    let count = u32::try_from(sectors).map_err(|_| "partition larger than 2 TiB".to_string())?;
    if let Some(dst) = mbr.get_mut(..code.len()) {
        dst.copy_from_slice(code);
    }
    if let Some(sig) = mbr.get_mut(440..444) {
        sig.copy_from_slice(b"VIVR");
    }
    let mut entry = [0u8; 16];
    entry[0] = 0x80; // active: the BIOS boots it
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS unused: LBA only
    entry[4] = partition_type;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&start.to_le_bytes());
    entry[12..16].copy_from_slice(&count.to_le_bytes());
    if let Some(dst) = mbr.get_mut(446..462) {
        dst.copy_from_slice(&entry);
    }
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    Ok(mbr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_active_partition_and_signature() {
        let m = build(&[0xfa; 440], 2048, 100_000, TYPE_FAT32_LBA).unwrap();
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(m[446], 0x80);
        assert_eq!(m[450], 0x0c);
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(m[458..462].try_into().unwrap()), 100_000);
        assert_eq!(&m[462..510], &[0u8; 48][..]);
        assert!(build(&[0; 441], 2048, 1, 0x0c).is_err());
    }
}

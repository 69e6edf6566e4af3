//! Raw disk image (USB stick, hard disk, SD card) with an MBR and two partitions, made
//! in a plain file: mkfs.vfat --offset formats each partition in place, mtools fills it
//! (`-i file@@offset`), syslinux --offset installs the BIOS boot loader. No loop
//! device, no root.
//! - partition 1: FAT32, active: kernel, initrd, image, syslinux (the BIOS path: the
//!   MBR code starts the active partition's syslinux);
//! - partition 2: the EFI system partition (type 0xef): shim, GRUB, MokManager and
//!   grub.cfg, which finds partition 1 by the medium's tag file.

use super::super::atomic::{PendingOutput, ScratchDir};
use super::super::error::{IoContext, KitError};
use super::super::tools;
use super::mbr::{self, Partition};
use super::{efi, MediaOptions};
use std::io::{Seek, SeekFrom, Write};
use std::process::Command;

pub const MBR_BIN: &str = "/usr/lib/syslinux/mbr/mbr.bin";
const MIB: u64 = 1 << 20;
/// FAT32 needs at least 65525 clusters; 64 MiB leaves room with 512-byte clusters.
const MIN_FAT_BYTES: u64 = 64 * MIB;

/// Partition size for `content` bytes: contents plus 5% and 16 MiB slack (FAT tables,
/// directories, the boot loader), rounded to whole MiB.
pub fn partition_bytes(content: u64) -> u64 {
    let want = content + content / 20 + 16 * MIB;
    want.div_ceil(MIB).max(MIN_FAT_BYTES / MIB) * MIB
}

/// Where the two partitions go: (data, ESP), both MiB-aligned.
pub fn layout(data_bytes: u64, esp_bytes: u64) -> (Partition, Partition) {
    let data =
        Partition { start_lba: mbr::PARTITION_START_LBA, sectors: data_bytes / mbr::SECTOR, kind: mbr::TYPE_FAT32_LBA, active: true };
    let esp =
        Partition { start_lba: data.start_lba + data.sectors, sectors: esp_bytes / mbr::SECTOR, kind: mbr::TYPE_EFI_SYSTEM, active: false };
    (data, esp)
}

pub fn build(opts: &MediaOptions, warnings: &mut Vec<String>) -> Result<u64, KitError> {
    let syslinux = tools::find("syslinux")?;
    let mbr_code_path = tools::require_file(MBR_BIN, "syslinux")?;
    let cmdline = super::kernel_cmdline(opts)?;
    let scratch = ScratchDir::new("disk")?;
    let tag = super::medium_tag(opts, &cmdline)?;
    let tag_file = scratch.path.join("tag");
    let title = super::menu_title(opts)?;
    std::fs::write(&tag_file, format!("{title}\n")).at(&tag_file)?;
    let (mut files, payload_warnings) = super::payload(opts, &tag_file, &tag)?;
    warnings.extend(payload_warnings);
    let cfg = scratch.path.join("syslinux.cfg");
    std::fs::write(&cfg, super::syslinux_config(&cmdline)).at(&cfg)?;
    files.push(("syslinux/syslinux.cfg".into(), cfg.clone()));
    let grub_cfg = scratch.path.join("grub.cfg");
    std::fs::write(&grub_cfg, efi::grub_config(&cmdline, &super::tag_path(&tag), &title)).at(&grub_cfg)?;
    let esp_files = efi::esp_files(&grub_cfg)?;

    let (data, esp) = layout(partition_bytes(efi::content_bytes(&files)?), efi::esp_bytes(efi::content_bytes(&esp_files)?));
    let total = (esp.start_lba + esp.sectors) * mbr::SECTOR;
    let out = PendingOutput::new(&opts.output)?;
    let disk = &out.temp_path;
    {
        let f = std::fs::File::create(disk).at(disk)?;
        // Sparse: the FATs only write what they hold.
        f.set_len(total).at(disk)?;
    }
    let data_offset = data.start_lba * mbr::SECTOR;
    efi::write_fat(disk, data_offset, data.sectors * mbr::SECTOR, true, "VIVER", "56495652", &files)?;
    efi::write_fat(disk, esp.start_lba * mbr::SECTOR, esp.sectors * mbr::SECTOR, false, "VIVER-EFI", "56495645", &esp_files)?;
    let mut c = Command::new(syslinux);
    c.args(["--install", "--directory", "/syslinux", "--offset", &data_offset.to_string()]).arg(disk);
    tools::run_captured("syslinux", &mut c)?;

    let code = std::fs::read(&mbr_code_path).at(&mbr_code_path)?;
    let sector = mbr::build(&code, &[data, esp]).map_err(|m| KitError::BadInput(format!("{}: {m}", mbr_code_path.display())))?;
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(disk).at(disk)?;
        f.seek(SeekFrom::Start(0)).at(disk)?;
        f.write_all(&sector).at(disk)?;
        f.sync_all().at(disk)?;
    }
    out.commit()?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_has_slack_and_minimum() {
        assert_eq!(partition_bytes(0), 64 * MIB);
        let p = partition_bytes(1000 * MIB);
        assert!(p >= 1050 * MIB + 16 * MIB && p % MIB == 0);
    }

    #[test]
    fn esp_follows_the_data_partition_aligned() {
        let (data, esp) = layout(64 * MIB, 8 * MIB);
        assert_eq!((data.start_lba, data.sectors, data.active), (2048, 131_072, true));
        assert_eq!((esp.start_lba, esp.sectors, esp.kind, esp.active), (2048 + 131_072, 16_384, 0xef, false));
        assert_eq!(esp.start_lba % 2048, 0);
    }
}

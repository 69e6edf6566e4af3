//! Raw disk image (USB stick, hard disk, SD card): MBR + one bootable FAT32 partition,
//! made in a plain file: mkfs.vfat --offset formats the partition in place, mtools fills
//! it (`-i file@@offset`), syslinux --offset installs the boot loader. No loop device, no root.

use super::super::atomic::{PendingOutput, ScratchDir};
use super::super::error::{IoContext, KitError};
use super::super::tools;
use super::mbr;
use super::MediaOptions;
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

pub fn build(opts: &MediaOptions) -> Result<u64, KitError> {
    let mkfs = tools::find("mkfs.vfat")?;
    let mcopy = tools::find("mcopy")?;
    let mmd = tools::find("mmd")?;
    let syslinux = tools::find("syslinux")?;
    let mbr_code_path = tools::require_file(MBR_BIN, "syslinux")?;
    let files = super::payload(opts)?;
    let content: u64 = files.iter().map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    let fat_bytes = partition_bytes(content);
    let offset = mbr::PARTITION_START_LBA * mbr::SECTOR;
    let total = offset + fat_bytes;

    let out = PendingOutput::new(&opts.output)?;
    let disk = &out.temp_path;
    {
        let f = std::fs::File::create(disk).at(disk)?;
        // Sparse: the FAT only writes what it holds.
        f.set_len(total).at(disk)?;
    }
    let mut cmd = Command::new(mkfs);
    cmd.args(["-F", "32", "-n", "VIVER", "-i", "56495652", "--invariant"])
        .arg(format!("--offset={}", mbr::PARTITION_START_LBA))
        .args(["-h", &mbr::PARTITION_START_LBA.to_string()])
        .arg(disk)
        .arg((fat_bytes / 1024).to_string());
    tools::run_captured("mkfs.vfat", &mut cmd)?;

    let image_spec = format!("{}@@{}", disk.display(), offset);
    let scratch = ScratchDir::new("disk")?;
    let cfg = scratch.path.join("syslinux.cfg");
    std::fs::write(&cfg, super::loader_config(&super::media_append(opts)?)).at(&cfg)?;
    let mut dirs: Vec<String> = vec!["::/syslinux".into(), "::/boot".into()];
    if opts.image.is_some() {
        dirs.push("::/viver".into());
    }
    tools::run_captured("mmd", Command::new(&mmd).env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(&image_spec).args(&dirs))?;
    let mut copies: Vec<(String, std::path::PathBuf)> = files;
    copies.push(("syslinux/syslinux.cfg".into(), cfg.clone()));
    for (dest, src) in &copies {
        let mut c = Command::new(&mcopy);
        c.env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(&image_spec).arg(src).arg(format!("::/{dest}"));
        tools::run_captured("mcopy", &mut c)?;
    }
    let mut c = Command::new(syslinux);
    c.args(["--install", "--directory", "/syslinux", "--offset", &offset.to_string()]).arg(disk);
    tools::run_captured("syslinux", &mut c)?;

    let code = std::fs::read(&mbr_code_path).at(&mbr_code_path)?;
    let sector = mbr::build(&code, mbr::PARTITION_START_LBA, fat_bytes / mbr::SECTOR, mbr::TYPE_FAT32_LBA)
        .map_err(|m| KitError::BadInput(format!("{}: {m}", mbr_code_path.display())))?;
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
}

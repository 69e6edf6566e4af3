//! Hybrid ISO: xorriso with two El Torito boot images, isolinux for BIOS and a FAT EFI
//! system partition image for UEFI, plus the isohybrid MBR and a GPT naming the EFI
//! image as a partition (`-isohybrid-gpt-basdat`), so the same file boots from a CD
//! drive or written raw to a USB stick, on BIOS and on UEFI.

use super::super::atomic::{PendingOutput, ScratchDir};
use super::super::error::{IoContext, KitError};
use super::super::tools;
use super::{efi, MediaOptions};
use std::process::Command;

pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
pub const ISOHYBRID_MBR: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
/// The EFI boot image inside the ISO 9660 tree.
pub const EFI_IMAGE: &str = "efi/efiboot.img";

pub fn build(opts: &MediaOptions, warnings: &mut Vec<String>) -> Result<u64, KitError> {
    let xorriso = tools::find("xorriso")?;
    let isolinux = tools::require_file(ISOLINUX_BIN, "isolinux")?;
    let mbr = tools::require_file(ISOHYBRID_MBR, "isolinux")?;
    let ldlinux = tools::require_file(LDLINUX_C32, "syslinux-common")?;
    let cmdline = super::kernel_cmdline(opts)?;
    let scratch = ScratchDir::new("iso")?;
    let tag = super::medium_tag(opts, &cmdline)?;
    let tag_file = scratch.path.join("tag");
    std::fs::write(&tag_file, format!("{}\n", super::menu_title(opts)?)).at(&tag_file)?;
    let (files, payload_warnings) = super::payload(opts, &tag_file, &tag)?;
    warnings.extend(payload_warnings);

    let stage = scratch.path.join("isolinux");
    std::fs::create_dir_all(&stage).at(&stage)?;
    for (src, name) in [(&isolinux, "isolinux.bin"), (&ldlinux, "ldlinux.c32")] {
        std::fs::copy(src, stage.join(name)).at(&stage.join(name))?;
    }
    let cfg = stage.join("isolinux.cfg");
    std::fs::write(&cfg, super::syslinux_config(&cmdline)).at(&cfg)?;
    let grub_cfg = scratch.path.join("grub.cfg");
    std::fs::write(&grub_cfg, efi::grub_config(&cmdline, &super::tag_path(&tag), &super::menu_title(opts)?)).at(&grub_cfg)?;
    let esp = scratch.path.join("efiboot.img");
    let esp_files = efi::esp_files(&grub_cfg)?;
    efi::build_esp_image(&esp, &esp_files)?;

    let out = PendingOutput::new(&opts.output)?;
    let mut cmd = Command::new(xorriso);
    cmd.args(["-as", "mkisofs", "-quiet", "-o"])
        .arg(&out.temp_path)
        .arg("-isohybrid-mbr")
        .arg(&mbr)
        .args(["-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .args(["-eltorito-alt-boot", "-e", EFI_IMAGE, "-no-emul-boot", "-isohybrid-gpt-basdat"])
        .args(["-V", "VIVER", "-R", "-J", "-graft-points"])
        .arg(format!("isolinux={}", stage.display()))
        .arg(format!("{EFI_IMAGE}={}", esp.display()));
    // The boot chain and grub.cfg also in the ISO 9660 tree: a firmware or GRUB that
    // looks at the tree rather than the El Torito image finds them too.
    for (dest, src) in files.iter().chain(esp_files.iter()) {
        cmd.arg(format!("{dest}={}", src.display()));
    }
    tools::run_captured("xorriso", &mut cmd)?;
    let size = std::fs::metadata(&out.temp_path).at(&out.temp_path)?.len();
    out.commit()?;
    Ok(size)
}

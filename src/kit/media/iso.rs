//! Hybrid ISO: xorriso + isolinux, with the isohybrid MBR so the same file boots from a
//! CD drive or written raw to a USB stick.

use super::super::atomic::{PendingOutput, ScratchDir};
use super::super::error::{IoContext, KitError};
use super::super::tools;
use super::MediaOptions;
use std::process::Command;

pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
pub const ISOHYBRID_MBR: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";

pub fn build(opts: &MediaOptions) -> Result<u64, KitError> {
    let xorriso = tools::find("xorriso")?;
    let isolinux = tools::require_file(ISOLINUX_BIN, "isolinux")?;
    let mbr = tools::require_file(ISOHYBRID_MBR, "isolinux")?;
    let ldlinux = tools::require_file(LDLINUX_C32, "syslinux-common")?;
    let files = super::payload(opts)?;
    let out = PendingOutput::new(&opts.output)?;
    let scratch = ScratchDir::new("iso")?;
    let stage = scratch.path.join("isolinux");
    std::fs::create_dir_all(&stage).at(&stage)?;
    for (src, name) in [(&isolinux, "isolinux.bin"), (&ldlinux, "ldlinux.c32")] {
        std::fs::copy(src, stage.join(name)).at(&stage.join(name))?;
    }
    let cfg = stage.join("isolinux.cfg");
    std::fs::write(&cfg, super::loader_config(&super::media_append(opts)?)).at(&cfg)?;

    let mut cmd = Command::new(xorriso);
    cmd.args(["-as", "mkisofs", "-quiet", "-o"])
        .arg(&out.temp_path)
        .arg("-isohybrid-mbr")
        .arg(&mbr)
        .args(["-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .args(["-V", "VIVER", "-R", "-J", "-graft-points"])
        .arg(format!("isolinux={}", stage.display()));
    for (dest, src) in &files {
        cmd.arg(format!("{dest}={}", src.display()));
    }
    tools::run_captured("xorriso", &mut cmd)?;
    let size = std::fs::metadata(&out.temp_path).at(&out.temp_path)?.len();
    out.commit()?;
    Ok(size)
}

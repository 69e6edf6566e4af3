//! The early microcode cpio of `viver kit initrd --microcode`: an uncompressed newc
//! archive at the very start of the initrd holding `kernel/x86/microcode/GenuineIntel.bin`
//! and `AuthenticAMD.bin`, which the kernel's early loader reads before anything is
//! unpacked (the layout Debian's initramfs-tools and dracut use). The compressed main
//! archive follows; the kernel unpacks both, one after the other.
//!
//! The microcode comes from Debian's `intel-microcode` (`lib/firmware/intel-ucode/*`, one
//! file per CPU signature) and `amd64-microcode` (`lib/firmware/amd-ucode/*.bin`, one
//! container per family) under the given root; each vendor's files are concatenated
//! into its one blob, as dracut does (the kernel picks the matching update).

use super::atomic::source_date_epoch;
use super::cpio_archive::{Archive, Content};
use super::error::{IoContext, KitError};
use std::path::{Path, PathBuf};

/// Where each vendor's files are looked for, relative to the root (merged /usr or not).
pub const SOURCES: [(&str, &str, &str); 2] =
    [("GenuineIntel.bin", "intel-ucode", "intel-microcode"), ("AuthenticAMD.bin", "amd-ucode", "amd64-microcode")];
const FIRMWARE_DIRS: [&str; 2] = ["lib/firmware", "usr/lib/firmware"];
/// The kernel's early loader looks here.
pub const EARLY_DIR: &str = "kernel/x86/microcode";

/// The early archive, and what it holds ("GenuineIntel.bin: 42 files, 8.1 MiB").
pub struct EarlyMicrocode {
    pub cpio: Vec<u8>,
    pub summary: Vec<String>,
}

/// The regular files of the first existing `<firmware dir>/<sub>` under `root`, sorted.
fn vendor_files(root: &Path, sub: &str) -> Result<(PathBuf, Vec<PathBuf>), KitError> {
    for base in FIRMWARE_DIRS {
        let dir = root.join(base).join(sub);
        if !dir.is_dir() {
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).at(&dir)?.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        // AMD's directory also holds signatures and notes: only the containers count.
        if sub == "amd-ucode" {
            files.retain(|p| p.extension().is_some_and(|e| e == "bin"));
        }
        files.sort();
        return Ok((dir, files));
    }
    Ok((root.join(FIRMWARE_DIRS[0]).join(sub), Vec::new()))
}

/// Builds the early cpio from the microcode under `root`; an error naming every place
/// looked at when there is none at all.
pub fn early_cpio(root: &Path) -> Result<EarlyMicrocode, KitError> {
    let mut archive = Archive::new();
    archive.dir(EARLY_DIR);
    let mut summary = Vec::new();
    let mut looked = Vec::new();
    for (blob, sub, package) in SOURCES {
        let (dir, files) = vendor_files(root, sub)?;
        if files.is_empty() {
            looked.push(format!(
                "{} (package {package})",
                FIRMWARE_DIRS.iter().map(|b| root.join(b).join(sub).display().to_string()).collect::<Vec<_>>().join(" or ")
            ));
            continue;
        }
        let mut bytes = Vec::new();
        for f in &files {
            bytes.extend(std::fs::read(f).at(f)?);
        }
        summary.push(format!("{blob}: {} files from {}, {} bytes", files.len(), dir.display(), bytes.len()));
        archive.file(&format!("{EARLY_DIR}/{blob}"), 0o644, Content::Bytes(bytes));
    }
    if summary.is_empty() {
        return Err(KitError::BadInput(format!(
            "--microcode: no microcode found; looked in {} (Debian has them in the non-free-firmware section)",
            looked.join(" and ")
        )));
    }
    let mtime = u32::try_from(source_date_epoch().unwrap_or(0)).unwrap_or(0);
    let (mut cpio, _) = archive.write(Vec::new(), mtime)?;
    // Pad to a 512-byte block, as cpio(1) does: the compressed archive starts aligned.
    cpio.resize(cpio.len().div_ceil(512) * 512, 0);
    Ok(EarlyMicrocode { cpio, summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("viver-ucode-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn concatenates_each_vendor_and_pads() {
        let root = scratch("both");
        let intel = root.join("lib/firmware/intel-ucode");
        let amd = root.join("usr/lib/firmware/amd-ucode");
        std::fs::create_dir_all(&intel).unwrap();
        std::fs::create_dir_all(&amd).unwrap();
        std::fs::write(intel.join("06-8e-0a"), b"BBBB").unwrap();
        std::fs::write(intel.join("06-8e-09"), b"AAAA").unwrap();
        std::fs::write(amd.join("microcode_amd_fam17h.bin"), b"CC").unwrap();
        std::fs::write(amd.join("microcode_amd_fam17h.bin.asc"), b"sig").unwrap();
        let early = early_cpio(&root).unwrap();
        assert_eq!(early.cpio.len() % 512, 0);
        assert_eq!(early.summary.len(), 2, "{:?}", early.summary);
        let text = String::from_utf8_lossy(&early.cpio);
        assert!(text.contains("kernel/x86/microcode/GenuineIntel.bin"));
        assert!(text.contains("AAAABBBB"), "sorted concatenation");
        assert!(text.contains("kernel/x86/microcode/AuthenticAMD.bin") && text.contains("CC") && !text.contains("sig"));
        assert!(early.cpio.starts_with(b"070701"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn none_found_names_where_it_looked() {
        let root = scratch("none");
        let e = early_cpio(&root).err().unwrap().to_string();
        assert!(e.contains("lib/firmware/intel-ucode") && e.contains("amd-ucode") && e.contains("intel-microcode"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

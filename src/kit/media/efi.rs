//! The UEFI half of a medium: an EFI system partition (a FAT filesystem, written into a
//! plain file with mkfs.vfat and mtools) holding Debian's signed boot chain, and the
//! GRUB configuration.
//!
//! The chain is the one Debian's own media use, so Secure Boot with the Microsoft keys
//! (what PCs ship with) accepts it: the firmware starts `\EFI\BOOT\BOOTX64.EFI`, shim
//! (signed by Microsoft), which starts `grubx64.efi` from its own directory (signed by
//! Debian, checked by shim), which reads its configuration and starts the kernel
//! (checked by shim's protocol: Debian's kernels are signed). `mmx64.efi` (MokManager)
//! sits beside shim, which runs it when a user asked to enroll a key with mokutil.
//!
//! Debian's signed `grubx64.efi` is built with the prefix `/EFI/debian` and no device:
//! it reads `/EFI/debian/grub.cfg` from the partition it was loaded from (the ESP). The
//! kernel is not on the ESP but in the payload (the ISO 9660 tree, partition 1 of a
//! disk), which GRUB finds by the medium's tag file (see [`super::medium_tag`]).

use super::super::error::{IoContext, KitError};
use super::super::tools;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
pub const MOK_MANAGER: &str = "/usr/lib/shim/mmx64.efi.signed";
pub const GRUB: &str = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";
/// Where the signed GRUB reads its configuration (its built-in prefix is `/EFI/debian`).
pub const GRUB_CFG: &str = "EFI/debian/grub.cfg";

const MIB: u64 = 1 << 20;

/// The boot chain's files, checked to exist: (path on the ESP, source).
pub fn boot_chain() -> Result<Vec<(String, PathBuf)>, KitError> {
    Ok(vec![
        ("EFI/BOOT/BOOTX64.EFI".to_string(), tools::require_file(SHIM, "shim-signed")?),
        ("EFI/BOOT/grubx64.efi".to_string(), tools::require_file(GRUB, "grub-efi-amd64-signed")?),
        ("EFI/BOOT/mmx64.efi".to_string(), tools::require_file(MOK_MANAGER, "shim-signed")?),
    ])
}

/// One word for GRUB's command parser: plain words as they are, anything else in single
/// quotes (GRUB takes them literally), so `viver.role="a b"` reaches the kernel intact.
fn grub_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Splits a command line into words as the kernel does (double quotes group, and stay).
fn kernel_words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// The GRUB configuration: a short menu that says what it boots, the same kernel
/// command line as the BIOS loaders (`cmdline`), the payload found by its tag file.
pub fn grub_config(cmdline: &str, tag_file: &str, title: &str) -> String {
    let line: Vec<String> = kernel_words(cmdline).iter().map(|w| grub_word(w)).collect();
    let title = title.replace(['"', '\\', '$'], "");
    format!(
        "# Written by `viver kit media`. Debian's signed GRUB reads it from /EFI/debian/grub.cfg on the ESP.\n\
         set timeout=2\n\
         set default=0\n\
         # The kernel is beside the image, not on the ESP: find this medium's own files.\n\
         search --no-floppy --set=root --file /{tag_file}\n\
         menuentry \"{title}\" {{\n\
         \x20   echo 'Loading the VIVER kernel and initrd...'\n\
         \x20   linux /boot/vmlinuz {}\n\
         \x20   initrd /boot/initrd.img\n\
         }}\n\
         menuentry \"UEFI firmware settings\" {{\n\
         \x20   fwsetup\n\
         }}\n",
        line.join(" ")
    )
}

/// Size of a FAT filesystem for `content` bytes: contents plus 10% and 2 MiB slack
/// (FAT tables, directories), whole MiB, at least 8 MiB.
pub fn esp_bytes(content: u64) -> u64 {
    (content + content / 10 + 2 * MIB).div_ceil(MIB).max(8) * MIB
}

/// Formats a FAT filesystem of `bytes` at `offset` bytes into `file` (which must be
/// that large already) and copies `files` into it. `fat32` forces FAT32 (needed by
/// syslinux); otherwise mkfs.vfat picks FAT12/16 by size, as an ESP of a few MiB is.
pub fn write_fat(
    file: &Path,
    offset: u64,
    bytes: u64,
    fat32: bool,
    label: &str,
    volume_id: &str,
    files: &[(String, PathBuf)],
) -> Result<(), KitError> {
    let mkfs = tools::find("mkfs.vfat")?;
    let mcopy = tools::find("mcopy")?;
    let mmd = tools::find("mmd")?;
    let sector = 512;
    let mut cmd = Command::new(mkfs);
    if fat32 {
        cmd.args(["-F", "32"]);
    }
    cmd.args(["-n", label, "-i", volume_id, "--invariant"])
        .arg(format!("--offset={}", offset / sector))
        .args(["-h", &(offset / sector).to_string()])
        .arg(file)
        .arg((bytes / 1024).to_string());
    tools::run_captured("mkfs.vfat", &mut cmd)?;

    let image_spec = format!("{}@@{}", file.display(), offset);
    let mut dirs = BTreeSet::new();
    for (dest, _) in files {
        let mut prefix = String::new();
        let parts: Vec<&str> = dest.split('/').collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            prefix = if prefix.is_empty() { part.to_string() } else { format!("{prefix}/{part}") };
            dirs.insert(prefix.clone());
        }
    }
    if !dirs.is_empty() {
        // BTreeSet order puts every parent before its children.
        let args: Vec<String> = dirs.iter().map(|d| format!("::/{d}")).collect();
        tools::run_captured("mmd", Command::new(&mmd).env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(&image_spec).args(&args))?;
    }
    for (dest, src) in files {
        let mut c = Command::new(&mcopy);
        c.env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(&image_spec).arg(src).arg(format!("::/{dest}"));
        tools::run_captured("mcopy", &mut c)?;
    }
    Ok(())
}

/// What goes on the ESP: the boot chain and the GRUB configuration.
pub fn esp_files(grub_cfg: &Path) -> Result<Vec<(String, PathBuf)>, KitError> {
    let mut files = boot_chain()?;
    files.push((GRUB_CFG.to_string(), grub_cfg.to_path_buf()));
    Ok(files)
}

/// Sum of the files' sizes.
pub fn content_bytes(files: &[(String, PathBuf)]) -> Result<u64, KitError> {
    let mut total = 0;
    for (_, src) in files {
        total += std::fs::metadata(src).at(src)?.len();
    }
    Ok(total)
}

/// A standalone ESP image file (the El Torito EFI boot image of the ISO).
pub fn build_esp_image(out: &Path, files: &[(String, PathBuf)]) -> Result<u64, KitError> {
    let bytes = esp_bytes(content_bytes(files)?);
    std::fs::File::create(out).at(out)?.set_len(bytes).at(out)?;
    write_fat(out, 0, bytes, false, "VIVER-EFI", "56495645", files)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_boots_the_tagged_medium_with_the_command_line() {
        let cfg = grub_config("console=ttyS0 viver.image=abc", "boot/viver-medium-1234", "VIVER: boot image t (id abc)");
        assert!(cfg.contains("search --no-floppy --set=root --file /boot/viver-medium-1234\n"), "{cfg}");
        assert!(cfg.contains("menuentry \"VIVER: boot image t (id abc)\" {"), "{cfg}");
        assert!(cfg.contains("    linux /boot/vmlinuz console=ttyS0 viver.image=abc\n"), "{cfg}");
        assert!(cfg.contains("    initrd /boot/initrd.img\n"), "{cfg}");
    }

    #[test]
    fn quoted_words_reach_the_kernel_as_one_word_with_their_quotes() {
        assert_eq!(kernel_words(r#"a viver.role="web server"  b"#), vec!["a", r#"viver.role="web server""#, "b"]);
        assert_eq!(grub_word(r#"viver.role="web server""#), r#"'viver.role="web server"'"#);
        assert_eq!(grub_word("it's"), r#"'it'\''s'"#);
        assert_eq!(grub_word("console=ttyS0,115200"), "console=ttyS0,115200");
        // A title cannot break out of its quotes.
        assert!(grub_config("x", "t", "a\"b$c").contains("menuentry \"abc\" {"));
    }

    #[test]
    fn esp_size_has_slack_and_a_minimum() {
        assert_eq!(esp_bytes(0), 8 * MIB);
        let six = 6 * MIB + 123;
        let b = esp_bytes(six);
        assert!(b >= six + six / 10 + 2 * MIB && b % MIB == 0);
    }
}

//! `viver kit media`: bootable media holding kernel, initrd and (unless --no-image) the
//! image with its manifest, for BIOS and x86-64 UEFI (Secure Boot included) from the
//! same file.
//! - ISO: a hybrid ISO 9660 (CD, or `dd` to a USB stick): El Torito BIOS boot through
//!   isolinux plus an El Torito EFI boot image (a FAT ESP holding Debian's signed shim,
//!   GRUB and MokManager), with xorriso's hybrid MBR/GPT.
//! - usb/hdd/sd: a raw disk image with an MBR: partition 1 (FAT32, active) holds the
//!   payload and syslinux for BIOS, partition 2 is the EFI system partition.
//!
//! Everything is built as plain files, without loop mounts or root. Both boot loaders
//! pass the kernel command line made by [`kernel_cmdline`], the one source of truth.

pub mod disk;
pub mod efi;
pub mod iso;
pub mod mbr;
pub mod pe;

use super::error::{IoContext, KitError};
use sha2::Digest;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MediaKind {
    Iso,
    Usb,
    Hdd,
    Sd,
}

/// The role media carry unless told otherwise: the node booted from a VIVER medium
/// serves the LAN (as the original did).
pub const DEFAULT_ROLE: &str = "boot-server";

/// Debian's iPXE builds (package `ipxe`) the boot server hands to plain PXE firmware.
pub const IPXE_DIR: &str = "/usr/lib/ipxe";
pub const IPXE_FILES: [&str; 3] = ["undionly.kpxe", "ipxe.efi", "snponly.efi"];

/// Files a filesystem of the medium holds: (path on it, source).
pub type Files = Vec<(String, PathBuf)>;

pub struct MediaOptions {
    pub kind: MediaKind,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The image and its manifest (`<stem>.toml` beside it), or None for a boot-only medium.
    pub image: Option<PathBuf>,
    pub output: PathBuf,
    pub append: String,
    /// `viver.role=` on the command line; None: no role word.
    pub role: Option<String>,
    /// Where the iPXE builds are looked for (normally [`IPXE_DIR`]).
    pub ipxe_dir: PathBuf,
}

/// What was written, and what the person should know about it.
pub struct MediaReport {
    pub size: u64,
    pub warnings: Vec<String>,
}

/// The parts of the kernel command line every loader passes: the consoles, the role,
/// the image the medium carries (by id, so this medium's image is booted even when a
/// faster disk or a stranger's stick holds another one; copies of the same image on
/// faster media still win), then the user's `--append`. A `viver.image=` or
/// `viver.role=` in `--append` replaces the medium's own.
pub fn cmdline_words(image_id: Option<&str>, role: Option<&str>, append: &str) -> String {
    let user_sets = |key: &str| append.split_whitespace().any(|w| w.starts_with(key));
    let mut words = vec!["console=ttyS0".to_string(), "console=tty0".to_string()];
    if let Some(id) = image_id.filter(|_| !user_sets("viver.image=")) {
        words.push(format!("viver.image={id}"));
    }
    if let Some(role) = role.filter(|_| !user_sets("viver.role=")) {
        words.push(format!("viver.role={role}"));
    }
    if !append.trim().is_empty() {
        words.push(append.trim().to_string());
    }
    words.join(" ")
}

/// The manifest of the image the medium carries (None for a boot-only medium).
fn manifest(opts: &MediaOptions) -> Result<Option<(crate::image::manifest::Manifest, PathBuf)>, KitError> {
    let Some(image) = &opts.image else { return Ok(None) };
    let manifest_path = super::image::manifest_path_for(image);
    let manifest = crate::image::manifest::Manifest::load(&manifest_path)
        .map_err(|e| KitError::BadInput(format!("{e} (the image needs its manifest; build both with `viver kit image`)")))?;
    Ok(Some((manifest, manifest_path)))
}

/// The kernel command line of the medium (without the loaders' own `initrd=` syntax).
pub fn kernel_cmdline(opts: &MediaOptions) -> Result<String, KitError> {
    let id = manifest(opts)?.map(|(m, _)| m.id);
    Ok(cmdline_words(id.as_deref(), opts.role.as_deref(), &opts.append))
}

/// The syslinux/isolinux configuration: boot at once, no menu, serial mirrored.
pub fn syslinux_config(cmdline: &str) -> String {
    format!("serial 0 115200\ndefault viver\nprompt 0\ntimeout 0\n\nlabel viver\n  kernel /boot/vmlinuz\n  append initrd=/boot/initrd.img {cmdline}\n")
}

/// What the GRUB menu calls the boot entry: what the medium boots.
pub fn menu_title(opts: &MediaOptions) -> Result<String, KitError> {
    let role = opts.role.as_deref().map(|r| format!(", role {r}")).unwrap_or_default();
    Ok(match manifest(opts)? {
        Some((m, _)) => format!("VIVER: boot image {} (id {}) from this medium{role}", m.name, m.id.get(..12).unwrap_or(&m.id)),
        None => format!("VIVER: boot-only medium, the image is found on another disk{role}"),
    })
}

/// A name only this medium's files carry: GRUB, started from the ESP, finds the
/// partition or ISO 9660 tree with the kernel by this file (`search --file`), not by a
/// label another stick could share. Derived from the contents, so rebuilds are identical.
pub fn medium_tag(opts: &MediaOptions, cmdline: &str) -> Result<String, KitError> {
    let mut hash = sha2::Sha256::new();
    for path in [&opts.kernel, &opts.initrd] {
        let mut f = std::fs::File::open(path).at(path)?;
        std::io::copy(&mut f, &mut hash).at(path)?;
    }
    hash.update(cmdline.as_bytes());
    let digest = hash.finalize();
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// Path of the tag file on the medium (see [`medium_tag`]).
pub fn tag_path(tag: &str) -> String {
    format!("boot/viver-medium-{tag}")
}

/// The iPXE builds found in `dir`, as (path on the medium, source), and a warning for
/// each one missing: the boot server needs them only for plain PXE firmware, so their
/// absence is no reason to stop.
pub fn ipxe_payload(dir: &Path) -> (Files, Vec<String>) {
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for name in IPXE_FILES {
        let src = dir.join(name);
        if src.is_file() {
            // Debian's ipxe.efi is a symlink to /boot/ipxe.efi: the medium needs the file
            // (xorriso would record the link).
            files.push((format!("viver/ipxe/{name}"), src.canonicalize().unwrap_or(src)));
        } else {
            missing.push(name);
        }
    }
    let warnings = if missing.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "{} not found in {}: the medium carries no iPXE build for them, so its boot server cannot start plain PXE \
             clients that need them (install the Debian package `ipxe`)",
            missing.join(", "),
            dir.display()
        )]
    };
    (files, warnings)
}

/// Files the medium carries: (path on the medium, source), and warnings.
pub fn payload(opts: &MediaOptions, tag_file: &Path, tag: &str) -> Result<(Files, Vec<String>), KitError> {
    let need = |p: &Path, what: &str| {
        if p.is_file() {
            Ok(())
        } else {
            Err(KitError::BadInput(format!("{what} {} does not exist", p.display())))
        }
    };
    need(&opts.kernel, "kernel")?;
    need(&opts.initrd, "initrd")?;
    let mut files = vec![
        ("boot/vmlinuz".to_string(), opts.kernel.clone()),
        ("boot/initrd.img".to_string(), opts.initrd.clone()),
        (tag_path(tag), tag_file.to_path_buf()),
    ];
    if let Some(image) = &opts.image {
        need(image, "image")?;
        if let Some((manifest, manifest_path)) = manifest(opts)? {
            let stem = Path::new(&manifest.image).file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            files.push((format!("viver/{}", manifest.image), image.clone()));
            files.push((format!("viver/{stem}.toml"), manifest_path));
        }
    }
    let (ipxe, warnings) = ipxe_payload(&opts.ipxe_dir);
    files.extend(ipxe);
    Ok((files, warnings))
}

/// The warning for a kernel Secure Boot will refuse (None for a signed kernel).
pub fn signature_warning(kernel: &Path) -> Result<Option<String>, KitError> {
    let bytes = std::fs::read(kernel).at(kernel)?;
    Ok(match pe::kernel_signature(&bytes) {
        pe::KernelSignature::Signed { .. } => None,
        pe::KernelSignature::Unsigned => Some(format!(
            "kernel {} carries no signature: the medium boots on BIOS and on UEFI without Secure Boot, but a machine \
             with Secure Boot enforced will refuse this kernel (use Debian's signed linux-image-*-amd64, or sign it and \
             enroll your key with mokutil)",
            kernel.display()
        )),
        pe::KernelSignature::NotPe(why) => {
            Some(format!("kernel {} is not an EFI executable ({why}): the medium boots on BIOS only, not on UEFI", kernel.display()))
        }
    })
}

pub fn build(opts: &MediaOptions) -> Result<MediaReport, KitError> {
    for (path, what) in [(&opts.kernel, "kernel"), (&opts.initrd, "initrd")] {
        if !path.is_file() {
            return Err(KitError::BadInput(format!("{what} {} does not exist", path.display())));
        }
    }
    let mut warnings: Vec<String> = signature_warning(&opts.kernel)?.into_iter().collect();
    let size = match opts.kind {
        MediaKind::Iso => iso::build(opts, &mut warnings)?,
        MediaKind::Usb | MediaKind::Hdd | MediaKind::Sd => disk::build(opts, &mut warnings)?,
    };
    Ok(MediaReport { size, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_command_line_for_every_loader() {
        let line = cmdline_words(Some("abc"), Some(DEFAULT_ROLE), "viver.debug");
        assert_eq!(line, "console=ttyS0 console=tty0 viver.image=abc viver.role=boot-server viver.debug");
        assert!(syslinux_config(&line).contains(&format!("append initrd=/boot/initrd.img {line}\n")));
        let grub = efi::grub_config(&line, "t", "title");
        assert!(grub.contains(&format!("linux /boot/vmlinuz {line}\n")), "{grub}");
    }

    #[test]
    fn role_none_and_user_words_replace_the_defaults() {
        assert_eq!(cmdline_words(None, None, ""), "console=ttyS0 console=tty0");
        assert_eq!(
            cmdline_words(Some("abc"), Some("boot-server"), "viver.role=web viver.image=x"),
            "console=ttyS0 console=tty0 viver.role=web viver.image=x"
        );
        assert_eq!(cmdline_words(None, Some("a,b"), ""), "console=ttyS0 console=tty0 viver.role=a,b");
    }

    #[test]
    fn missing_ipxe_builds_warn_and_the_rest_is_taken() {
        let dir = std::env::temp_dir().join(format!("viver-ipxe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ipxe.efi"), b"x").unwrap();
        let (files, warnings) = ipxe_payload(&dir);
        assert_eq!(files, vec![("viver/ipxe/ipxe.efi".to_string(), dir.join("ipxe.efi"))]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("undionly.kpxe, snponly.efi") && warnings[0].contains("ipxe"), "{warnings:?}");
        std::fs::write(dir.join("undionly.kpxe"), b"x").unwrap();
        std::fs::write(dir.join("snponly.efi"), b"x").unwrap();
        assert!(ipxe_payload(&dir).1.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

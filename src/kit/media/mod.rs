//! `viver kit media`: bootable media holding kernel, initrd and (unless --no-image) the
//! image with its manifest. ISO: a hybrid ISO 9660 (CD or USB stick) booted by isolinux.
//! usb/hdd/sd: a raw disk image with an MBR and one FAT32 partition booted by syslinux,
//! built as a plain file, without loop mounts or root.

pub mod disk;
pub mod iso;
pub mod mbr;

use super::error::KitError;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MediaKind {
    Iso,
    Usb,
    Hdd,
    Sd,
}

pub struct MediaOptions {
    pub kind: MediaKind,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The image and its manifest (`<stem>.toml` beside it), or None for a boot-only medium.
    pub image: Option<PathBuf>,
    pub output: PathBuf,
    pub append: String,
}

/// The kernel command line the boot loaders pass.
pub fn kernel_append(extra: &str) -> String {
    let base = "initrd=/boot/initrd.img console=ttyS0 console=tty0";
    if extra.trim().is_empty() {
        base.to_string()
    } else {
        format!("{base} {}", extra.trim())
    }
}

/// What the medium's boot loader passes besides the fixed part: the image the medium
/// carries, by id (`viver.image=ID`), so this medium's image is booted even when a
/// faster disk or a stranger's stick holds another one (copies of the same image on
/// faster media still win), then the user's `--append`.
pub fn media_append(opts: &MediaOptions) -> Result<String, KitError> {
    let mut words = Vec::new();
    if let Some(image) = &opts.image {
        let user_names_one = opts.append.split_whitespace().any(|w| w.starts_with("viver.image="));
        if !user_names_one {
            let manifest_path = super::image::manifest_path_for(image);
            let manifest = crate::image::manifest::Manifest::load(&manifest_path)
                .map_err(|e| KitError::BadInput(format!("{e} (the image needs its manifest; build both with `viver kit image`)")))?;
            words.push(format!("viver.image={}", manifest.id));
        }
    }
    if !opts.append.trim().is_empty() {
        words.push(opts.append.trim().to_string());
    }
    Ok(words.join(" "))
}

/// The syslinux/isolinux configuration: boot at once, no menu, serial mirrored.
pub fn loader_config(append: &str) -> String {
    format!(
        "serial 0 115200\ndefault viver\nprompt 0\ntimeout 0\n\nlabel viver\n  kernel /boot/vmlinuz\n  append {}\n",
        kernel_append(append)
    )
}

/// Files the medium carries: (path on the medium, source).
pub fn payload(opts: &MediaOptions) -> Result<Vec<(String, PathBuf)>, KitError> {
    let need = |p: &Path, what: &str| {
        if p.is_file() {
            Ok(())
        } else {
            Err(KitError::BadInput(format!("{what} {} does not exist", p.display())))
        }
    };
    need(&opts.kernel, "kernel")?;
    need(&opts.initrd, "initrd")?;
    let mut files = vec![("boot/vmlinuz".to_string(), opts.kernel.clone()), ("boot/initrd.img".to_string(), opts.initrd.clone())];
    if let Some(image) = &opts.image {
        need(image, "image")?;
        let manifest_path = super::image::manifest_path_for(image);
        let manifest = crate::image::manifest::Manifest::load(&manifest_path)
            .map_err(|e| KitError::BadInput(format!("{e} (the image needs its manifest; build both with `viver kit image`)")))?;
        let stem = Path::new(&manifest.image).file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        files.push((format!("viver/{}", manifest.image), image.clone()));
        files.push((format!("viver/{stem}.toml"), manifest_path));
    }
    Ok(files)
}

pub fn build(opts: &MediaOptions) -> Result<u64, KitError> {
    match opts.kind {
        MediaKind::Iso => iso::build(opts),
        MediaKind::Usb | MediaKind::Hdd | MediaKind::Sd => disk::build(opts),
    }
}

//! Which filesystem a medium carries, read from its superblock: the initramfs has no
//! libblkid. Only the filesystems a boot medium can realistically use are known, and
//! for each we return its kind, label and UUID (spelled as `blkid` spells them, so a
//! user can copy `LABEL=`/`UUID=` from `blkid` output into `viver.media=`).
//!
//! Every probe works on bytes read from the device and uses checked access: a garbage
//! or truncated superblock is "no filesystem", never a panic.

mod btrfs;
mod bytes;
mod exfat;
mod ext;
mod fat;
mod iso9660;
mod squashfs;
mod xfs;

use crate::disks::error::DiskError;
use log::warn;
use serde::Serialize;
use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

/// How much of the device start every probe may look at: covers the btrfs
/// superblock at 64 KiB and the ISO 9660 volume descriptors from 32 KiB on.
pub const PROBE_BYTES: usize = 128 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    Iso9660,
    Ext2,
    Ext3,
    Ext4,
    Vfat,
    Exfat,
    Btrfs,
    Xfs,
    Squashfs,
}

impl FsKind {
    /// The filesystem type to pass to mount(2).
    pub fn mount_type(&self) -> &'static str {
        match self {
            FsKind::Iso9660 => "iso9660",
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Vfat => "vfat",
            FsKind::Exfat => "exfat",
            FsKind::Btrfs => "btrfs",
            FsKind::Xfs => "xfs",
            FsKind::Squashfs => "squashfs",
        }
    }

    /// What must be loaded before [`mount_readonly`](crate::disks::mount::mount_readonly):
    /// the names the kernel itself would `request_module()`: the `fs-<type>` alias of the
    /// filesystem, then the NLS tables our mount options (and the fs defaults) ask for.
    /// NLS entries are module names (`nls_iso8859-1` is the file `nls_iso8859-1.ko`).
    pub fn module_aliases(&self) -> &'static [&'static str] {
        match self {
            FsKind::Iso9660 => &["fs-iso9660", "nls_utf8"], // Joliet names via CONFIG_NLS_DEFAULT=utf8
            FsKind::Ext2 => &["fs-ext2"],                   // provided by ext4.ko on Debian
            FsKind::Ext3 => &["fs-ext3"],
            FsKind::Ext4 => &["fs-ext4"],
            FsKind::Vfat => &["fs-vfat", "nls_cp437", "nls_iso8859-1"], // see mount_options
            FsKind::Exfat => &["fs-exfat", "nls_utf8"],                 // CONFIG_EXFAT_DEFAULT_IOCHARSET=utf8
            FsKind::Btrfs => &["fs-btrfs"],
            FsKind::Xfs => &["fs-xfs"],
            FsKind::Squashfs => &["fs-squashfs"],
        }
    }

    /// Filesystem-specific mount data. vfat is given its code page and I/O charset
    /// explicitly so the NLS modules needed are exactly those in `module_aliases`
    /// (Debian's default iocharset "ascii" would need yet another table), with `utf8`
    /// so names come out as UTF-8 while lookups stay case-insensitive.
    pub fn mount_options(&self) -> &'static str {
        match self {
            FsKind::Vfat => "codepage=437,iocharset=iso8859-1,utf8",
            _ => "",
        }
    }

    /// Options for a second attempt when a read-only mount fails because the log or
    /// journal needs replaying (impossible on a read-only device): skip the replay.
    pub fn recovery_fallback_options(&self) -> Option<&'static str> {
        match self {
            FsKind::Ext3 | FsKind::Ext4 => Some("noload"),
            FsKind::Xfs => Some("norecovery"),
            _ => None,
        }
    }
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mount_type())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filesystem {
    pub kind: FsKind,
    pub label: Option<String>,
    pub uuid: Option<String>,
}

impl Filesystem {
    fn new(kind: FsKind, label: Option<String>, uuid: Option<String>) -> Self {
        Filesystem { kind, label, uuid }
    }
}

/// Read + Seek as a trait object, so the probes are not generic over the device.
trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// The device being probed: its first [`PROBE_BYTES`] read once, plus positioned
/// reads further in for the rare probe that needs them (the exFAT root directory).
struct Medium<'a> {
    dev: &'a mut dyn ReadSeek,
    name: &'a str,
    head: Vec<u8>,
}

impl Medium<'_> {
    /// `len` bytes at `offset`, for a label stored past the superblock; `None` when the
    /// device ends first (truncated medium) or the read fails. The filesystem is already
    /// recognised by then: an unreadable label is logged, not worth failing the probe.
    fn read_at(&mut self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let result = self.dev.seek(SeekFrom::Start(offset)).and_then(|_| read_up_to(self.dev, len));
        match result {
            Ok(buf) => (buf.len() == len).then_some(buf),
            Err(e) => {
                warn!("disks: {}: cannot read {len} bytes at offset {offset} for the label: {e}", self.name);
                None
            }
        }
    }
}

fn read_up_to(dev: &mut dyn ReadSeek, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match dev.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The filesystem on `dev`, `None` if no known superblock is there. Errors are only
/// I/O errors of the device itself.
pub fn probe(dev: &mut (impl Read + Seek)) -> Result<Option<Filesystem>, DiskError> {
    probe_named(dev, "<device>")
}

/// [`probe`] on the device or image file at `path`.
pub fn probe_path(path: &Path) -> Result<Option<Filesystem>, DiskError> {
    let mut file = File::open(path).map_err(|source| DiskError::Open { path: path.to_path_buf(), source })?;
    probe_named(&mut file, &path.display().to_string())
}

fn probe_named(dev: &mut dyn ReadSeek, name: &str) -> Result<Option<Filesystem>, DiskError> {
    dev.seek(SeekFrom::Start(0)).map_err(|source| DiskError::Read { device: name.to_string(), offset: 0, source })?;
    let head = read_up_to(dev, PROBE_BYTES).map_err(|source| DiskError::Read { device: name.to_string(), offset: 0, source })?;
    let mut medium = Medium { dev, name, head };
    // Strong magic numbers first; FAT, which has only plausibility checks, last.
    // ISO 9660 before FAT/exFAT: hybrid images carry an MBR at sector 0.
    let head = &medium.head;
    let found = squashfs::probe(head)
        .or_else(|| xfs::probe(head))
        .or_else(|| ext::probe(head))
        .or_else(|| btrfs::probe(head))
        .or_else(|| iso9660::probe(head));
    if found.is_some() {
        return Ok(found);
    }
    Ok(exfat::probe(&mut medium).or_else(|| fat::probe(&mut medium)))
}

#[cfg(test)]
mod tests;

//! The user's `viver.media=` override: which media to search first.
//!
//! - an ordered list of classes: `usb,hdd` (names: nvme virtio ssd hdd sata scsi ide
//!   usb sd mmc cd optical; `sata`, `scsi` and `ide` stand for both ssd and hdd, since
//!   VIVER ranks internal disks by rotation, not by bus);
//! - a device: `/dev/sdb1` (a whole disk `/dev/sdb` also selects its partitions);
//! - `LABEL=xxx` or `UUID=xxx` of the filesystem (as `blkid` prints them).

use crate::disks::blockdev::BlockDevice;
use crate::disks::class::MediaClass;
use crate::disks::error::DiskError;
use crate::disks::superblock::Filesystem;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSelector {
    Classes(Vec<MediaClass>),
    Device(PathBuf),
    Label(String),
    Uuid(String),
}

const CLASS_NAMES: &str = "nvme, virtio, ssd, hdd, sata, scsi, ide, usb, sd (mmc), cd (optical)";

pub fn parse_media(value: &str) -> Result<MediaSelector, DiskError> {
    let err = |reason: String| DiskError::MediaSpec { value: value.to_string(), reason };
    let v = value.trim();
    if v.is_empty() {
        return Err(err(format!("empty; expected a list of classes ({CLASS_NAMES}), /dev/NAME, LABEL=... or UUID=...")));
    }
    if let Some(label) = strip_prefix_ignore_case(v, "LABEL=") {
        let label = unquote(label);
        if label.is_empty() {
            return Err(err("LABEL= needs a label".into()));
        }
        return Ok(MediaSelector::Label(label.to_string()));
    }
    if let Some(uuid) = strip_prefix_ignore_case(v, "UUID=") {
        let uuid = unquote(uuid);
        if uuid.is_empty() || !uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(err(format!("UUID {uuid:?} must be hex digits and dashes, as blkid prints it")));
        }
        return Ok(MediaSelector::Uuid(uuid.to_string()));
    }
    if v.starts_with('/') {
        if !v.starts_with("/dev/") || v.len() <= "/dev/".len() {
            return Err(err("a device must be given as /dev/NAME".into()));
        }
        return Ok(MediaSelector::Device(PathBuf::from(v)));
    }
    let mut classes = Vec::new();
    for word in v.split(',') {
        let word = word.trim();
        if word.is_empty() {
            return Err(err("empty entry in the class list".into()));
        }
        let expanded: &[MediaClass] = match word.to_ascii_lowercase().as_str() {
            "nvme" => &[MediaClass::Nvme],
            "virtio" => &[MediaClass::Virtio],
            "ssd" => &[MediaClass::Ssd],
            "hdd" => &[MediaClass::Hdd],
            "sata" | "scsi" | "ide" => &[MediaClass::Ssd, MediaClass::Hdd],
            "usb" => &[MediaClass::Usb],
            "sd" | "mmc" => &[MediaClass::Mmc],
            "cd" | "optical" | "dvd" => &[MediaClass::Optical],
            _ => return Err(err(format!("unknown media class {word:?}; known: {CLASS_NAMES}"))),
        };
        for class in expanded {
            if !classes.contains(class) {
                classes.push(*class);
            }
        }
    }
    Ok(MediaSelector::Classes(classes))
}

fn strip_prefix_ignore_case<'a>(v: &'a str, prefix: &str) -> Option<&'a str> {
    let head = v.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| v.get(prefix.len()..)).flatten()
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s).trim()
}

impl MediaSelector {
    /// Position of a device in the user's preference: `Some(0)` best; `None` when the
    /// selector does not name it at all (the caller may still search it, later).
    pub fn preference(&self, dev: &BlockDevice, fs: Option<&Filesystem>) -> Option<usize> {
        match self {
            MediaSelector::Classes(classes) => classes.iter().position(|c| *c == dev.class),
            MediaSelector::Device(path) => {
                if dev.dev_path == *path {
                    Some(0)
                } else {
                    let parent_path = dev.parent.as_ref().map(|p| PathBuf::from("/dev").join(p));
                    (parent_path.as_ref() == Some(path)).then_some(1)
                }
            }
            // FAT and ISO labels are upper-cased by the tools; users type them in any case.
            MediaSelector::Label(label) => {
                let l = fs?.label.as_deref()?;
                if l == label {
                    Some(0)
                } else {
                    l.eq_ignore_ascii_case(label).then_some(1)
                }
            }
            MediaSelector::Uuid(uuid) => fs?.uuid.as_deref()?.eq_ignore_ascii_case(uuid).then_some(0),
        }
    }

    /// True when the selector names this device (see [`preference`](Self::preference)).
    pub fn matches(&self, dev: &BlockDevice, fs: Option<&Filesystem>) -> bool {
        self.preference(dev, fs).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_lists_keep_order_and_expand_bus_names() {
        assert_eq!(parse_media("usb,hdd").unwrap(), MediaSelector::Classes(vec![MediaClass::Usb, MediaClass::Hdd]));
        assert_eq!(
            parse_media(" SD , sata,cd").unwrap(),
            MediaSelector::Classes(vec![MediaClass::Mmc, MediaClass::Ssd, MediaClass::Hdd, MediaClass::Optical])
        );
        assert_eq!(parse_media("hdd,ide").unwrap(), MediaSelector::Classes(vec![MediaClass::Hdd, MediaClass::Ssd]));
    }

    #[test]
    fn devices_labels_uuids() {
        assert_eq!(parse_media("/dev/sdb1").unwrap(), MediaSelector::Device("/dev/sdb1".into()));
        assert_eq!(parse_media("LABEL=VIVER").unwrap(), MediaSelector::Label("VIVER".into()));
        assert_eq!(parse_media("label=\"My Stick\"").unwrap(), MediaSelector::Label("My Stick".into()));
        assert_eq!(parse_media("UUID=1234-ABCD").unwrap(), MediaSelector::Uuid("1234-ABCD".into()));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = parse_media("usb,floppy").unwrap_err().to_string();
        assert!(e.contains("floppy") && e.contains("known:"), "{e}");
        assert!(parse_media("").unwrap_err().to_string().contains("empty"));
        assert!(parse_media("usb,,hdd").unwrap_err().to_string().contains("empty entry"));
        assert!(parse_media("/mnt/x").unwrap_err().to_string().contains("/dev/NAME"));
        assert!(parse_media("/dev/").is_err());
        assert!(parse_media("LABEL=").is_err());
        assert!(parse_media("UUID=zz-top").unwrap_err().to_string().contains("hex"));
    }
}

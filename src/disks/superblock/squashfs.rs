//! SquashFS 4.x (the only version Linux mounts): little-endian magic `hsqs` at byte 0.
//! It has neither label nor UUID; the image is found by its file name instead.

use super::bytes::{le16, le64, slice};
use super::{Filesystem, FsKind};

pub fn probe(head: &[u8]) -> Option<Filesystem> {
    // bytes_used (offset 40) of 0 is no image at all, just a stray magic.
    if slice(head, 0, 4)? != b"hsqs" || le16(head, 28)? != 4 || le64(head, 40)? == 0 {
        return None;
    }
    Some(Filesystem::new(FsKind::Squashfs, None, None))
}

//! btrfs: primary superblock at 64 KiB, magic `_BHRfS_M` 64 bytes into it.

use super::bytes::{label, slice, uuid};
use super::{Filesystem, FsKind};

const SB: usize = 64 * 1024;

pub fn probe(head: &[u8]) -> Option<Filesystem> {
    let sb = slice(head, SB, 4096)?;
    if slice(sb, 0x40, 8)? != b"_BHRfS_M" {
        return None;
    }
    Some(Filesystem::new(FsKind::Btrfs, label(slice(sb, 0x12b, 256)?), uuid(slice(sb, 0x20, 16)?)))
}

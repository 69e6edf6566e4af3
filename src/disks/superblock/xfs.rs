//! XFS: superblock at byte 0, big-endian, magic `XFSB`.

use super::bytes::{be32, label, slice, uuid};
use super::{Filesystem, FsKind};

pub fn probe(head: &[u8]) -> Option<Filesystem> {
    if slice(head, 0, 4)? != b"XFSB" {
        return None;
    }
    let block_size = be32(head, 4)?;
    if !(512..=65536).contains(&block_size) || !block_size.is_power_of_two() {
        return None;
    }
    Some(Filesystem::new(FsKind::Xfs, label(slice(head, 108, 12)?), uuid(slice(head, 32, 16)?)))
}

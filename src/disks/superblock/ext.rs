//! ext2/ext3/ext4: superblock at byte 1024, magic 0xEF53. Which of the three is
//! decided like blkid: features beyond what ext3 supports make it ext4; otherwise a
//! journal makes it ext3; otherwise ext2.

use super::bytes::{label, le16, le32, slice, uuid};
use super::{Filesystem, FsKind};

const SB: usize = 1024;
const MAGIC: u16 = 0xEF53;
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
/// FILETYPE | RECOVER | META_BG
const EXT3_INCOMPAT: u32 = 0x2 | 0x4 | 0x10;
/// SPARSE_SUPER | LARGE_FILE | BTREE_DIR
const EXT3_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4;

pub fn probe(head: &[u8]) -> Option<Filesystem> {
    let sb = slice(head, SB, 1024)?;
    if le16(sb, 56)? != MAGIC {
        return None;
    }
    let compat = le32(sb, 92)?;
    let incompat = le32(sb, 96)?;
    let ro_compat = le32(sb, 100)?;
    if incompat & INCOMPAT_JOURNAL_DEV != 0 {
        // An external journal: carries no files, cannot be mounted.
        return None;
    }
    let kind = if incompat & !EXT3_INCOMPAT != 0 || ro_compat & !EXT3_RO_COMPAT != 0 {
        FsKind::Ext4
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
        FsKind::Ext3
    } else {
        FsKind::Ext2
    };
    Some(Filesystem::new(kind, label(slice(sb, 120, 16)?), uuid(slice(sb, 104, 16)?)))
}

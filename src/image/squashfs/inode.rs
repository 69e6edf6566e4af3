//! Inodes: directories, regular files and symlinks in their basic and extended forms;
//! the other kinds (devices, fifos, sockets) only by kind.

use super::metadata::Cursor;
use super::{Archive, SquashError, Source};

/// Refuses absurd counts from a damaged (or hostile) table before allocating for them.
const MAX_SYMLINK: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InodeKind {
    Dir {
        /// Start of the listing, relative to the directory table.
        start_block: u32,
        offset: u16,
        /// Listing size in bytes, plus 3 (the kernel's "." and "..").
        file_size: u32,
        parent: u32,
    },
    File {
        blocks_start: u64,
        file_size: u64,
        /// Index in the fragment table, or u32::MAX for none.
        fragment: u32,
        fragment_offset: u32,
        /// On-disk size of each full block (bit 24: stored uncompressed; 0: sparse).
        block_sizes: Vec<u32>,
    },
    Symlink {
        target: Vec<u8>,
    },
    Other(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub kind: InodeKind,
    pub mode: u16,
    pub number: u32,
}

pub const NO_FRAGMENT: u32 = u32::MAX;

impl<S: Source + ?Sized> Archive<'_, S> {
    /// The inode at reference `reference`: (block relative to the inode table) << 16 | offset.
    pub fn inode(&self, reference: u64) -> Result<Inode, SquashError> {
        let block = self
            .sb
            .inode_table
            .checked_add(reference >> 16)
            .filter(|b| *b < self.sb.directory_table)
            .ok_or_else(|| SquashError::corrupt(format!("inode reference {reference:#x} outside the inode table")))?;
        let mut cur = Cursor { archive: self, block, offset: (reference & 0xffff) as usize };
        let kind_id = cur.u16()?;
        let mode = cur.u16()?;
        let _uid = cur.u16()?;
        let _gid = cur.u16()?;
        let _mtime = cur.u32()?;
        let number = cur.u32()?;
        let kind = match kind_id {
            1 => {
                let start_block = cur.u32()?;
                let _nlink = cur.u32()?;
                let file_size = u32::from(cur.u16()?);
                let offset = cur.u16()?;
                let parent = cur.u32()?;
                InodeKind::Dir { start_block, offset, file_size, parent }
            }
            8 => {
                let _nlink = cur.u32()?;
                let file_size = cur.u32()?;
                let start_block = cur.u32()?;
                let parent = cur.u32()?;
                let _index_count = cur.u16()?;
                let offset = cur.u16()?;
                let _xattr = cur.u32()?;
                InodeKind::Dir { start_block, offset, file_size, parent }
            }
            2 => {
                let blocks_start = u64::from(cur.u32()?);
                let fragment = cur.u32()?;
                let fragment_offset = cur.u32()?;
                let file_size = u64::from(cur.u32()?);
                let block_sizes = self.block_list(&mut cur, file_size, fragment)?;
                InodeKind::File { blocks_start, file_size, fragment, fragment_offset, block_sizes }
            }
            9 => {
                let blocks_start = cur.u64()?;
                let file_size = cur.u64()?;
                let _sparse = cur.u64()?;
                let _nlink = cur.u32()?;
                let fragment = cur.u32()?;
                let fragment_offset = cur.u32()?;
                let _xattr = cur.u32()?;
                let block_sizes = self.block_list(&mut cur, file_size, fragment)?;
                InodeKind::File { blocks_start, file_size, fragment, fragment_offset, block_sizes }
            }
            3 | 10 => {
                let _nlink = cur.u32()?;
                let size = cur.u32()?;
                if size > MAX_SYMLINK {
                    return Err(SquashError::corrupt(format!("symlink of {size} bytes")));
                }
                InodeKind::Symlink { target: cur.take(size as usize)? }
            }
            4..=7 | 11..=14 => InodeKind::Other(kind_id),
            other => return Err(SquashError::corrupt(format!("inode type {other}"))),
        };
        Ok(Inode { kind, mode, number })
    }

    fn block_list(&self, cur: &mut Cursor<'_, '_, S>, file_size: u64, fragment: u32) -> Result<Vec<u32>, SquashError> {
        let block_size = u64::from(self.sb.block_size);
        let count = if fragment == NO_FRAGMENT { file_size.div_ceil(block_size) } else { file_size / block_size };
        // Each block takes at least... nothing when sparse, so bound by the image instead:
        // a list longer than the metadata could hold is damage.
        if count.saturating_mul(4) > self.sb.bytes_used {
            return Err(SquashError::corrupt(format!("file of {file_size} bytes needs {count} blocks")));
        }
        let raw = cur.take(count as usize * 4)?;
        Ok(raw.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

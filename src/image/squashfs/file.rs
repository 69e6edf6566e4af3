//! Where a file's bytes are: its data blocks and its fragment; reading its contents.

use super::inode::{Inode, InodeKind, NO_FRAGMENT};
use super::{Archive, SquashError, Source};

const STORED: u32 = 1 << 24;
const SIZE_MASK: u32 = STORED - 1;

/// A run of the image's bytes that holds (compressed) file data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
}

/// One entry of the fragment table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    pub start: u64,
    /// On-disk size with the stored bit (bit 24).
    pub size: u32,
}

impl<S: Source + ?Sized> Archive<'_, S> {
    pub fn fragment(&self, index: u32) -> Result<Fragment, SquashError> {
        if let Some(f) = self.fragments.borrow().get(&index) {
            return Ok(*f);
        }
        if index >= self.sb.fragment_count {
            return Err(SquashError::corrupt(format!("fragment {index} of {}", self.sb.fragment_count)));
        }
        // The table: u64 pointers to metadata blocks of 512 entries of 16 bytes.
        let pointer_at = self.sb.fragment_table + u64::from(index / 512) * 8;
        let raw = self.read(pointer_at, 8)?;
        let block = u64::from_le_bytes([raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7]]);
        if block < self.sb.metadata_start() || block >= self.sb.bytes_used {
            return Err(SquashError::corrupt(format!("fragment table block at {block}")));
        }
        let entry = self.metadata_read(block, (index % 512) as usize * 16, 16)?;
        let start = u64::from_le_bytes([entry[0], entry[1], entry[2], entry[3], entry[4], entry[5], entry[6], entry[7]]);
        let size = u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]);
        let fragment = Fragment { start, size };
        self.fragments.borrow_mut().insert(index, fragment);
        Ok(fragment)
    }

    /// The runs of the image holding `inode`'s data (empty for anything but a file).
    pub fn extents(&self, inode: &Inode) -> Result<Vec<Extent>, SquashError> {
        let InodeKind::File { blocks_start, fragment, block_sizes, .. } = &inode.kind else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut at = *blocks_start;
        for size in block_sizes {
            let len = u64::from(size & SIZE_MASK);
            if len > 0 {
                out.push(Extent { start: at, len });
            }
            at = at.checked_add(len).ok_or_else(|| SquashError::corrupt("block list overflows"))?;
        }
        if *fragment != NO_FRAGMENT {
            let f = self.fragment(*fragment)?;
            out.push(Extent { start: f.start, len: u64::from(f.size & SIZE_MASK) });
        }
        for e in &out {
            if e.start.checked_add(e.len).is_none_or(|end| end > self.sb.bytes_used) || e.len > u64::from(self.sb.block_size) + 1024 {
                return Err(SquashError::corrupt(format!("data block {}+{} outside the image", e.start, e.len)));
            }
        }
        Ok(out)
    }

    fn data_block(&self, start: u64, size: u32) -> Result<std::rc::Rc<Vec<u8>>, SquashError> {
        if let Some((at, data)) = self.last_block.borrow().as_ref() {
            if *at == start {
                return Ok(data.clone());
            }
        }
        let data = std::rc::Rc::new(self.decompress_block(start, size)?);
        *self.last_block.borrow_mut() = Some((start, data.clone()));
        Ok(data)
    }

    fn decompress_block(&self, start: u64, size: u32) -> Result<Vec<u8>, SquashError> {
        let len = (size & SIZE_MASK) as usize;
        let limit = self.sb.block_size as usize;
        if len > limit + 1024 {
            return Err(SquashError::corrupt(format!("data block of {len} bytes")));
        }
        let raw = self.read(start, len)?;
        if size & STORED != 0 {
            Ok(raw)
        } else {
            super::compress::decompress(self.sb.compressor, &raw, limit)
        }
    }

    /// `len` bytes of the file `inode` from `offset` (fewer at its end).
    pub fn read_file(&self, inode: &Inode, offset: u64, len: usize) -> Result<Vec<u8>, SquashError> {
        let InodeKind::File { blocks_start, file_size, fragment, fragment_offset, block_sizes } = &inode.kind else {
            return Err(SquashError::corrupt("reading something that is not a file"));
        };
        let block_size = u64::from(self.sb.block_size);
        let end = offset.saturating_add(len as u64).min(*file_size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let index = pos / block_size;
            let within = (pos % block_size) as usize;
            let data = if let Some(size) = block_sizes.get(index as usize) {
                if size & SIZE_MASK == 0 {
                    std::rc::Rc::new(vec![0u8; block_size.min(file_size - index * block_size) as usize])
                } else {
                    let start = blocks_start
                        + block_sizes[..index as usize].iter().map(|s| u64::from(s & SIZE_MASK)).sum::<u64>();
                    self.data_block(start, *size)?
                }
            } else if *fragment != NO_FRAGMENT {
                let f = self.fragment(*fragment)?;
                let block = self.data_block(f.start, f.size)?;
                let tail = (file_size % block_size) as usize;
                let from = *fragment_offset as usize;
                std::rc::Rc::new(
                    block
                        .get(from..from + tail)
                        .ok_or_else(|| SquashError::corrupt("a fragment is shorter than its file's tail"))?
                        .to_vec(),
                )
            } else {
                return Err(SquashError::corrupt("a file ends before its size"));
            };
            let take = (end - pos) as usize;
            let piece = data.get(within..).unwrap_or_default();
            if piece.is_empty() {
                return Err(SquashError::corrupt("a data block is shorter than the block size"));
            }
            out.extend_from_slice(&piece[..take.min(piece.len())]);
            pos += take.min(piece.len()) as u64;
        }
        Ok(out)
    }
}

//! Metadata blocks: a 2-byte header (bit 15 set: stored uncompressed; the rest: the
//! size on disk) and at most 8 KiB of data once decompressed. Inodes, directories and
//! the fragment table live in chains of them.

use super::{Archive, SquashError, Source};
use std::rc::Rc;

pub const BLOCK_SIZE: usize = 8192;

#[derive(Debug)]
pub struct Block {
    pub data: Vec<u8>,
    /// Where the next block of the chain starts.
    pub next: u64,
}

impl<S: Source + ?Sized> Archive<'_, S> {
    /// The metadata block at absolute offset `start`.
    pub fn metadata_block(&self, start: u64) -> Result<Rc<Block>, SquashError> {
        if let Some(block) = self.cache.borrow().get(&start) {
            return Ok(block.clone());
        }
        let header = self.read(start, 2)?;
        let header = u16::from_le_bytes([header[0], header[1]]);
        let stored = header & 0x8000 != 0;
        let size = usize::from(header & 0x7fff);
        if size == 0 || size > BLOCK_SIZE {
            return Err(SquashError::corrupt(format!("metadata block at {start} claims {size} bytes")));
        }
        let raw = self.read(start + 2, size)?;
        let data = if stored { raw } else { super::compress::decompress(self.sb.compressor, &raw, BLOCK_SIZE)? };
        let block = Rc::new(Block { data, next: start + 2 + size as u64 });
        self.cache.borrow_mut().insert(start, block.clone());
        Ok(block)
    }

    /// `len` bytes of a metadata chain, from block `start` (absolute) at `offset` in it.
    pub fn metadata_read(&self, start: u64, offset: usize, len: usize) -> Result<Vec<u8>, SquashError> {
        let mut out = Vec::with_capacity(len.min(1 << 20));
        let (mut block_start, mut offset) = (start, offset);
        while out.len() < len {
            let block = self.metadata_block(block_start)?;
            if offset > block.data.len() {
                return Err(SquashError::corrupt(format!("offset {offset} in a metadata block of {}", block.data.len())));
            }
            let take = (len - out.len()).min(block.data.len() - offset);
            out.extend_from_slice(&block.data[offset..offset + take]);
            offset += take;
            if out.len() < len {
                if block.next >= self.sb.bytes_used {
                    return Err(SquashError::corrupt("a metadata chain runs past the end of the image"));
                }
                block_start = block.next;
                offset = 0;
            }
        }
        Ok(out)
    }
}

/// A cursor in a metadata chain.
pub struct Cursor<'a, 's, S: Source + ?Sized> {
    pub archive: &'a Archive<'s, S>,
    pub block: u64,
    pub offset: usize,
}

impl<S: Source + ?Sized> Cursor<'_, '_, S> {
    pub fn take(&mut self, len: usize) -> Result<Vec<u8>, SquashError> {
        let bytes = self.archive.metadata_read(self.block, self.offset, len)?;
        // Advance: walk the blocks the read went through.
        let mut remaining = len;
        loop {
            let block = self.archive.metadata_block(self.block)?;
            let here = block.data.len().saturating_sub(self.offset);
            if remaining < here || (remaining == here && remaining == 0) {
                self.offset += remaining;
                break;
            }
            remaining -= here;
            self.block = block.next;
            self.offset = 0;
            if remaining == 0 {
                break;
            }
        }
        Ok(bytes)
    }

    pub fn u16(&mut self) -> Result<u16, SquashError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, SquashError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, SquashError> {
        Ok(u64::from(self.u32()?) | (u64::from(self.u32()?) << 32))
    }
}

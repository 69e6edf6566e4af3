//! A small read-only SquashFS 4.0 reader: enough to find a file by path and tell which
//! bytes of the image hold it, so the boot can check exactly those against the
//! manifest's chunk hashes before it trusts the image (see [`crate::image::verify`]).
//!
//! Every byte it reads comes through a [`Source`]; the boot's source checks each chunk
//! against the manifest before handing out a byte of it, so only verified metadata is
//! ever parsed. Compressors: gzip (zlib), xz and zstd; lzma, lzo and lz4 are reported as
//! unsupported (the caller then checks every chunk instead).
//!
//! Layout of the format: <https://dr-emann.github.io/squashfs/> and the kernel's
//! `fs/squashfs/squashfs_fs.h`.

pub mod compress;
pub mod dir;
pub mod file;
pub mod inode;
pub mod metadata;
pub mod superblock;
#[cfg(test)]
mod tests;

pub use file::Extent;
pub use inode::{Inode, InodeKind};
pub use superblock::Superblock;

use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum SquashError {
    #[error("reading {len} bytes at offset {offset}: {message}")]
    Read { offset: u64, len: usize, message: String },
    #[error("damaged SquashFS: {0}")]
    Corrupt(String),
    #[error("{0} is not supported by VIVER's SquashFS reader")]
    Unsupported(String),
    #[error("{0}: no such file in the image")]
    NotFound(String),
    #[error("{0}: too many levels of symbolic links")]
    Loop(String),
}

impl SquashError {
    pub(crate) fn corrupt(what: impl Into<String>) -> SquashError {
        SquashError::Corrupt(what.into())
    }
}

/// Where the image's bytes come from.
pub trait Source {
    /// Fills `buf` with the bytes at `offset`; short images are an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SquashError>;
}

impl Source for [u8] {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SquashError> {
        let start = usize::try_from(offset).ok();
        let slice = start.and_then(|s| self.get(s..s.checked_add(buf.len())?));
        match slice {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(SquashError::Read { offset, len: buf.len(), message: "past the end of the image".into() }),
        }
    }
}

impl Source for Vec<u8> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SquashError> {
        self.as_slice().read_at(offset, buf)
    }
}

/// An opened image: its superblock and a cache of the metadata blocks read so far.
pub struct Archive<'s, S: Source + ?Sized> {
    pub source: &'s S,
    pub sb: Superblock,
    cache: std::cell::RefCell<HashMap<u64, std::rc::Rc<metadata::Block>>>,
    fragments: std::cell::RefCell<HashMap<u32, file::Fragment>>,
    /// The last data block decompressed (start, bytes): ELF headers are read piece by piece.
    last_block: std::cell::RefCell<Option<(u64, std::rc::Rc<Vec<u8>>)>>,
}

impl<'s, S: Source + ?Sized> Archive<'s, S> {
    pub fn open(source: &'s S) -> Result<Archive<'s, S>, SquashError> {
        let mut raw = [0u8; superblock::SIZE];
        source.read_at(0, &mut raw)?;
        let sb = Superblock::parse(&raw)?;
        Ok(Archive { source, sb, cache: Default::default(), fragments: Default::default(), last_block: Default::default() })
    }

    /// The bytes `[offset, offset + len)` of the image.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, SquashError> {
        if offset.checked_add(len as u64).is_none_or(|end| end > self.sb.bytes_used) {
            return Err(SquashError::corrupt(format!("{len} bytes at {offset} lie past bytes_used {}", self.sb.bytes_used)));
        }
        let mut buf = vec![0u8; len];
        self.source.read_at(offset, &mut buf)?;
        Ok(buf)
    }

    pub fn root(&self) -> Result<Inode, SquashError> {
        self.inode(self.sb.root_inode)
    }
}

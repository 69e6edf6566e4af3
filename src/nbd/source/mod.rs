//! Where the bytes of an NBD device come from.

pub mod file;
pub mod http;
pub mod manifest;
pub mod record;

pub use file::FileSource;
pub use http::{ChunkVerifier, HttpSource, HttpSourceOptions};
pub use manifest::ManifestChunks;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading {len} bytes at {offset} of {what}: {source}")]
    Io { what: String, offset: u64, len: usize, source: std::io::Error },
    #[error("{len} bytes at {offset} lie past the end ({size} bytes)")]
    OutOfRange { offset: u64, len: usize, size: u64 },
    #[error("{0}")]
    Http(String),
    #[error("chunk {index} fails its check: {detail}")]
    Verify { index: u64, detail: String },
    #[error("stopped")]
    Stopped,
}

/// A read-only array of bytes the NBD server exports. Reads may block (a network
/// source waiting for its server); they must be safe to call from several threads.
pub trait BlockSource: Send + Sync {
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; the server has checked that the range lies inside.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError>;
}

/// Bytes in memory (tests, and an image already copied to RAM).
pub struct MemSource {
    data: Vec<u8>,
}

impl MemSource {
    pub fn new(data: Vec<u8>) -> MemSource {
        MemSource { data }
    }
}

impl BlockSource for MemSource {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let out_of_range = || SourceError::OutOfRange { offset, len: buf.len(), size: self.size() };
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(buf.len()).ok_or_else(out_of_range)?;
        let slice = self.data.get(start..end).ok_or_else(out_of_range)?;
        buf.copy_from_slice(slice);
        Ok(())
    }
}

//! Decompressing one metadata or data block.

use super::superblock::Compressor;
use super::SquashError;
use std::io::{Read, Write};

/// A writer that refuses to grow past `limit` bytes: a block never decompresses to more
/// than the block size, and a damaged one must not eat the memory.
struct Limited {
    out: Vec<u8>,
    limit: usize,
}

impl Write for Limited {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            return Err(std::io::Error::other("decompresses to more than the block size"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_limited(mut reader: impl Read, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.by_ref().take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(std::io::Error::other("decompresses to more than the block size"));
    }
    Ok(out)
}

/// Decompresses `input` (one block) to at most `limit` bytes.
pub fn decompress(compressor: Compressor, input: &[u8], limit: usize) -> Result<Vec<u8>, SquashError> {
    let failed = |e: std::io::Error| SquashError::corrupt(format!("{} block does not decompress: {e}", compressor.name()));
    match compressor {
        Compressor::Gzip => read_limited(flate2::read::ZlibDecoder::new(input), limit).map_err(failed),
        Compressor::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|e| SquashError::corrupt(format!("zstd block does not decompress: {e}")))?;
            read_limited(decoder, limit).map_err(failed)
        }
        Compressor::Xz => {
            let mut sink = Limited { out: Vec::new(), limit };
            let mut reader = std::io::BufReader::new(input);
            lzma_rs::xz_decompress(&mut reader, &mut sink)
                .map_err(|e| SquashError::corrupt(format!("xz block does not decompress: {e}")))?;
            Ok(sink.out)
        }
        other => Err(SquashError::Unsupported(format!("the {} compressor", other.name()))),
    }
}

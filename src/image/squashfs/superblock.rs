//! The 96-byte superblock at the start of the image.

use super::SquashError;

pub const SIZE: usize = 96;
pub const MAGIC: u32 = 0x7371_7368; // "hsqs"
/// A table start that says "this table is absent".
pub const ABSENT: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    Gzip,
    Lzma,
    Lzo,
    Xz,
    Lz4,
    Zstd,
}

impl Compressor {
    pub fn name(self) -> &'static str {
        match self {
            Compressor::Gzip => "gzip",
            Compressor::Lzma => "lzma",
            Compressor::Lzo => "lzo",
            Compressor::Xz => "xz",
            Compressor::Lz4 => "lz4",
            Compressor::Zstd => "zstd",
        }
    }

    /// Whether this reader can decompress it.
    pub fn supported(self) -> bool {
        matches!(self, Compressor::Gzip | Compressor::Xz | Compressor::Zstd)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub inode_count: u32,
    pub block_size: u32,
    pub fragment_count: u32,
    pub compressor: Compressor,
    pub flags: u16,
    pub id_count: u16,
    pub root_inode: u64,
    pub bytes_used: u64,
    pub id_table: u64,
    pub xattr_table: u64,
    pub inode_table: u64,
    pub directory_table: u64,
    pub fragment_table: u64,
    pub export_table: u64,
}

impl Superblock {
    pub fn parse(raw: &[u8; SIZE]) -> Result<Superblock, SquashError> {
        let u16_at = |o: usize| u16::from_le_bytes([raw[o], raw[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        if u32_at(0) != MAGIC {
            return Err(SquashError::corrupt("no hsqs magic"));
        }
        if (u16_at(28), u16_at(30)) != (4, 0) {
            return Err(SquashError::Unsupported(format!("SquashFS version {}.{}", u16_at(28), u16_at(30))));
        }
        let block_size = u32_at(12);
        let block_log = u16_at(22);
        if !(4096..=1 << 20).contains(&block_size) || 1u32.checked_shl(u32::from(block_log)) != Some(block_size) {
            return Err(SquashError::corrupt(format!("block size {block_size} with log {block_log}")));
        }
        let compressor = match u16_at(20) {
            1 => Compressor::Gzip,
            2 => Compressor::Lzma,
            3 => Compressor::Lzo,
            4 => Compressor::Xz,
            5 => Compressor::Lz4,
            6 => Compressor::Zstd,
            other => return Err(SquashError::corrupt(format!("compressor id {other}"))),
        };
        let sb = Superblock {
            inode_count: u32_at(4),
            block_size,
            fragment_count: u32_at(16),
            compressor,
            flags: u16_at(24),
            id_count: u16_at(26),
            root_inode: u64_at(32),
            bytes_used: u64_at(40),
            id_table: u64_at(48),
            xattr_table: u64_at(56),
            inode_table: u64_at(64),
            directory_table: u64_at(72),
            fragment_table: u64_at(80),
            export_table: u64_at(88),
        };
        for (name, start) in sb.tables() {
            if start < SIZE as u64 || start >= sb.bytes_used {
                return Err(SquashError::corrupt(format!("{name} table at {start}, outside 96..{}", sb.bytes_used)));
            }
        }
        if sb.directory_table < sb.inode_table {
            return Err(SquashError::corrupt("the directory table starts before the inode table"));
        }
        Ok(sb)
    }

    /// The tables that are present, with their start offsets.
    pub fn tables(&self) -> Vec<(&'static str, u64)> {
        [
            ("inode", self.inode_table),
            ("directory", self.directory_table),
            ("fragment", self.fragment_table),
            ("export", self.export_table),
            ("id", self.id_table),
            ("xattr", self.xattr_table),
        ]
        .into_iter()
        .filter(|(_, start)| *start != ABSENT)
        .collect()
    }

    /// Where the metadata begins: mksquashfs writes every table after the data, from the
    /// inode table on to `bytes_used`.
    pub fn metadata_start(&self) -> u64 {
        self.tables().iter().map(|(_, start)| *start).min().unwrap_or(self.inode_table)
    }
}

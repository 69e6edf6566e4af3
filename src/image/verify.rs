//! The checks an image passes before it may become the root: a SquashFS 4 superblock
//! whose own idea of its length fits the file, the size the manifest promises, and (on
//! request, or when copying to RAM) the manifest's SHA-256.

use super::manifest::Manifest;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";

/// What the superblock says, for the report and for choosing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SquashfsInfo {
    pub bytes_used: u64,
    pub block_size: u32,
    pub compressor: &'static str,
    pub mkfs_time: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not a SquashFS image (no hsqs magic)")]
    NotSquashfs { path: String },
    #[error("{path}: SquashFS version {major}.{minor}, only 4.x is mountable by Linux")]
    Version { path: String, major: u16, minor: u16 },
    #[error("{path} is truncated: its superblock says {bytes_used} bytes, the file has {file_size}")]
    Truncated { path: String, bytes_used: u64, file_size: u64 },
    #[error("{path}: superblock is damaged ({what})")]
    Damaged { path: String, what: String },
    #[error("{path} has {file_size} bytes, its manifest says {expected}: a partial or foreign copy")]
    Size { path: String, file_size: u64, expected: u64 },
    #[error("{path}: SHA-256 {found} differs from the manifest's {expected}: the image is corrupt")]
    Checksum { path: String, found: String, expected: String },
}

fn compressor_name(id: u16) -> Option<&'static str> {
    Some(match id {
        1 => "gzip",
        2 => "lzma",
        3 => "lzo",
        4 => "xz",
        5 => "lz4",
        6 => "zstd",
        _ => return None,
    })
}

/// Reads and checks the superblock at the start of `reader`; `file_size` is the length of
/// the file or device that holds it.
pub fn read_superblock(reader: &mut impl Read, file_size: u64, shown: &str) -> Result<SquashfsInfo, VerifyError> {
    let mut sb = [0u8; 96];
    reader.read_exact(&mut sb).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => VerifyError::NotSquashfs { path: shown.to_string() },
        _ => VerifyError::Io { path: shown.to_string(), source: e },
    })?;
    if &sb[0..4] != SQUASHFS_MAGIC {
        return Err(VerifyError::NotSquashfs { path: shown.to_string() });
    }
    let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
    let (major, minor) = (u16_at(28), u16_at(30));
    if major != 4 {
        return Err(VerifyError::Version { path: shown.to_string(), major, minor });
    }
    let damaged = |what: String| VerifyError::Damaged { path: shown.to_string(), what };
    let block_size = u32_at(12);
    let block_log = u16_at(22);
    if !(4096..=1 << 20).contains(&block_size) || block_size.count_ones() != 1 || 1u32 << block_log.min(31) != block_size {
        return Err(damaged(format!("block size {block_size} with log {block_log}")));
    }
    let compressor = compressor_name(u16_at(20)).ok_or_else(|| damaged(format!("compressor id {}", u16_at(20))))?;
    let bytes_used = u64_at(40);
    if bytes_used < 96 {
        return Err(damaged(format!("bytes_used {bytes_used}")));
    }
    if bytes_used > file_size {
        return Err(VerifyError::Truncated { path: shown.to_string(), bytes_used, file_size });
    }
    Ok(SquashfsInfo { bytes_used, block_size, compressor, mkfs_time: u32_at(8) })
}

/// The quick checks: superblock and size. Reads 96 bytes.
pub fn quick(path: &Path, manifest: Option<&Manifest>) -> Result<SquashfsInfo, VerifyError> {
    let shown = path.display().to_string();
    let io = |source| VerifyError::Io { path: shown.clone(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_size = device_or_file_size(&mut file).map_err(io)?;
    if let Some(manifest) = manifest {
        if file_size != manifest.size {
            return Err(VerifyError::Size { path: shown, file_size, expected: manifest.size });
        }
    }
    read_superblock(&mut file, file_size, &shown)
}

/// A block device's metadata says size 0; seeking to the end says the truth for both.
fn device_or_file_size(file: &mut std::fs::File) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let size = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    Ok(size)
}

/// Hashes `reader` while (optionally) copying it to `sink`, calling `progress(done)`
/// every few MiB. One pass serves both `viver.verify=full` and `viver.toram`.
pub fn sha256_copy(
    reader: &mut impl Read,
    mut sink: Option<&mut dyn std::io::Write>,
    mut progress: impl FnMut(u64),
) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        if let Some(sink) = sink.as_mut() {
            sink.write_all(chunk)?;
        }
        done += n as u64;
        if done % (16 << 20) < n as u64 {
            progress(done);
        }
    }
    progress(done);
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The full check: the manifest's checksum over the whole file.
pub fn full(path: &Path, manifest: &Manifest, progress: impl FnMut(u64)) -> Result<(), VerifyError> {
    let shown = path.display().to_string();
    let mut file = std::fs::File::open(path).map_err(|source| VerifyError::Io { path: shown.clone(), source })?;
    let found = sha256_copy(&mut file, None, progress).map_err(|source| VerifyError::Io { path: shown.clone(), source })?;
    check_digest(&shown, &found, manifest)
}

pub fn check_digest(shown: &str, found: &str, manifest: &Manifest) -> Result<(), VerifyError> {
    let expected = manifest.checksum_hex().unwrap_or_default();
    if !found.eq_ignore_ascii_case(expected) {
        return Err(VerifyError::Checksum { path: shown.to_string(), found: found.to_string(), expected: expected.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid superblock: magic, block size 128 KiB (log 17), zstd, version 4.0.
    fn superblock(bytes_used: u64) -> Vec<u8> {
        let mut sb = vec![0u8; 96];
        sb[0..4].copy_from_slice(b"hsqs");
        sb[8..12].copy_from_slice(&1_700_000_000u32.to_le_bytes());
        sb[12..16].copy_from_slice(&(128u32 << 10).to_le_bytes());
        sb[20..22].copy_from_slice(&6u16.to_le_bytes());
        sb[22..24].copy_from_slice(&17u16.to_le_bytes());
        sb[28..30].copy_from_slice(&4u16.to_le_bytes());
        sb[40..48].copy_from_slice(&bytes_used.to_le_bytes());
        sb
    }

    #[test]
    fn accepts_a_sound_superblock() {
        let info = read_superblock(&mut superblock(4096).as_slice(), 8192, "x").unwrap();
        assert_eq!(info, SquashfsInfo { bytes_used: 4096, block_size: 131072, compressor: "zstd", mkfs_time: 1_700_000_000 });
    }

    #[test]
    fn rejects_truncation_garbage_and_old_versions() {
        assert!(matches!(read_superblock(&mut superblock(9000).as_slice(), 8192, "x"), Err(VerifyError::Truncated { .. })));
        assert!(matches!(read_superblock(&mut [0u8; 10].as_slice(), 10, "x"), Err(VerifyError::NotSquashfs { .. })));
        assert!(matches!(read_superblock(&mut vec![0xAB; 4096].as_slice(), 4096, "x"), Err(VerifyError::NotSquashfs { .. })));
        let mut v3 = superblock(4096);
        v3[28] = 3;
        assert!(matches!(read_superblock(&mut v3.as_slice(), 8192, "x"), Err(VerifyError::Version { major: 3, .. })));
        let mut bad_block = superblock(4096);
        bad_block[22] = 16;
        assert!(matches!(read_superblock(&mut bad_block.as_slice(), 8192, "x"), Err(VerifyError::Damaged { .. })));
    }

    #[test]
    fn sha256_matches_a_known_value_and_copies() {
        let mut sink = Vec::new();
        let hex = sha256_copy(&mut b"abc".as_slice(), Some(&mut sink), |_| {}).unwrap();
        assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(sink, b"abc");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for round in 0..5000 {
            let mut buf = superblock(4096);
            for _ in 0..(round % 8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % 96) as usize;
                buf[i] = (x >> 32) as u8;
            }
            let _ = read_superblock(&mut buf.as_slice(), x % 10000, "fuzz");
        }
    }
}

//! The checks an image passes before it may become the root: a SquashFS 4 superblock
//! whose own idea of its length fits the file, the size the manifest promises, then
//! (format 2 manifests) the chunks that hold the SquashFS metadata and the files `exec`
//! of init needs against the manifest's chunk hashes, or every chunk with
//! `viver.verify=full`; format 1 manifests get the whole SHA-256 with `viver.verify=full`
//! (and when copying to RAM).

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
    #[error("chunk {index} (offset {start}..{end} of {path}) does not match the manifest")]
    Chunk { path: String, index: u64, start: u64, end: u64 },
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

// ------------------------------------------------------------------ chunk checks

/// How much of an image is checked against its manifest before it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Superblock and size.
    Quick,
    /// And the chunks of the SquashFS metadata and of the files init's exec needs.
    Boot,
    /// And every chunk (format 1: the whole SHA-256).
    Full,
}

/// What was checked, for the boot report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChunkReport {
    /// "quick", "boot" or "full": what was asked.
    pub level: String,
    /// True when every byte of the image was checked.
    pub complete: bool,
    pub chunk_size: u64,
    pub chunks_total: u64,
    pub chunks_verified: u64,
    pub bytes_verified: u64,
    pub image_bytes: u64,
    /// The chunks checked, as ranges of indices: `0-3,17,40-44`.
    pub verified_chunks: String,
    /// The files whose chunks were checked (paths inside the image), init first.
    pub files: Vec<String>,
    /// Why less (or more) than asked was checked.
    pub notes: Vec<String>,
}

/// The image seen through its chunk hashes: every byte handed out belongs to a chunk
/// that matched the manifest. Verified chunks stay in memory while the check runs.
pub struct ChunkedImage {
    file: std::fs::File,
    shown: String,
    layout: crate::image::chunks::Layout,
    hashes: Vec<crate::image::chunks::Hash>,
    verified: std::cell::RefCell<std::collections::HashMap<u64, Vec<u8>>>,
    mismatch: std::cell::RefCell<Option<VerifyError>>,
}

impl ChunkedImage {
    pub fn open(path: &Path, manifest: &Manifest) -> Result<Option<ChunkedImage>, VerifyError> {
        let shown = path.display().to_string();
        let Some(chunks) = &manifest.chunks else { return Ok(None) };
        let hashes =
            chunks.parsed_hashes().ok_or_else(|| VerifyError::Damaged { path: shown.clone(), what: "manifest chunk hashes".into() })?;
        let file = std::fs::File::open(path).map_err(|source| VerifyError::Io { path: shown.clone(), source })?;
        Ok(Some(ChunkedImage {
            file,
            shown,
            layout: chunks.layout(manifest.size),
            hashes,
            verified: Default::default(),
            mismatch: Default::default(),
        }))
    }

    /// Reads and checks chunk `index` (once).
    pub fn verify_chunk(&self, index: u64) -> Result<(), VerifyError> {
        if self.verified.borrow().contains_key(&index) {
            return Ok(());
        }
        let (start, end) = self.layout.range(index);
        let mut data = vec![0u8; (end - start) as usize];
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(&mut data, start).map_err(|source| VerifyError::Io { path: self.shown.clone(), source })?;
        let expected = self.hashes.get(index as usize).copied().unwrap_or([0; 32]);
        if self.layout.chunk_hash(&data) != expected {
            return Err(VerifyError::Chunk { path: self.shown.clone(), index, start, end });
        }
        self.verified.borrow_mut().insert(index, data);
        Ok(())
    }

    pub fn verify_range(&self, start: u64, end: u64) -> Result<(), VerifyError> {
        for index in self.layout.covering(start, end) {
            self.verify_chunk(index)?;
        }
        Ok(())
    }

    /// Every chunk, one after the other, without keeping them.
    pub fn verify_all(&self, mut progress: impl FnMut(u64)) -> Result<(), VerifyError> {
        use std::os::unix::fs::FileExt;
        let mut data = Vec::new();
        for index in 0..self.layout.count() {
            if self.verified.borrow().contains_key(&index) {
                continue;
            }
            let (start, end) = self.layout.range(index);
            data.resize((end - start) as usize, 0);
            self.file.read_exact_at(&mut data, start).map_err(|source| VerifyError::Io { path: self.shown.clone(), source })?;
            if self.layout.chunk_hash(&data) != self.hashes.get(index as usize).copied().unwrap_or([0; 32]) {
                return Err(VerifyError::Chunk { path: self.shown.clone(), index, start, end });
            }
            progress(end);
        }
        Ok(())
    }

    fn ranges(&self) -> String {
        let mut indices: Vec<u64> = self.verified.borrow().keys().copied().collect();
        indices.sort_unstable();
        index_ranges(&indices)
    }

    fn counts(&self) -> (u64, u64) {
        let verified = self.verified.borrow();
        let bytes = verified.keys().map(|i| {
            let (s, e) = self.layout.range(*i);
            e - s
        });
        (verified.len() as u64, bytes.sum())
    }
}

impl crate::image::squashfs::Source for ChunkedImage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), crate::image::squashfs::SquashError> {
        let end = offset.saturating_add(buf.len() as u64);
        let len = buf.len();
        let read_error = |message: String| crate::image::squashfs::SquashError::Read { offset, len, message };
        if end > self.layout.size {
            return Err(read_error("past the end of the image".into()));
        }
        if let Err(e) = self.verify_range(offset, end) {
            let message = e.to_string();
            *self.mismatch.borrow_mut() = Some(e);
            return Err(read_error(message));
        }
        let verified = self.verified.borrow();
        let mut done = 0usize;
        for index in self.layout.covering(offset, end) {
            let (chunk_start, _) = self.layout.range(index);
            let Some(data) = verified.get(&index) else { return Err(read_error("chunk not verified".into())) };
            let from = (offset + done as u64 - chunk_start) as usize;
            let take = (buf.len() - done).min(data.len().saturating_sub(from));
            buf[done..done + take].copy_from_slice(&data[from..from + take]);
            done += take;
        }
        Ok(())
    }
}

/// The chunk check of `level` for the image at `path`; `inits` are the inits the
/// hand-over would try, in order (paths inside the image). Err only for a chunk that
/// does not match (or cannot be read): the reason to reject the copy.
pub fn chunks(path: &Path, manifest: Option<&Manifest>, level: Level, inits: &[String]) -> Result<ChunkReport, VerifyError> {
    let level_name = match level {
        Level::Quick => "quick",
        Level::Boot => "boot",
        Level::Full => "full",
    };
    let mut report = ChunkReport { level: level_name.into(), ..ChunkReport::default() };
    let Some(manifest) = manifest else {
        report.notes.push("no manifest: only the superblock was checked".into());
        return Ok(report);
    };
    report.image_bytes = manifest.size;
    let Some(image) = ChunkedImage::open(path, manifest)? else {
        // Format 1: no chunk hashes.
        if level == Level::Full {
            full(path, manifest, |_| {})?;
            report.complete = true;
            report.bytes_verified = manifest.size;
            report.notes.push("format 1 manifest: the whole image's SHA-256 was checked".into());
        } else {
            report.notes.push("format 1 manifest (no chunk hashes): only the superblock and the size were checked".into());
        }
        return Ok(report);
    };
    report.chunk_size = image.layout.chunk;
    report.chunks_total = image.layout.count();
    match level {
        Level::Quick => {}
        Level::Full => {
            image.verify_all(|_| {})?;
            report.complete = true;
        }
        Level::Boot => {
            if let Err(reason) = boot_chunks(&image, inits, &mut report) {
                if let Some(mismatch) = image.mismatch.borrow_mut().take() {
                    return Err(mismatch);
                }
                // The verified metadata is as the kit wrote it, yet this reader cannot
                // follow it (or cannot decompress it): check everything instead.
                report.notes.push(format!("{reason}; every chunk was checked instead"));
                image.verify_all(|_| {})?;
                report.complete = true;
            }
        }
    }
    let (chunks_verified, bytes_verified) = image.counts();
    if report.complete {
        report.chunks_verified = report.chunks_total;
        report.bytes_verified = manifest.size;
        report.verified_chunks = match report.chunks_total {
            0 => String::new(),
            1 => "0".into(),
            n => format!("0-{}", n - 1),
        };
    } else {
        report.chunks_verified = chunks_verified;
        report.bytes_verified = bytes_verified;
        report.verified_chunks = image.ranges();
        report.complete = chunks_verified == report.chunks_total;
    }
    Ok(report)
}

/// `[0, 1, 2, 5, 7, 8]` -> `0-2,5,7-8` (a sorted list).
fn index_ranges(indices: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] <= end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

/// The superblock's chunk, the metadata's chunks, then init's files' chunks.
fn boot_chunks(image: &ChunkedImage, inits: &[String], report: &mut ChunkReport) -> Result<(), String> {
    use crate::image::squashfs::{Archive, InodeKind};
    let archive = Archive::open(image).map_err(|e| format!("superblock: {e}"))?;
    let sb = &archive.sb;
    image.verify_range(0, 96).map_err(|e| e.to_string())?;
    image.verify_range(sb.metadata_start(), sb.bytes_used).map_err(|e| e.to_string())?;
    if !sb.compressor.supported() {
        return Err(format!("the {} compressor is not supported by VIVER's SquashFS reader", sb.compressor.name()));
    }
    let init = inits.iter().find_map(|candidate| match archive.lookup(candidate) {
        Ok((_, inode)) if matches!(inode.kind, InodeKind::File { .. }) && inode.mode & 0o111 != 0 => Some(candidate.clone()),
        _ => None,
    });
    let Some(init) = init else {
        report.notes.push(format!("none of the inits {} is in the image", inits.join(", ")));
        return Ok(());
    };
    let needs = crate::image::needs::resolve(&archive, &init, |inode| {
        for extent in archive.extents(inode)? {
            image.verify_range(extent.start, extent.start + extent.len).map_err(|e| {
                let message = e.to_string();
                *image.mismatch.borrow_mut() = Some(e);
                crate::image::squashfs::SquashError::Read { offset: extent.start, len: extent.len as usize, message }
            })?;
        }
        Ok(())
    })
    .map_err(|e| format!("following {init}: {e}"))?;
    report.files = needs.files.iter().map(|(path, _)| path.clone()).collect();
    if let Some(first) = report.files.first_mut() {
        if *first != init {
            *first = format!("{init} -> {first}");
        }
    }
    for missing in needs.missing {
        report.notes.push(format!("{missing}: needed by init, not found in the image"));
    }
    Ok(())
}

#[cfg(test)]
mod chunk_tests {
    use super::*;
    use crate::image::chunks;
    use crate::image::manifest::{Chunks, FORMAT};
    use std::process::Command;

    /// A root whose init is a script run by a dynamically linked host shell, plus a big
    /// file nobody needs; the image is made by mksquashfs with `comp`.
    fn image(comp: &str, dir: &Path) -> Option<(std::path::PathBuf, Manifest)> {
        Command::new("mksquashfs").arg("-version").output().ok()?;
        let root = dir.join("root");
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(root.join("sbin")).ok()?;
        std::fs::create_dir_all(root.join("bin")).ok()?;
        std::fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).ok()?;
        std::fs::write(root.join("sbin/init"), "#!/bin/dash\necho up\n").ok()?;
        std::fs::set_permissions(root.join("sbin/init"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).ok()?;
        std::fs::copy("/usr/bin/dash", root.join("bin/dash")).ok()?;
        std::fs::create_dir_all(root.join("lib64")).ok()?;
        std::fs::copy("/lib64/ld-linux-x86-64.so.2", root.join("lib64/ld-linux-x86-64.so.2")).ok()?;
        std::fs::copy("/lib/x86_64-linux-gnu/libc.so.6", root.join("usr/lib/x86_64-linux-gnu/libc.so.6")).ok()?;
        let big: Vec<u8> = (0..3_000_000u32).flat_map(|i| format!("{i}\n").into_bytes()).collect();
        std::fs::write(root.join("big.txt"), big).ok()?;
        let path = dir.join("image.squashfs");
        let ok = Command::new("mksquashfs")
            .arg(&root)
            .arg(&path)
            .args(["-noappend", "-no-progress", "-quiet", "-all-root", "-comp", comp])
            .status()
            .ok()?
            .success();
        assert!(ok);
        let d = chunks::digest(&mut std::fs::File::open(&path).ok()?, 64 << 10).ok()?;
        let manifest = Manifest {
            format: FORMAT,
            id: "0123456789abcdef".into(),
            name: "t".into(),
            image: "image.squashfs".into(),
            created: 0,
            size: d.size,
            checksum: format!("sha256:{}", chunks::hex(&d.sha256)),
            compressor: comp.into(),
            kernels: vec![],
            chunks: Some(Chunks::from_digest(&d)),
            verity: None,
            profile: None,
            seal: None,
        };
        Some((path, manifest))
    }

    #[test]
    fn boot_level_checks_metadata_and_init_files_only() {
        let dir = std::env::temp_dir().join(format!("viver-chunkcheck-{}", std::process::id()));
        let Some((path, manifest)) = image("gzip", &dir) else { return };
        let inits = vec!["/sbin/init".to_string()];
        let report = chunks(&path, Some(&manifest), Level::Boot, &inits).unwrap();
        assert_eq!(
            report.files,
            ["/sbin/init", "/bin/dash", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"],
            "{report:?}"
        );
        assert!(!report.complete && report.chunks_verified < report.chunks_total, "{report:?}");

        // A byte flipped in big.txt's data: the boot check does not see it ...
        let image_bytes = std::fs::read(&path).unwrap();
        let archive = crate::image::squashfs::Archive::open(&image_bytes).unwrap();
        let (_, big) = archive.lookup("/big.txt").unwrap();
        let extents = archive.extents(&big).unwrap();
        let layout = manifest.chunks.as_ref().unwrap().layout(manifest.size);
        let checked: Vec<u64> = {
            let image = ChunkedImage::open(&path, &manifest).unwrap().unwrap();
            let mut r = ChunkReport::default();
            boot_chunks(&image, &inits, &mut r).unwrap();
            let v = image.verified.borrow();
            v.keys().copied().collect()
        };
        let target = extents
            .iter()
            .flat_map(|e| (e.start..e.start + e.len).step_by(1000))
            .find(|offset| !checked.contains(&(offset / layout.chunk)))
            .unwrap();
        let mut bad = image_bytes.clone();
        bad[target as usize] ^= 0x55;
        std::fs::write(&path, &bad).unwrap();
        assert!(chunks(&path, Some(&manifest), Level::Boot, &inits).is_ok());
        // ... the full check does, and names the chunk.
        let err = chunks(&path, Some(&manifest), Level::Full, &inits).unwrap_err().to_string();
        assert!(err.contains(&format!("chunk {} (offset", target / layout.chunk)) && err.contains("does not match the manifest"), "{err}");

        // Bytes flipped in libc's data: the boot check rejects the copy.
        let (_, libc) = archive.lookup("/usr/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let e = archive.extents(&libc).unwrap()[2];
        let mut bad = image_bytes.clone();
        bad[(e.start + 10) as usize] ^= 0x55;
        std::fs::write(&path, &bad).unwrap();
        let err = chunks(&path, Some(&manifest), Level::Boot, &inits).unwrap_err();
        assert!(matches!(err, VerifyError::Chunk { .. }), "{err}");

        // And in the metadata (the last bytes of the tables).
        let mut bad = image_bytes.clone();
        let at = archive.sb.bytes_used as usize - 20;
        bad[at] ^= 0x55;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(chunks(&path, Some(&manifest), Level::Boot, &inits), Err(VerifyError::Chunk { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn format_1_manifests_get_the_old_checks_and_say_so() {
        let dir = std::env::temp_dir().join(format!("viver-chunkcheck-v1-{}", std::process::id()));
        let Some((path, manifest)) = image("zstd", &dir) else { return };
        let v1 = Manifest { format: crate::image::manifest::FORMAT_V1, chunks: None, ..manifest };
        let inits = ["/sbin/init".to_string()];
        let report = chunks(&path, Some(&v1), Level::Boot, &inits).unwrap();
        assert!(!report.complete && report.bytes_verified == 0, "{report:?}");
        assert!(report.notes[0].contains("format 1"), "{report:?}");
        let report = chunks(&path, Some(&v1), Level::Full, &inits).unwrap();
        assert!(report.complete && report.notes[0].contains("SHA-256"), "{report:?}");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[5000] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(chunks(&path, Some(&v1), Level::Full, &inits), Err(VerifyError::Checksum { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn index_ranges_are_compact() {
        assert_eq!(index_ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(index_ranges(&[]), "");
        assert_eq!(index_ranges(&[3]), "3");
    }

    #[test]
    fn unsupported_compressors_fall_back_to_every_chunk() {
        let dir = std::env::temp_dir().join(format!("viver-chunkcheck-lz4-{}", std::process::id()));
        let Some((path, manifest)) = image("lz4", &dir) else { return };
        let report = chunks(&path, Some(&manifest), Level::Boot, &["/sbin/init".to_string()]).unwrap();
        assert!(report.complete, "{report:?}");
        assert!(report.notes.iter().any(|n| n.contains("lz4")), "{report:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! dm-verity over an image: the manifest's `[verity]` section, the cheap check that the
//! appended tree belongs to that root hash, and [`open`], which puts a verity device over
//! any block device holding such an image (the loop device of an image file, or a
//! network block device).
//!
//! The kit appends the tree to the SquashFS file itself: one file to copy, to checksum
//! in chunks and to attach, so a copy cannot lose its tree, and data and hash device are
//! one device (`hash_start` past the data). SquashFS ignores what follows its
//! `bytes_used`.
//!
//! ```toml
//! [verity]
//! version = 1                   # dm-verity hash format (veritysetup --format=1)
//! algorithm = "sha256"
//! data_block_size = 4096
//! hash_block_size = 4096
//! data_blocks = 30208           # the first data_blocks * 4096 bytes are the SquashFS
//! hash_offset = 123731968       # byte offset of the verity superblock (= data size)
//! root = "<64 hex>"             # the root hash
//! salt = "<64 hex>"
//! ```
//! The tree's first block follows the superblock's block; the image ends with the tree.

use super::dm;
use super::verity_tree::{self, BLOCK};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerityParams {
    pub version: u32,
    pub algorithm: String,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub data_blocks: u64,
    pub hash_offset: u64,
    pub root: String,
    pub salt: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    #[error("{path}: cannot read the dm-verity hash tree: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: the dm-verity superblock at byte {offset} {what}")]
    Superblock { path: String, offset: u64, what: String },
    #[error("{path}: the manifest's verity root hash {expected} is not the hash of the tree's top block ({found}): tree and manifest do not belong together")]
    RootMismatch { path: String, expected: String, found: String },
    #[error("dm-verity over {device}: {source}")]
    Dm { device: String, source: dm::DmError },
    #[error("dm-verity over {device}: {message}")]
    Device { device: String, message: String },
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

impl VerityParams {
    /// The parameters of `tree` built over the first `data_blocks` blocks.
    pub fn of(tree: &verity_tree::Tree, salt: &[u8]) -> VerityParams {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        VerityParams {
            version: 1,
            algorithm: "sha256".into(),
            data_block_size: BLOCK as u32,
            hash_block_size: BLOCK as u32,
            data_blocks: tree.data_blocks,
            hash_offset: tree.data_blocks * BLOCK,
            root: hex(&tree.root),
            salt: hex(salt),
        }
    }

    /// Everything the kernel will be told agrees with itself and with an image of
    /// `image_size` bytes (so a truncated tree is refused by its size).
    pub fn validate(&self, image_size: u64) -> Result<(), String> {
        if self.version != 1 || self.algorithm != "sha256" {
            return Err(format!("verity version {} with {:?}: only version 1 with sha256 is read", self.version, self.algorithm));
        }
        if u64::from(self.data_block_size) != BLOCK || u64::from(self.hash_block_size) != BLOCK {
            return Err(format!("verity block sizes {}/{}: only {BLOCK}/{BLOCK} are read", self.data_block_size, self.hash_block_size));
        }
        if self.data_blocks == 0 || self.data_blocks > u64::MAX / BLOCK / 2 {
            return Err(format!("verity.data_blocks {} is out of range", self.data_blocks));
        }
        if self.hash_offset != self.data_blocks * BLOCK {
            return Err(format!("verity.hash_offset {} is not data_blocks * {BLOCK} = {}", self.hash_offset, self.data_blocks * BLOCK));
        }
        let end = self.hash_offset + BLOCK * (1 + verity_tree::tree_blocks(self.data_blocks));
        if end != image_size {
            return Err(format!(
                "a hash tree over {} blocks ends at byte {end}, the image has {image_size}: truncated or padded",
                self.data_blocks
            ));
        }
        if self.root_bytes().is_none() {
            return Err(format!("verity.root {:?} is not 64 hex digits", self.root));
        }
        match self.salt_bytes() {
            Some(salt) if salt.len() <= verity_tree::MAX_SALT => Ok(()),
            _ => Err(format!("verity.salt must be at most {} bytes in hex", verity_tree::MAX_SALT)),
        }
    }

    pub fn root_bytes(&self) -> Option<[u8; 32]> {
        parse_hex(&self.root).and_then(|v| v.try_into().ok())
    }

    pub fn salt_bytes(&self) -> Option<Vec<u8>> {
        parse_hex(&self.salt)
    }

    /// The verity target's parameters for `device` ("major:minor") as data and hash device.
    pub fn table(&self, device: &str) -> String {
        let salt = if self.salt.is_empty() { "-" } else { self.salt.as_str() };
        format!(
            "1 {device} {device} {BLOCK} {BLOCK} {} {} sha256 {} {salt}",
            self.data_blocks,
            self.hash_offset / BLOCK + 1,
            self.root.to_ascii_lowercase()
        )
    }

    /// Reads the superblock and the top hash block from `reader` (the image) and checks
    /// them against these parameters: 8 KiB of reads that tell a foreign or damaged tree
    /// (or a manifest with the wrong root hash) before the kernel is told anything.
    pub fn check_tree(&self, reader: &mut (impl Read + Seek), shown: &str) -> Result<(), VerityError> {
        let io = |source| VerityError::Io { path: shown.to_string(), source };
        let mut block = vec![0u8; BLOCK as usize];
        reader.seek(SeekFrom::Start(self.hash_offset)).map_err(io)?;
        reader.read_exact(&mut block).map_err(io)?;
        let salt = self.salt_bytes().unwrap_or_default();
        let sb = &block[..512];
        let sb_error = |what: String| VerityError::Superblock { path: shown.to_string(), offset: self.hash_offset, what };
        if &sb[..8] != verity_tree::SB_MAGIC {
            return Err(sb_error("is missing (no \"verity\" signature): the image has no hash tree there".into()));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&sb[16..32]);
        if sb[..] != verity_tree::superblock(self.data_blocks, &salt, uuid)[..] {
            return Err(sb_error("does not describe the tree the manifest describes (block count, salt or hash)".into()));
        }
        let root = self.root_bytes().unwrap_or_default();
        let top = if verity_tree::level_blocks(self.data_blocks).is_empty() {
            // One data block: its own hash is the root.
            reader.seek(SeekFrom::Start(0)).map_err(io)?;
            reader.read_exact(&mut block).map_err(io)?;
            verity_tree::salted_hash(&salt, &block)
        } else {
            reader.read_exact(&mut block).map_err(io)?;
            verity_tree::salted_hash(&salt, &block)
        };
        if top != root {
            let found = top.iter().map(|b| format!("{b:02x}")).collect();
            return Err(VerityError::RootMismatch { path: shown.to_string(), expected: self.root.clone(), found });
        }
        Ok(())
    }
}

/// Puts a read-only dm-verity device named `name` over `device` (data and tree on it, as
/// the kit lays them out) and returns its node (`/dev/dm-N`). Every read through it is
/// checked against the root hash; a block that does not match is an I/O error. The caller
/// loads dm_verity first.
pub fn open(device: &Path, params: &VerityParams, name: &str) -> Result<PathBuf, VerityError> {
    let shown = device.display().to_string();
    let fail = |message: String| VerityError::Device { device: shown.clone(), message };
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(device).map_err(|e| fail(e.to_string()))?;
    if !meta.file_type().is_block_device() {
        return Err(fail("not a block device".into()));
    }
    let rdev = meta.rdev();
    let spec = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    let table = params.table(&spec);
    let uuid = format!("VIVER-VERITY-{}", params.root.get(..32).unwrap_or(&params.root));
    let target = dm::Target { start: 0, length: params.data_blocks * (BLOCK / 512), target: "verity", params: &table };
    let dev = dm::create(name, &uuid, &[target], true).map_err(|source| VerityError::Dm { device: shown.clone(), source })?;
    let node = dev.node().map_err(|e| fail(format!("no node for {}: {e}", dev.name)))?;
    dev.keep();
    Ok(node)
}

/// Removes the verity device `name` again (its mount failed).
pub fn close(name: &str) {
    let _ = dm::remove(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> (Vec<u8>, VerityParams) {
        let mut data: Vec<u8> = (0..300 * BLOCK).map(|i| (i % 253) as u8).collect();
        let salt = [9u8; 32];
        let tree = verity_tree::build(&mut data.as_slice(), 300, &salt, [1; 16]).unwrap();
        data.extend_from_slice(&tree.bytes);
        (data, VerityParams::of(&tree, &salt))
    }

    #[test]
    fn a_good_tree_passes_and_the_table_names_the_hash_start() {
        let (data, params) = image();
        params.validate(data.len() as u64).unwrap();
        params.check_tree(&mut std::io::Cursor::new(&data), "x").unwrap();
        let table = params.table("7:0");
        assert!(table.starts_with("1 7:0 7:0 4096 4096 300 301 sha256 "), "{table}");
    }

    #[test]
    fn bad_trees_and_manifests_get_clear_messages() {
        let (data, params) = image();
        // A truncated tree: the size no longer adds up.
        let e = params.validate(data.len() as u64 - BLOCK).unwrap_err();
        assert!(e.contains("truncated or padded"), "{e}");
        // A root hash that does not match the tree.
        let wrong = VerityParams { root: "00".repeat(32), ..params.clone() };
        let e = wrong.check_tree(&mut std::io::Cursor::new(&data), "img").unwrap_err().to_string();
        assert!(e.contains("is not the hash of the tree's top block"), "{e}");
        // A changed top block.
        let mut changed = data.clone();
        changed[(params.hash_offset + BLOCK + 5) as usize] ^= 1;
        assert!(matches!(params.check_tree(&mut std::io::Cursor::new(&changed), "img"), Err(VerityError::RootMismatch { .. })));
        // No superblock where the manifest says.
        let mut gone = data.clone();
        gone[params.hash_offset as usize] = b'X';
        let e = params.check_tree(&mut std::io::Cursor::new(&gone), "img").unwrap_err().to_string();
        assert!(e.contains("no \"verity\" signature"), "{e}");
        // A short read is an I/O error, not a panic.
        let short = &data[..(params.hash_offset + 100) as usize];
        assert!(matches!(params.check_tree(&mut std::io::Cursor::new(short), "img"), Err(VerityError::Io { .. })));
        let e = VerityParams { version: 0, ..params.clone() }.validate(data.len() as u64).unwrap_err();
        assert!(e.contains("only version 1"), "{e}");
        let e = VerityParams { salt: "abc".into(), ..params.clone() }.validate(data.len() as u64).unwrap_err();
        assert!(e.contains("salt"), "{e}");
        let e = VerityParams { hash_offset: 1, ..params }.validate(data.len() as u64).unwrap_err();
        assert!(e.contains("hash_offset"), "{e}");
    }
}

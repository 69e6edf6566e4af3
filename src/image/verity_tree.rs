//! The dm-verity hash tree the kit appends to an image, in the format `veritysetup`
//! writes (hash format version 1, SHA-256, 4096-byte data and hash blocks, with its
//! 512-byte superblock in a block of its own before the tree).
//!
//! Each data block is hashed as SHA-256(salt || block); 128 such hashes fill a hash
//! block (zero-padded), the hash blocks are hashed the same way into the next level, up
//! to a level of one block, whose hash is the root hash. On disk the top level comes
//! first, as the kernel expects.

use sha2::{Digest, Sha256};
use std::io::Read;

/// Data and hash block size: the page size, so verity checks whole pages.
pub const BLOCK: u64 = 4096;
const DIGEST: usize = 32;
/// Hashes per hash block (a power of two, as the kernel requires).
const FANOUT: u64 = BLOCK / DIGEST as u64;
/// cryptsetup's superblock signature.
pub const SB_MAGIC: &[u8; 8] = b"verity\0\0";
/// The largest salt the superblock can hold.
pub const MAX_SALT: usize = 256;

/// The levels of a tree over `data_blocks` blocks, lowest first: hash blocks per level.
/// The kernel's rule: as many levels as `(data_blocks - 1) >> (7 * levels)` needs.
pub fn level_blocks(data_blocks: u64) -> Vec<u64> {
    let bits = FANOUT.trailing_zeros();
    let mut levels = 0u32;
    while data_blocks > 0 && bits * levels < 64 && (data_blocks - 1).checked_shr(bits * levels).unwrap_or(0) > 0 {
        levels += 1;
    }
    (1..=levels).map(|i| data_blocks.div_ceil(1u64.checked_shl(bits * i).unwrap_or(u64::MAX))).collect()
}

/// Hash blocks of a tree over `data_blocks` blocks (the superblock not counted).
pub fn tree_blocks(data_blocks: u64) -> u64 {
    level_blocks(data_blocks).iter().sum()
}

/// Where each level starts, counted in hash blocks from the tree's start (the block after
/// the superblock), lowest level first: the top level is first on disk.
pub fn level_offsets(data_blocks: u64) -> Vec<u64> {
    let blocks = level_blocks(data_blocks);
    let mut offsets = vec![0; blocks.len()];
    let mut position = 0;
    for i in (0..blocks.len()).rev() {
        offsets[i] = position;
        position += blocks[i];
    }
    offsets
}

pub fn salted_hash(salt: &[u8], block: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// A built tree: the root hash and the bytes to append (superblock block, then the tree).
pub struct Tree {
    pub root: [u8; 32],
    pub data_blocks: u64,
    pub bytes: Vec<u8>,
}

/// Builds the tree over the first `data_blocks` blocks `data` yields (a short last block
/// is zero-padded, as the kit pads the image).
pub fn build(data: &mut impl Read, data_blocks: u64, salt: &[u8], uuid: [u8; 16]) -> std::io::Result<Tree> {
    if salt.len() > MAX_SALT {
        return Err(std::io::Error::other(format!("salt of {} bytes; at most {MAX_SALT}", salt.len())));
    }
    let mut hashes: Vec<[u8; 32]> = Vec::with_capacity(data_blocks as usize);
    let mut block = vec![0u8; BLOCK as usize];
    for _ in 0..data_blocks {
        block.fill(0);
        let mut filled = 0;
        while filled < block.len() {
            let n = data.read(&mut block[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        hashes.push(salted_hash(salt, &block));
    }
    let mut levels: Vec<Vec<u8>> = Vec::new();
    for _ in level_blocks(data_blocks) {
        let mut level = Vec::with_capacity(hashes.len().div_ceil(FANOUT as usize) * BLOCK as usize);
        for group in hashes.chunks(FANOUT as usize) {
            let start = level.len();
            for h in group {
                level.extend_from_slice(h);
            }
            level.resize(start + BLOCK as usize, 0);
        }
        hashes = level.chunks(BLOCK as usize).map(|b| salted_hash(salt, b)).collect();
        levels.push(level);
    }
    let root = hashes.first().copied().unwrap_or_else(|| salted_hash(salt, &[]));
    let mut bytes = superblock(data_blocks, salt, uuid).to_vec();
    bytes.resize(BLOCK as usize, 0);
    for level in levels.iter().rev() {
        bytes.extend_from_slice(level);
    }
    Ok(Tree { root, data_blocks, bytes })
}

/// cryptsetup's `struct verity_sb` (512 bytes, little-endian), so `veritysetup dump` and
/// `veritysetup verify` read the appended tree as their own.
pub fn superblock(data_blocks: u64, salt: &[u8], uuid: [u8; 16]) -> [u8; 512] {
    let mut sb = [0u8; 512];
    sb[0..8].copy_from_slice(SB_MAGIC);
    sb[8..12].copy_from_slice(&1u32.to_le_bytes()); // superblock version
    sb[12..16].copy_from_slice(&1u32.to_le_bytes()); // hash type: normal (not Chrome OS)
    sb[16..32].copy_from_slice(&uuid);
    sb[32..38].copy_from_slice(b"sha256");
    sb[64..68].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    sb[68..72].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    sb[72..80].copy_from_slice(&data_blocks.to_le_bytes());
    let salt = &salt[..salt.len().min(MAX_SALT)];
    sb[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
    sb[88..88 + salt.len()].copy_from_slice(salt);
    sb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_kernels_rule() {
        assert_eq!(level_blocks(1), Vec::<u64>::new());
        assert_eq!(level_blocks(2), vec![1]);
        assert_eq!(level_blocks(128), vec![1]);
        assert_eq!(level_blocks(129), vec![2, 1]);
        assert_eq!(level_blocks(128 * 128 + 1), vec![129, 2, 1]);
        assert_eq!(level_offsets(128 * 128 + 1), vec![3, 1, 0]);
        assert_eq!(tree_blocks(0), 0);
    }

    #[test]
    fn a_two_level_tree_by_hand() {
        let data: Vec<u8> = (0..130 * BLOCK).map(|i| (i / BLOCK) as u8).collect();
        let salt = [1u8, 2, 3];
        let tree = build(&mut data.as_slice(), 130, &salt, [0; 16]).unwrap();
        assert_eq!(tree.bytes.len() as u64, BLOCK * (1 + 3));
        let leaf = |i: u64| salted_hash(&salt, &data[(i * BLOCK) as usize..((i + 1) * BLOCK) as usize]);
        // The lowest level is the last on disk; its second block starts with leaf 128.
        let lowest = &tree.bytes[2 * BLOCK as usize..];
        assert_eq!(&lowest[..32], &leaf(0));
        assert_eq!(&lowest[BLOCK as usize..BLOCK as usize + 32], &leaf(128));
        let top = &tree.bytes[BLOCK as usize..2 * BLOCK as usize];
        assert_eq!(&top[..32], &salted_hash(&salt, &lowest[..BLOCK as usize]));
        assert_eq!(tree.root, salted_hash(&salt, top));
        assert_eq!(&tree.bytes[..8], SB_MAGIC);
    }
}

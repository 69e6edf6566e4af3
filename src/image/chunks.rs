//! The chunk hashes of an image: one description for the boot's partial check, and later
//! for sharing the image with peers and for dm-verity.
//!
//! They are BitTorrent v2 (BEP 52) hashes: the image is cut into 16 KiB blocks, each block
//! is hashed with SHA-256 (the last one may be short), and the block hashes are the
//! leaves of a binary Merkle tree whose leaf count is padded to a power of two with
//! all-zero hashes. A chunk (a BEP 52 piece: a power of two of at least 16 KiB) is hashed
//! as the root of its subtree, and the root of the whole tree is BEP 52's "pieces root".
//! A standard BitTorrent v2 client given `pieces root` and the piece layer (the chunk
//! hashes, in order) verifies the very same bytes.
//!
//! A file of one chunk or less has no piece layer in BEP 52; VIVER still lists one chunk
//! hash, equal to the root.

use sha2::{Digest, Sha256};
use std::io::Read;

/// BEP 52's block: the leaves of the tree hash 16 KiB each.
pub const BLOCK: u64 = 16 << 10;
/// The chunk size the kit writes (see the README's measurements).
pub const DEFAULT_CHUNK: u64 = 256 << 10;
/// The largest chunk size a manifest may declare.
pub const MAX_CHUNK: u64 = 64 << 20;

pub type Hash = [u8; 32];

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of a subtree of zero leaves `height` levels high (height 0: the zero leaf).
fn zero_root(height: u32) -> Hash {
    let mut hash = [0u8; 32];
    for _ in 0..height {
        hash = node(&hash, &hash);
    }
    hash
}

/// The root over `leaves` padded with zero leaves to `width` (a power of two >= len).
pub fn merkle_root(leaves: &[Hash], width: usize) -> Hash {
    let width = width.max(1).next_power_of_two().max(leaves.len().next_power_of_two());
    if leaves.is_empty() {
        return zero_root(width.trailing_zeros());
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    let mut height = 0u32;
    let mut size = width;
    while size > 1 {
        if level.len() % 2 == 1 {
            level.push(zero_root(height));
        }
        level = level.chunks_exact(2).map(|pair| node(&pair[0], &pair[1])).collect();
        height += 1;
        size /= 2;
    }
    level[0]
}

/// The leaf hashes of `data` (16 KiB blocks, the last one possibly short).
pub fn leaves(data: &[u8]) -> Vec<Hash> {
    data.chunks(BLOCK as usize).map(|block| Sha256::digest(block).into()).collect()
}

/// How the chunks of an image of `size` bytes are laid out with chunk size `chunk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub size: u64,
    pub chunk: u64,
}

impl Layout {
    pub fn count(&self) -> u64 {
        self.size.div_ceil(self.chunk).max(1)
    }

    /// Byte range `[start, end)` of chunk `index`.
    pub fn range(&self, index: u64) -> (u64, u64) {
        let start = index.saturating_mul(self.chunk).min(self.size);
        (start, start.saturating_add(self.chunk).min(self.size))
    }

    /// The chunks that hold any byte of `[start, end)`.
    pub fn covering(&self, start: u64, end: u64) -> std::ops::Range<u64> {
        let end = end.min(self.size);
        if start >= end {
            return 0..0;
        }
        start / self.chunk..end.div_ceil(self.chunk)
    }

    /// Leaves under one chunk's subtree: the chunk's own width, or for a one-chunk image
    /// the whole (smaller) tree, as BEP 52 builds it.
    fn width(&self) -> usize {
        if self.count() > 1 {
            (self.chunk / BLOCK) as usize
        } else {
            self.size.div_ceil(BLOCK).max(1).next_power_of_two() as usize
        }
    }

    /// The hash of chunk `data` as the manifest lists it.
    pub fn chunk_hash(&self, data: &[u8]) -> Hash {
        merkle_root(&leaves(data), self.width())
    }

    /// BEP 52's pieces root from the chunk hashes.
    pub fn root(&self, hashes: &[Hash]) -> Hash {
        if self.count() <= 1 {
            return hashes.first().copied().unwrap_or([0; 32]);
        }
        let pad_height = self.width().trailing_zeros();
        let width = hashes.len().next_power_of_two();
        let mut level: Vec<Hash> = hashes.to_vec();
        level.resize(width, zero_root(pad_height));
        while level.len() > 1 {
            level = level.chunks_exact(2).map(|pair| node(&pair[0], &pair[1])).collect();
        }
        level[0]
    }
}

/// Everything the kit records about an image's bytes, from one pass over them.
#[derive(Debug, Clone)]
pub struct Digest2 {
    pub sha256: Hash,
    pub size: u64,
    pub chunk: u64,
    pub hashes: Vec<Hash>,
    pub root: Hash,
}

/// Reads `reader` to its end: the SHA-256 of it all and its chunk hashes of size `chunk`.
pub fn digest(reader: &mut impl Read, chunk: u64) -> std::io::Result<Digest2> {
    let mut whole = Sha256::new();
    let mut chunk_leaves: Vec<Vec<Hash>> = Vec::new();
    let mut buf = vec![0u8; chunk as usize];
    let mut size = 0u64;
    loop {
        let filled = read_full(reader, &mut buf)?;
        if filled == 0 {
            break;
        }
        let data = &buf[..filled];
        whole.update(data);
        chunk_leaves.push(leaves(data));
        size += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    let layout = Layout { size, chunk };
    let width = layout.width();
    let hashes: Vec<Hash> = chunk_leaves.iter().map(|l| merkle_root(l, width)).collect();
    let root = layout.root(&hashes);
    Ok(Digest2 { sha256: whole.finalize().into(), size, chunk, hashes, root })
}

/// Fills `buf` as far as the reader goes; returns how much was read.
pub fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_hex(text: &str) -> Option<Hash> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 1000) as u8).collect()
    }

    /// BEP 52 computed the plain way: all leaves of the file, padded to a power of two.
    fn reference_root(bytes: &[u8]) -> Hash {
        let l = leaves(bytes);
        merkle_root(&l, l.len().next_power_of_two())
    }

    #[test]
    fn pieces_root_equals_the_root_over_all_blocks() {
        for len in [1, 16384, 16385, 262144, 262145, 700_000, 1 << 20, 3 << 20 | 5] {
            let bytes = data(len);
            let d = digest(&mut bytes.as_slice(), 256 << 10).unwrap();
            assert_eq!(d.root, reference_root(&bytes), "len {len}");
            assert_eq!(d.hashes.len() as u64, Layout { size: len as u64, chunk: 256 << 10 }.count());
            let sha: Hash = Sha256::digest(&bytes).into();
            assert_eq!(d.sha256, sha);
            // Each chunk rechecks alone.
            let layout = Layout { size: len as u64, chunk: 256 << 10 };
            for (i, h) in d.hashes.iter().enumerate() {
                let (s, e) = layout.range(i as u64);
                assert_eq!(&layout.chunk_hash(&bytes[s as usize..e as usize]), h);
            }
        }
    }

    #[test]
    fn known_values() {
        // One block of zeros: the root is the SHA-256 of the block.
        let zeros = vec![0u8; 16384];
        let d = digest(&mut zeros.as_slice(), 16384).unwrap();
        assert_eq!(hex(&d.root), hex(&Sha256::digest(&zeros).into()));
        // Two blocks: SHA-256(h0 || h1).
        let two = data(32768);
        let l = leaves(&two);
        let d = digest(&mut two.as_slice(), 16384).unwrap();
        assert_eq!(d.root, node(&l[0], &l[1]));
        assert_eq!(d.hashes, l);
        // Three blocks, piece size one block: the fourth leaf is zero.
        let three = data(3 * 16384);
        let l = leaves(&three);
        let d = digest(&mut three.as_slice(), 16384).unwrap();
        assert_eq!(d.root, node(&node(&l[0], &l[1]), &node(&l[2], &[0; 32])));
    }

    #[test]
    fn hex_round_trip_and_covering() {
        let h = [0xabu8; 32];
        assert_eq!(parse_hex(&hex(&h)), Some(h));
        assert_eq!(parse_hex("zz"), None);
        let layout = Layout { size: 1000, chunk: 256 };
        assert_eq!(layout.count(), 4);
        assert_eq!(layout.covering(0, 1), 0..1);
        assert_eq!(layout.covering(255, 257), 0..2);
        assert_eq!(layout.covering(900, 5000), 3..4);
        assert_eq!(layout.range(3), (768, 1000));
    }
}

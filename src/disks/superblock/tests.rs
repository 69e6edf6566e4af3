//! Robustness of the probes: thousands of pseudo-random and mutated superblocks must
//! never panic. Deterministic (fixed xorshift seed) so a failure reproduces.

use super::*;
use flate2::read::GzDecoder;
use std::io::Cursor;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/disks/fs/", $name, ".img.gz"))
    };
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("ext2", gunzip(fixture!("ext2"))),
        ("ext3", gunzip(fixture!("ext3"))),
        ("ext4", gunzip(fixture!("ext4"))),
        ("fat12", gunzip(fixture!("fat12"))),
        ("fat16", gunzip(fixture!("fat16"))),
        ("fat32", gunzip(fixture!("fat32"))),
        ("exfat", gunzip(fixture!("exfat"))),
        ("btrfs", gunzip(fixture!("btrfs"))),
        ("xfs", gunzip(fixture!("xfs"))),
        ("squashfs", gunzip(fixture!("squashfs"))),
        ("iso9660", gunzip(fixture!("iso9660"))),
    ]
}

#[test]
fn each_fixture_is_recognised_before_mutation() {
    for (name, data) in fixtures() {
        let fs = probe(&mut Cursor::new(&data)).unwrap();
        assert!(fs.is_some(), "{name} not recognised");
    }
}

/// Mutations concentrate on the bytes the probes read: the first 4 KiB, the ISO
/// descriptors at 32 KiB, the btrfs superblock at 64 KiB and the exFAT root
/// directory, plus truncations at every interesting length.
#[test]
fn random_and_mutated_buffers_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let bases = fixtures();
    let hot_spots = [0usize, 1024, 32 * 1024, 64 * 1024, 2 * 1024 * 1024];
    let mut recognised = 0usize;
    for round in 0..3000 {
        let (_, base) = &bases[round % bases.len()];
        let mut buf = base.clone();
        for _ in 0..1 + rng.below(16) {
            let spot = hot_spots[rng.below(hot_spots.len())];
            let pos = spot + rng.below(4096);
            if let Some(b) = buf.get_mut(pos) {
                *b = rng.next() as u8;
            }
        }
        if rng.below(4) == 0 {
            let cut = rng.below(buf.len() + 1);
            buf.truncate(cut);
        }
        if let Ok(Some(_)) = probe(&mut Cursor::new(&buf)) {
            recognised += 1;
        }
    }
    // Pure noise of every small length, and a noise tail after valid magics.
    for len in 0..2000 {
        let buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = probe(&mut Cursor::new(&buf));
    }
    for magic_at in
        [(0usize, &b"hsqs"[..]), (0, b"XFSB"), (1080, b"\x53\xef"), (65536 + 64, b"_BHRfS_M"), (32769, b"CD001"), (3, b"EXFAT   ")]
    {
        for _ in 0..200 {
            let len = magic_at.0 + magic_at.1.len() + rng.below(8192);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            buf[magic_at.0..magic_at.0 + magic_at.1.len()].copy_from_slice(magic_at.1);
            let _ = probe(&mut Cursor::new(&buf));
        }
    }
    // Light mutations must not have destroyed everything: the probes still work.
    assert!(recognised > 1000, "only {recognised} of 3000 mutated fixtures recognised");
}

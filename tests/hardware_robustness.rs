//! Deterministic stand-in for fuzzing (runs in every `cargo test`): thousands of
//! pseudo-random and mutated inputs into each parser, none may panic.

mod hardware_common;

// The fuzz targets' entry points, kept out of the viver crate (and of /init).
#[path = "../fuzz/helpers/hardware.rs"]
mod fuzzing;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Flips, inserts, deletes and truncates bytes of a seed.
fn mutate(seed: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(8) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 => {
                let i = rng.below(v.len() + 1);
                let specials = b"*?[]-:\0\n \\!^";
                v.insert(i, specials[rng.below(specials.len())]);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            3 => {
                let n = rng.below(v.len() + 1);
                v.truncate(n);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                let junk: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                v.splice(i..i, junk);
            }
        }
    }
    v
}

fn random(rng: &mut XorShift) -> Vec<u8> {
    (0..rng.below(300)).map(|_| rng.next() as u8).collect()
}

fn run(target: fn(&[u8]), seeds: &[Vec<u8>], rounds: usize) {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    for i in 0..rounds {
        let input = if i % 3 == 0 || seeds.is_empty() { random(&mut rng) } else { mutate(&seeds[rng.below(seeds.len())], &mut rng) };
        target(&input);
    }
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hardware").join(rel)).unwrap()
}

#[test]
fn table_parsers_survive_garbage() {
    let seeds = vec![fixture("mini/modules.alias"), fixture("mini/modules.dep"), fixture("bad/modules.alias"), fixture("bad/modules.dep")];
    run(fuzzing::alias_file, &seeds, 5000);
    let seeds = vec![
        fixture("bad/modules.pcimap"),
        fixture("bad/modules.usbmap"),
        b"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".to_vec(),
        b"usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00".to_vec(),
    ];
    run(fuzzing::legacy_maps, &seeds, 5000);
}

#[test]
fn matcher_survives_garbage() {
    let seeds = vec![
        b"pci:v*d*sv*sd*bc01sc06i01*\0pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".to_vec(),
        b"usb:v0525pA4A5d01[0-2]*dc*\0usb:v0525pA4A5d0110dc00".to_vec(),
        b"a[[:digit:]!x-z\\]*\0a5".to_vec(),
    ];
    run(fuzzing::matcher, &seeds, 10000);
}

#[test]
fn uevent_parser_survives_garbage() {
    let seeds =
        vec![b"add@/devices/pci0000:00/0000:00:04.0\0ACTION=add\0MODALIAS=pci:v1\0SEQNUM=1\0".to_vec(), b"libudev\0\xfe\xed".to_vec()];
    run(fuzzing::uevent, &seeds, 5000);
}

#[test]
fn modinfo_parser_survives_mutated_modules() {
    // Real modules as seeds: mutations land in headers, section tables and strings.
    let dir = hardware_common::release_dir();
    let seeds: Vec<Vec<u8>> = ["kernel/drivers/block/loop.ko", "kernel/fs/squashfs/squashfs.ko", "kernel/drivers/ata/ahci.ko"]
        .iter()
        .map(|p| std::fs::read(dir.join(p)).unwrap())
        .collect();
    let mut rng = XorShift(0xDEAD_BEEF_1234_5678);
    for i in 0..1200 {
        let seed = &seeds[i % seeds.len()];
        let mut v = seed.clone();
        match i % 4 {
            // Truncation anywhere, including inside the section headers at the end.
            0 => v.truncate(rng.below(seed.len())),
            // Corrupt the ELF header or the section header table.
            1 => {
                for _ in 0..4 {
                    let i = rng.below(64);
                    v[i] = rng.next() as u8;
                }
            }
            2 => {
                let shoff = u64::from_le_bytes(v[40..48].try_into().unwrap()) as usize;
                for _ in 0..8 {
                    let i = shoff + rng.below(v.len().saturating_sub(shoff));
                    if i < v.len() {
                        v[i] = rng.next() as u8;
                    }
                }
            }
            _ => v = mutate(&v[..v.len().min(4096)], &mut rng),
        }
        fuzzing::modinfo(&v);
    }
    run(fuzzing::modinfo, &[], 2000);
}

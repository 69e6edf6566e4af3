//! Deterministic stand-in for fuzzing (cargo-fuzz is not installed here; the targets
//! are fuzz/fuzz_targets/serve_*.rs): thousands of random and mutated packets into the
//! DHCP, TFTP and HTTP parsers and state machines; none may panic.

use viver::net::dhcp::wire::{opt, MessageType, Packet};
#[path = "../fuzz/helpers/serve.rs"]
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
                let specials = [0u8, 255, 1, b'\r', b'\n', b':', b'-', b',', 53, 43];
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

fn run(target: fn(&[u8]), seeds: &[Vec<u8>], rounds: usize) {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    for i in 0..rounds {
        let input = if i % 4 == 0 {
            (0..rng.below(600)).map(|_| rng.next() as u8).collect()
        } else {
            mutate(&seeds[rng.below(seeds.len())], &mut rng)
        };
        target(&input);
    }
}

#[test]
fn dhcp_survives_garbage() {
    let mut seeds = Vec::new();
    for (kind, arch) in [(MessageType::Discover, 0u16), (MessageType::Request, 7), (MessageType::Inform, 16), (MessageType::Decline, 9)] {
        let mut p = Packet::request(kind, 7, [2, 0, 0, 0, 0, 1]);
        p.set(opt::VENDOR_CLASS, b"PXEClient:Arch:00000:UNDI:002001".to_vec());
        p.set(opt::CLIENT_ARCH, arch.to_be_bytes().to_vec());
        p.set(opt::REQUESTED_IP, vec![10, 0, 0, 5]);
        p.set(opt::USER_CLASS, b"iPXE".to_vec());
        seeds.push(p.encode());
    }
    run(fuzzing::dhcp, &seeds, 20000);
}

#[test]
fn tftp_survives_garbage() {
    let seeds = vec![
        b"\x00\x01ipxe.efi\x00octet\x00blksize\x001456\x00windowsize\x0016\x00tsize\x000\x00".to_vec(),
        b"\x00\x04\x00\x00\x00\x04\x00\x01\x00\x04\x00\x02\x00\x05\x00\x01x\x00".to_vec(),
        b"\x00\x02a\x00octet\x00".to_vec(),
    ];
    run(fuzzing::tftp, &seeds, 20000);
}

#[test]
fn http_survives_garbage() {
    let seeds = vec![
        b"GET /image/a.squashfs HTTP/1.1\r\nHost: x\r\nRange: bytes=0-99\r\nConnection: keep-alive\r\n\r\n".to_vec(),
        b"HEAD / HTTP/1.0\r\nRange: bytes=-5\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"bytes=18446744073709551615-".to_vec(),
    ];
    run(fuzzing::http, &seeds, 20000);
}

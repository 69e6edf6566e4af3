//! Deterministic stand-in for fuzzing the NBD request side: thousands of mutated request
//! streams through the real server loop on a socketpair. Every request gets a reply or
//! ends the session (bad magic, EOF); nothing panics and nothing reads past the image.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;
use viver::nbd::server::{self, ServeStats};
use viver::nbd::source::MemSource;
use viver::nbd::wire::{Command, Request};

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_request_streams_never_panic_the_server() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let commands = [Command::Read, Command::Write, Command::Flush, Command::Trim, Command::Other(77)];
    let offsets = [0u64, 4095, 65_536 - 1, 65_536, u64::MAX, u64::MAX - 10, 1 << 40];
    let lengths = [0u32, 1, 512, 4096, 65_536, 32 << 20, (32 << 20) + 1, u32::MAX];
    let mut answered = 0u64;
    for round in 0..400 {
        let (mut kernel, ours) = UnixStream::pair().unwrap();
        kernel.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let stats = Arc::new(ServeStats::default());
        let thread = {
            let stats = stats.clone();
            std::thread::spawn(move || server::serve(ours, Arc::new(MemSource::new(vec![1u8; 65_536])), 2, stats))
        };
        let mut stream = Vec::new();
        for _ in 0..10 {
            let command = commands[(rng.next() % 5) as usize];
            let length = lengths[(rng.next() % 8) as usize];
            // Writes carry a payload in the stream; keep those small.
            let length = if command == Command::Write { length % 5000 } else { length };
            let req = Request {
                command,
                flags: rng.next() as u16,
                handle: rng.next().to_be_bytes(),
                offset: offsets[(rng.next() % 7) as usize],
                length,
            };
            let mut bytes = req.encode().to_vec();
            if round % 4 == 3 && rng.next() % 10 == 0 {
                let i = (rng.next() % 28) as usize;
                bytes[i] ^= rng.next() as u8;
            }
            stream.extend_from_slice(&bytes);
            if command == Command::Write {
                stream.extend(std::iter::repeat_n(0xaa, length as usize));
            }
        }
        if round % 5 == 4 {
            let cut = (rng.next() as usize) % stream.len();
            stream.truncate(cut);
        }
        let writer = {
            let mut k = kernel.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = k.write_all(&stream);
                let _ = k.shutdown(std::net::Shutdown::Write);
            })
        };
        let mut replies = Vec::new();
        let _ = kernel.read_to_end(&mut replies);
        writer.join().unwrap();
        let ended = thread.join().expect("the server panicked");
        assert!(ended.is_ok() || matches!(ended, Err(server::ServerError::Protocol(_)) | Err(server::ServerError::Read(_))));
        answered += stats.requests.load(std::sync::atomic::Ordering::Relaxed);
    }
    assert!(answered > 2000, "{answered}");
}

#![no_main]
//! cargo fuzz run runes_protocol: arbitrary bytes as what an external RUNES plugin writes
//! to its node (newline-delimited JSON, split into bounded lines), each line alone as a
//! message, every message written back parses again, and the bytes as a roles file:
//! an error, never a panic.
use viver::runes::{protocol, roles};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for message in protocol::parse_stream(data).into_iter().flatten() {
        let line = protocol::to_line(&message);
        // Written back (numbers may grow: 1E2 -> 100.0), a message within the limit reads
        // again (floats need not come back bit for bit: serde_json's parser rounds).
        if line.len() <= protocol::MAX_LINE {
            assert!(protocol::parse_line(line.trim_end().as_bytes()).is_ok(), "{line}");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = roles::Roles::parse(text, "fuzz.toml");
    }
});

//! cargo-fuzz target for the superblock probes: any byte string, read as a device,
//! must give Ok(None), Ok(Some(..)) or an error, never a panic or a hang.
//! Run: `cargo fuzz run superblock` (seed corpus: tests/fixtures/disks/fs/*.img.gz, gunzipped).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use viver::disks::superblock::probe;

fuzz_target!(|data: &[u8]| {
    let _ = probe(&mut Cursor::new(data));
});

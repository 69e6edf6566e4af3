#![no_main]
//! cargo fuzz run manifest: arbitrary text as an image manifest, and arbitrary bytes as a
//! SquashFS superblock; both must be accepted or refused with an error, never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = viver::image::manifest::Manifest::parse(&String::from_utf8_lossy(data), "fuzz");
    let _ = viver::image::verify::read_superblock(&mut &data[..], data.len() as u64, "fuzz");
});

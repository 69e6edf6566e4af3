#![no_main]
//! cargo fuzz run manifest: arbitrary text as an image manifest (with its `[profile]`) and
//! as a recorded boot profile, and arbitrary bytes as a SquashFS superblock; each must be
//! accepted or refused with an error, never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = viver::image::manifest::Manifest::parse(&text, "fuzz");
    if let Ok(recorded) = viver::image::profile::Recorded::parse(&text, "fuzz") {
        let _ = recorded.for_image("0123456789abcdef", recorded.chunk_size, 1 << 16);
    }
    let _ = viver::image::verify::read_superblock(&mut &data[..], data.len() as u64, "fuzz");
});

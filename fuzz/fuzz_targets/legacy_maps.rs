#![no_main]
//! cargo fuzz run legacy_maps: arbitrary bytes into viver::hardware::fuzzing::legacy_maps (must not panic).
libfuzzer_sys::fuzz_target!(|data: &[u8]| viver::hardware::fuzzing::legacy_maps(data));

#![no_main]
//! cargo fuzz run legacy_maps: arbitrary bytes into fuzzing::legacy_maps (must not panic).
#[path = "../helpers/hardware.rs"]
mod fuzzing;
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::legacy_maps(data));

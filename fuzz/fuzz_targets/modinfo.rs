#![no_main]
//! cargo fuzz run modinfo: arbitrary bytes into fuzzing::modinfo (must not panic).
#[path = "../helpers/hardware.rs"]
mod fuzzing;
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::modinfo(data));

#![no_main]
//! cargo fuzz run alias_file: arbitrary bytes into fuzzing::alias_file (must not panic).
#[path = "../helpers/hardware.rs"]
mod fuzzing;
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::alias_file(data));

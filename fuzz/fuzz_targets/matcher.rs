#![no_main]
//! cargo fuzz run matcher: arbitrary bytes into fuzzing::matcher (must not panic).
#[path = "../helpers/hardware.rs"]
mod fuzzing;
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::matcher(data));

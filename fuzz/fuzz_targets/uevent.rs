#![no_main]
//! cargo fuzz run uevent: arbitrary bytes into fuzzing::uevent (must not panic).
#[path = "../helpers/hardware.rs"]
mod fuzzing;
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::uevent(data));

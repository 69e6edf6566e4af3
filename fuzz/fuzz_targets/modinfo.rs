#![no_main]
//! cargo fuzz run modinfo: arbitrary bytes into viver::hardware::fuzzing::modinfo (must not panic).
libfuzzer_sys::fuzz_target!(|data: &[u8]| viver::hardware::fuzzing::modinfo(data));

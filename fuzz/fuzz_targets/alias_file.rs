#![no_main]
//! cargo fuzz run alias_file: arbitrary bytes into viver::hardware::fuzzing::alias_file (must not panic).
libfuzzer_sys::fuzz_target!(|data: &[u8]| viver::hardware::fuzzing::alias_file(data));

#![no_main]
//! cargo fuzz run matcher: arbitrary bytes into viver::hardware::fuzzing::matcher (must not panic).
libfuzzer_sys::fuzz_target!(|data: &[u8]| viver::hardware::fuzzing::matcher(data));

#![no_main]
//! cargo fuzz run uevent: arbitrary bytes into viver::hardware::fuzzing::uevent (must not panic).
libfuzzer_sys::fuzz_target!(|data: &[u8]| viver::hardware::fuzzing::uevent(data));

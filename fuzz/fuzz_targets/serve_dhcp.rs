#![no_main]
//! cargo fuzz run serve_dhcp: arbitrary bytes through viver serve's DHCP parser and its
//! state machine (see src/serve/fuzzing.rs); refusals are fine, panics are not.
libfuzzer_sys::fuzz_target!(|data: &[u8]| viver::serve::fuzzing::dhcp(data));

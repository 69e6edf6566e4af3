#![no_main]
//! cargo fuzz run serve_dhcp: arbitrary bytes through viver serve's DHCP parser and its
//! state machine (see fuzz/helpers/serve.rs); refusals are fine, panics are not.
#[path = "../helpers/serve.rs"]
mod fuzzing;
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::dhcp(data));

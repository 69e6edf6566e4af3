#![no_main]
//! cargo fuzz run daemon_control: arbitrary bytes as a control message to the daemon,
//! and as the settings a network boot reads (BOOTIF=, viver.net=): an error, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = viver::daemon::control::parse_command(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = viver::boot::settings::parse_bootif(text);
        let _ = viver::boot::network::manifest_url(text);
    }
});

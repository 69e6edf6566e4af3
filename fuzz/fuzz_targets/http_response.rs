#![no_main]
//! cargo fuzz run http_response: arbitrary bytes as an HTTP server's answer to a Range
//! request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = viver::nbd::source::http::read_response(&mut &data[..], 1 << 20);
});

#![no_main]
//! cargo fuzz run nbd_request: arbitrary bytes as NBD requests from the kernel's socket;
//! each is parsed and answered from a small image: an error reply, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use viver::nbd::{server, source::MemSource, wire::Request};
    let source = MemSource::new(vec![7u8; 64 << 10]);
    for chunk in data.chunks(28) {
        if let Ok(request) = Request::parse(chunk) {
            let _ = server::answer(&request, &source);
        }
    }
    let _ = viver::nbd::netlink::parse_replies(data);
});

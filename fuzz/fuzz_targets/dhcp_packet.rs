#![no_main]
//! cargo fuzz run dhcp_packet: arbitrary datagrams on port 68, to the parser and to a
//! client waiting for its offer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use viver::net::dhcp_client::{Client, Packet};
    let _ = Packet::parse(data);
    let mut client = Client::new([2, 0, 0, 0, 0, 1], 1, std::time::Duration::from_secs(10));
    client.start();
    let _ = client.on_packet(data, std::time::Duration::from_secs(1));
});

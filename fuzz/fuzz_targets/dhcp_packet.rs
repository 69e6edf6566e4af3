#![no_main]
//! cargo fuzz run dhcp_packet: arbitrary datagrams through the one DHCP codec
//! (net::dhcp::wire): parse, and what parses must encode and parse back the same.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use viver::net::dhcp::wire::Packet;
    if let Ok(p) = Packet::parse(data) {
        let again = Packet::parse(&p.encode()).expect("an encoded packet parses");
        assert_eq!(again.xid, p.xid);
        assert_eq!(again.message_type(), p.message_type());
    }
});

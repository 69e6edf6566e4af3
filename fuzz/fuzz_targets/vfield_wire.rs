#![no_main]
//! cargo fuzz run vfield_wire: arbitrary bytes as what a V-FIELD peer receives: a
//! handshake, a message stream, and every extension payload (BEP 10 handshake, ut_pex,
//! viver_manifest, bencode), as a manifest a joiner is given, and as a LAN announcement
//! datagram fed to a node's state machine: an error, never a panic.
use viver::vfield::{bencode, lsd, meta, wire};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(head) = <&[u8; wire::HANDSHAKE_LEN]>::try_from(data.get(..wire::HANDSHAKE_LEN).unwrap_or_default()) {
        let _ = wire::Handshake::decode(head);
    }
    let mut stream = data;
    while let Ok(message) = wire::Message::read(&mut stream) {
        if let wire::Message::Extended { payload, .. } = message {
            let _ = wire::parse_extension_handshake(&payload);
            let _ = wire::parse_pex(&payload);
            let _ = wire::ManifestMessage::decode(&payload);
        }
    }
    let _ = wire::parse_bitfield(data, data.len() * 8 - data.len().min(7));
    let _ = bencode::decode(data);
    let _ = meta::Meta::from_text(data.to_vec(), "fuzz");
    if let Ok(datagram) = lsd::Datagram::parse(data) {
        let mut node = lsd::Lsd::announcing("viver-fuzz".into(), 6881, [1; 20], "0123456789abcdef");
        let _ = node.received(std::time::Duration::ZERO, std::net::Ipv4Addr::LOCALHOST.into(), &datagram);
    }
});

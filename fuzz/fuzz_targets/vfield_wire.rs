#![no_main]
//! cargo fuzz run vfield_wire: arbitrary bytes as what a V-FIELD peer receives: a
//! handshake, a message stream, and every extension payload (BEP 10 handshake, ut_pex,
//! viver_manifest, bencode), and as a manifest a joiner is given: an error, never a panic.
use viver::vfield::{bencode, meta, wire};
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
});

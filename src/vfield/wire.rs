//! V-FIELD's wire format: the BitTorrent peer protocol (BEP 3 framing, BEP 52's v2
//! handshake bit, BEP 10 extension messages), so a standard v2 client given the
//! image's `.torrent` can seed it or fetch from a VIVER node, and `tcpdump -d`/Wireshark
//! dissect the traffic. V-FIELD's own needs ride in extension messages:
//! - `ut_pex` (BEP 11): peer exchange, compact IPv4 `added`/`dropped`;
//! - `viver_manifest`: the signed manifest, in 16 KiB pieces shaped as BEP 9's metadata
//!   messages (a joiner that knows only an address learns what the swarm serves);
//! - the extension handshake's `viver` dictionary: store budget, bytes held, sent and
//!   received, `leaving` (a planned leave), and `boot` (the node's part in serving the
//!   LAN's boot: none, standby, serving; see [`BootRole`]).
//!
//! A joiner that knows only an address sends an all-zero info hash; a VIVER peer answers
//! with the info hash it serves (a standard client would close instead).
//!
//! Every length is bounded before anything is allocated: see [`MAX_MESSAGE`].

use super::bencode::{self, Value};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
pub const HANDSHAKE_LEN: usize = 68;
/// BEP 3's block: requests ask for 16 KiB (the BEP 52 leaf size too).
pub const BLOCK: u32 = 16 << 10;
/// The longest message accepted: a piece message of one block, or an extension message
/// of one manifest piece plus its dictionary, or a bitfield of 8 M chunks (2 TiB at the
/// smallest chunk).
pub const MAX_MESSAGE: usize = (1 << 20) + 64;
/// The extension ids VIVER announces in its extension handshake (`m`).
pub const EXT_PEX: u8 = 1;
pub const EXT_MANIFEST: u8 = 2;
/// BEP 54: a peer no longer holds a chunk (4-byte index).
pub const EXT_DONTHAVE: u8 = 3;
pub const EXT_PEX_NAME: &str = "ut_pex";
pub const EXT_DONTHAVE_NAME: &str = "lt_donthave";
pub const EXT_MANIFEST_NAME: &str = "viver_manifest";
/// Bytes per `viver_manifest` piece (BEP 9's size).
pub const MANIFEST_PIECE: usize = 16 << 10;
/// Largest manifest a peer accepts (a 64 GiB image in 256 KiB chunks lists ~17 MB of hashes).
pub const MAX_MANIFEST: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a BitTorrent handshake")]
    NotBitTorrent,
    #[error("message of {0} bytes is longer than the {MAX_MESSAGE} accepted")]
    TooLong(usize),
    #[error("message {id}: {what}")]
    Malformed { id: u8, what: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// Reserved bits VIVER sets: BEP 10 extension protocol and BEP 52's v2 support.
    pub fn new(info_hash: [u8; 20], peer_id: [u8; 20]) -> Handshake {
        let mut reserved = [0u8; 8];
        reserved[5] |= 0x10;
        reserved[7] |= 0x10;
        Handshake { reserved, info_hash, peer_id }
    }

    pub fn extensions(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }

    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash);
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }

    pub fn decode(data: &[u8; HANDSHAKE_LEN]) -> Result<Handshake, WireError> {
        if data[0] != 19 || &data[1..20] != PROTOCOL {
            return Err(WireError::NotBitTorrent);
        }
        let mut h = Handshake { reserved: [0; 8], info_hash: [0; 20], peer_id: [0; 20] };
        h.reserved.copy_from_slice(&data[20..28]);
        h.info_hash.copy_from_slice(&data[28..48]);
        h.peer_id.copy_from_slice(&data[48..68]);
        Ok(h)
    }

    pub fn read(reader: &mut impl Read) -> Result<Handshake, WireError> {
        let mut buf = [0u8; HANDSHAKE_LEN];
        reader.read_exact(&mut buf)?;
        Handshake::decode(&buf)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// One bit per chunk, high bit first; spare bits zero.
    Bitfield(Vec<u8>),
    Request {
        index: u32,
        begin: u32,
        length: u32,
    },
    Piece {
        index: u32,
        begin: u32,
        data: Vec<u8>,
    },
    Cancel {
        index: u32,
        begin: u32,
        length: u32,
    },
    /// BEP 10: id 0 is the extension handshake; others are the ids the receiver announced.
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let three = |body: &mut Vec<u8>, id: u8, a: u32, b: u32, c: u32| {
            body.push(id);
            body.extend_from_slice(&a.to_be_bytes());
            body.extend_from_slice(&b.to_be_bytes());
            body.extend_from_slice(&c.to_be_bytes());
        };
        match self {
            Message::KeepAlive => {}
            Message::Choke => body.push(0),
            Message::Unchoke => body.push(1),
            Message::Interested => body.push(2),
            Message::NotInterested => body.push(3),
            Message::Have(index) => {
                body.push(4);
                body.extend_from_slice(&index.to_be_bytes());
            }
            Message::Bitfield(bits) => {
                body.push(5);
                body.extend_from_slice(bits);
            }
            Message::Request { index, begin, length } => three(&mut body, 6, *index, *begin, *length),
            Message::Piece { index, begin, data } => {
                body.push(7);
                body.extend_from_slice(&index.to_be_bytes());
                body.extend_from_slice(&begin.to_be_bytes());
                body.extend_from_slice(data);
            }
            Message::Cancel { index, begin, length } => three(&mut body, 8, *index, *begin, *length),
            Message::Extended { id, payload } => {
                body.push(20);
                body.push(*id);
                body.extend_from_slice(payload);
            }
        }
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses one message body (the bytes after the length prefix).
    pub fn decode(body: &[u8]) -> Result<Message, WireError> {
        let Some((&id, rest)) = body.split_first() else { return Ok(Message::KeepAlive) };
        let bad = |what: &str| WireError::Malformed { id, what: what.to_string() };
        let u32_at = |at: usize| -> u32 { u32::from_be_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]) };
        let exact = |n: usize| if rest.len() == n { Ok(()) } else { Err(bad(&format!("{} bytes, expected {n}", rest.len()))) };
        Ok(match id {
            0 => exact(0).map(|_| Message::Choke)?,
            1 => exact(0).map(|_| Message::Unchoke)?,
            2 => exact(0).map(|_| Message::Interested)?,
            3 => exact(0).map(|_| Message::NotInterested)?,
            4 => exact(4).map(|_| Message::Have(u32_at(0)))?,
            5 => Message::Bitfield(rest.to_vec()),
            6 | 8 => {
                exact(12)?;
                let (index, begin, length) = (u32_at(0), u32_at(4), u32_at(8));
                if id == 6 {
                    Message::Request { index, begin, length }
                } else {
                    Message::Cancel { index, begin, length }
                }
            }
            7 => {
                if rest.len() < 8 {
                    return Err(bad("shorter than its header"));
                }
                Message::Piece { index: u32_at(0), begin: u32_at(4), data: rest[8..].to_vec() }
            }
            20 => {
                let Some((&ext, payload)) = rest.split_first() else { return Err(bad("no extension id")) };
                Message::Extended { id: ext, payload: payload.to_vec() }
            }
            // BEP 52's hash request/hashes/reject (21-23) and BEP 6's fast messages are
            // not needed between VIVER peers: both sides hold the piece layer.
            _ => return Err(bad("unknown message id")),
        })
    }

    pub fn write(&self, writer: &mut impl Write) -> io::Result<()> {
        writer.write_all(&self.encode())
    }

    /// Reads one length-prefixed message, refusing a length over [`MAX_MESSAGE`] before
    /// allocating it.
    pub fn read(reader: &mut impl Read) -> Result<Message, WireError> {
        let mut len = [0u8; 4];
        reader.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_MESSAGE {
            return Err(WireError::TooLong(len));
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        Message::decode(&body)
    }
}

/// What a peer says of itself in its extension handshake's `viver` dictionary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The port it accepts peers on (BEP 10's `p`), 0 when it accepts none.
    pub listen_port: u16,
    /// The address it accepts peers on, when bound to one (a host with several
    /// addresses, e.g. peers on 127.0.0.x, dials from another than it listens on).
    pub listen_addr: Option<SocketAddr>,
    pub store_bytes: u64,
    pub held_bytes: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// A planned leave: fetch what only it holds, then let it go.
    pub leaving: bool,
    /// The size of its manifest (BEP 9's `metadata_size`), 0 when it has none to give.
    pub manifest_size: u64,
    pub client: String,
    pub boot: BootRole,
}

/// A node's part in booting the LAN: a netbooted node holding the boot files is a
/// standby; when the boot server is gone, the standbys elect the next one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootRole {
    #[default]
    None,
    Standby,
    Serving,
}

impl BootRole {
    fn code(self) -> u64 {
        match self {
            BootRole::None => 0,
            BootRole::Standby => 1,
            BootRole::Serving => 2,
        }
    }

    fn from_code(code: u64) -> BootRole {
        match code {
            1 => BootRole::Standby,
            2 => BootRole::Serving,
            _ => BootRole::None,
        }
    }
}

pub fn extension_handshake(info: &PeerInfo) -> Vec<u8> {
    let int = |n: u64| Value::Int(n.min(i64::MAX as u64) as i64);
    Value::dict([
        (
            "m",
            Value::dict([
                (EXT_DONTHAVE_NAME, Value::Int(EXT_DONTHAVE as i64)),
                (EXT_PEX_NAME, Value::Int(EXT_PEX as i64)),
                (EXT_MANIFEST_NAME, Value::Int(EXT_MANIFEST as i64)),
            ]),
        ),
        ("metadata_size", int(info.manifest_size)),
        ("p", int(info.listen_port as u64)),
        ("v", Value::bytes(info.client.as_bytes())),
        (
            "viver",
            Value::dict([
                ("addr", Value::Bytes(info.listen_addr.map(compact).unwrap_or_default())),
                ("boot", int(info.boot.code())),
                ("held", int(info.held_bytes)),
                ("leaving", int(info.leaving as u64)),
                ("recv", int(info.bytes_received)),
                ("sent", int(info.bytes_sent)),
                ("store", int(info.store_bytes)),
            ]),
        ),
    ])
    .encode()
}

/// The ids a peer wants its extension messages sent with (0: it does not speak that one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionIds {
    pub pex: u8,
    pub manifest: u8,
    pub donthave: u8,
}

/// The peer's extension handshake: its info, and its extension ids.
pub fn parse_extension_handshake(payload: &[u8]) -> Result<(PeerInfo, ExtensionIds), String> {
    let v = bencode::decode(payload).map_err(|e| e.to_string())?;
    if v.as_dict().is_none() {
        return Err("extension handshake is not a dictionary".into());
    }
    let id = |name: &str| -> u8 {
        v.get("m").and_then(|m| m.get(name)).and_then(Value::as_int).filter(|n| (1..=255).contains(n)).unwrap_or(0) as u8
    };
    let uint = |d: Option<&Value>, key: &str| d.and_then(|d| d.get(key)).and_then(Value::as_int).unwrap_or(0).max(0) as u64;
    let viver = v.get("viver");
    let listen_addr = viver.and_then(|d| d.get("addr")).and_then(Value::as_bytes).and_then(parse_compact);
    let info = PeerInfo {
        listen_port: uint(Some(&v), "p").min(65535) as u16,
        listen_addr,
        store_bytes: uint(viver, "store"),
        held_bytes: uint(viver, "held"),
        bytes_sent: uint(viver, "sent"),
        bytes_received: uint(viver, "recv"),
        leaving: uint(viver, "leaving") != 0,
        boot: BootRole::from_code(uint(viver, "boot")),
        manifest_size: uint(Some(&v), "metadata_size"),
        client: v
            .get("v")
            .and_then(Value::as_bytes)
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(64)]).into_owned())
            .unwrap_or_default(),
    };
    Ok((info, ExtensionIds { pex: id(EXT_PEX_NAME), manifest: id(EXT_MANIFEST_NAME), donthave: id(EXT_DONTHAVE_NAME) }))
}

/// BEP 11's compact address: 4 bytes IPv4 (or 16 IPv6) and the port.
fn compact(addr: SocketAddr) -> Vec<u8> {
    let mut out = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    out.extend_from_slice(&addr.port().to_be_bytes());
    out
}

fn parse_compact(bytes: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([*bytes.get(bytes.len().checked_sub(2)?)?, *bytes.last()?]);
    let ip: std::net::IpAddr = match bytes.len() {
        6 => <[u8; 4]>::try_from(&bytes[..4]).ok()?.into(),
        18 => <[u8; 16]>::try_from(&bytes[..16]).ok()?.into(),
        _ => return None,
    };
    (port != 0 && !ip.is_unspecified()).then_some(SocketAddr::new(ip, port))
}

/// BEP 11: the peers to add, as compact IPv4 address+port (IPv6 peers are not exchanged).
pub fn pex(added: &[SocketAddr]) -> Vec<u8> {
    let mut compact = Vec::new();
    for addr in added {
        if let SocketAddr::V4(a) = addr {
            compact.extend_from_slice(&a.ip().octets());
            compact.extend_from_slice(&a.port().to_be_bytes());
        }
    }
    Value::dict([("added", Value::Bytes(compact))]).encode()
}

/// At most this many peers are taken from one PEX message (BEP 11 says 50 per minute).
const MAX_PEX: usize = 200;

pub fn parse_pex(payload: &[u8]) -> Result<Vec<SocketAddr>, String> {
    let v = bencode::decode(payload).map_err(|e| e.to_string())?;
    let added = v.get("added").and_then(Value::as_bytes).unwrap_or_default();
    if added.len() % 6 != 0 {
        return Err(format!("ut_pex added is {} bytes, not a multiple of 6", added.len()));
    }
    Ok(added
        .chunks_exact(6)
        .take(MAX_PEX)
        .map(|c| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(c[0], c[1], c[2], c[3]), u16::from_be_bytes([c[4], c[5]]))))
        .filter(|a| a.port() != 0)
        .collect())
}

/// BEP 9-shaped manifest transfer: request, data (with the piece's bytes), reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestMessage {
    Request { piece: u32 },
    Data { piece: u32, total_size: u64, data: Vec<u8> },
    Reject { piece: u32 },
}

impl ManifestMessage {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ManifestMessage::Request { piece } => Value::dict([("msg_type", Value::Int(0)), ("piece", Value::Int(*piece as i64))]).encode(),
            ManifestMessage::Reject { piece } => Value::dict([("msg_type", Value::Int(2)), ("piece", Value::Int(*piece as i64))]).encode(),
            ManifestMessage::Data { piece, total_size, data } => {
                let mut out = Value::dict([
                    ("msg_type", Value::Int(1)),
                    ("piece", Value::Int(*piece as i64)),
                    ("total_size", Value::Int(*total_size as i64)),
                ])
                .encode();
                out.extend_from_slice(data);
                out
            }
        }
    }

    pub fn decode(payload: &[u8]) -> Result<ManifestMessage, String> {
        let (v, used) = bencode::decode_prefix(payload).map_err(|e| e.to_string())?;
        let int = |key: &str| v.get(key).and_then(Value::as_int).ok_or_else(|| format!("viver_manifest: no {key}"));
        let piece = u32::try_from(int("piece")?).map_err(|_| "viver_manifest: piece out of range".to_string())?;
        match int("msg_type")? {
            0 => Ok(ManifestMessage::Request { piece }),
            2 => Ok(ManifestMessage::Reject { piece }),
            1 => {
                let total = int("total_size")?;
                if !(1..=MAX_MANIFEST as i64).contains(&total) {
                    return Err(format!("viver_manifest: total_size {total} out of range"));
                }
                let data = payload[used..].to_vec();
                if data.len() > MANIFEST_PIECE {
                    return Err("viver_manifest: piece longer than 16 KiB".into());
                }
                Ok(ManifestMessage::Data { piece, total_size: total as u64, data })
            }
            other => Err(format!("viver_manifest: msg_type {other}")),
        }
    }
}

/// Bitfield helpers: chunk `i` is bit 7 - i % 8 of byte i / 8.
pub fn bitfield_of(held: &[bool]) -> Vec<u8> {
    let mut bits = vec![0u8; held.len().div_ceil(8)];
    for (i, _) in held.iter().enumerate().filter(|(_, h)| **h) {
        bits[i / 8] |= 0x80 >> (i % 8);
    }
    bits
}

/// The chunks a bitfield says are held, or why it does not fit `count` chunks.
pub fn parse_bitfield(bits: &[u8], count: usize) -> Result<Vec<bool>, String> {
    if bits.len() != count.div_ceil(8) {
        return Err(format!("bitfield of {} bytes for {count} chunks", bits.len()));
    }
    let held: Vec<bool> = (0..bits.len() * 8).map(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0).collect();
    if held[count..].iter().any(|&b| b) {
        return Err("bitfield sets bits past the last chunk".into());
    }
    Ok(held[..count].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_in_bep3_layout() {
        let all = [
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(7),
            Message::Bitfield(vec![0b1010_0000]),
            Message::Request { index: 1, begin: 16384, length: 16384 },
            Message::Piece { index: 1, begin: 0, data: vec![9; 100] },
            Message::Cancel { index: 1, begin: 0, length: 16384 },
            Message::Extended { id: 0, payload: b"de".to_vec() },
        ];
        for m in all {
            let bytes = m.encode();
            assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize, bytes.len() - 4);
            assert_eq!(Message::read(&mut &bytes[..]).unwrap(), m);
        }
        // BEP 3: have is <len=0005><id=4><piece index>.
        assert_eq!(Message::Have(258).encode(), [0, 0, 0, 5, 4, 0, 0, 1, 2]);
    }

    #[test]
    fn handshake_layout_and_bits() {
        let h = Handshake::new([1; 20], [2; 20]);
        let bytes = h.encode();
        assert_eq!(&bytes[..20], b"\x13BitTorrent protocol");
        assert_eq!(bytes[25], 0x10);
        assert_eq!(bytes[27], 0x10);
        assert_eq!(Handshake::decode(&bytes).unwrap(), h);
        assert!(h.extensions());
        let mut wrong = bytes;
        wrong[3] = b'x';
        assert!(matches!(Handshake::decode(&wrong), Err(WireError::NotBitTorrent)));
    }

    #[test]
    fn refuses_oversized_and_malformed_messages() {
        let mut huge = (MAX_MESSAGE as u32 + 1).to_be_bytes().to_vec();
        huge.push(7);
        assert!(matches!(Message::read(&mut &huge[..]), Err(WireError::TooLong(_))));
        assert!(Message::decode(&[4, 0, 0]).is_err());
        assert!(Message::decode(&[6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(Message::decode(&[99]).is_err());
        assert!(Message::decode(&[20]).is_err());
    }

    #[test]
    fn extension_payloads_round_trip() {
        let info = PeerInfo {
            listen_port: 6881,
            listen_addr: Some("127.0.0.9:6881".parse().unwrap()),
            store_bytes: 1 << 30,
            held_bytes: 5,
            bytes_sent: 6,
            bytes_received: 7,
            leaving: true,
            manifest_size: 1234,
            client: "VIVER 0.1".into(),
            boot: BootRole::Standby,
        };
        assert_eq!(
            parse_extension_handshake(&extension_handshake(&info)).unwrap(),
            (info, ExtensionIds { pex: EXT_PEX, manifest: EXT_MANIFEST, donthave: EXT_DONTHAVE })
        );
        let peers: Vec<SocketAddr> = vec!["127.0.0.2:7000".parse().unwrap(), "127.0.0.3:7001".parse().unwrap()];
        assert_eq!(parse_pex(&pex(&peers)).unwrap(), peers);
        for m in [
            ManifestMessage::Request { piece: 3 },
            ManifestMessage::Reject { piece: 1 },
            ManifestMessage::Data { piece: 0, total_size: 5, data: b"hello".to_vec() },
        ] {
            assert_eq!(ManifestMessage::decode(&m.encode()).unwrap(), m);
        }
        assert!(parse_pex(b"d5:added5:abcdee").is_err());
    }

    #[test]
    fn bitfields_are_checked_against_the_chunk_count() {
        let held = vec![true, false, true, true, false, false, false, false, true];
        let bits = bitfield_of(&held);
        assert_eq!(bits, [0b1011_0000, 0b1000_0000]);
        assert_eq!(parse_bitfield(&bits, 9).unwrap(), held);
        assert!(parse_bitfield(&bits, 20).is_err());
        assert!(parse_bitfield(&[0xff, 0xff], 9).is_err());
    }

    #[test]
    fn mutated_messages_never_panic() {
        let seeds: Vec<Vec<u8>> = vec![
            Message::Request { index: 1, begin: 0, length: 16384 }.encode(),
            Message::Extended { id: 0, payload: extension_handshake(&PeerInfo::default()) }.encode(),
            Message::Extended { id: 2, payload: ManifestMessage::Data { piece: 0, total_size: 3, data: b"abc".to_vec() }.encode() }
                .encode(),
        ];
        let mut state = 99u64;
        for _ in 0..20_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut data = seeds[(state >> 60) as usize % seeds.len()].clone();
            for _ in 0..3 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (state >> 33) as usize % data.len();
                data[at] = (state >> 17) as u8;
            }
            if let Ok(Message::Extended { payload, .. }) = Message::read(&mut &data[..]) {
                let _ = parse_extension_handshake(&payload);
                let _ = parse_pex(&payload);
                let _ = ManifestMessage::decode(&payload);
            }
        }
    }
}

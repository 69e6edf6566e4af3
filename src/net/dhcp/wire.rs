//! DHCP/BOOTP wire format (RFC 2131, 2132; RFC 3396 long options).
//!
//! Written here rather than taken from `dhcproto`: the server only needs the fixed
//! BOOTP header and options as code + bytes (about 200 lines), while dhcproto brings a
//! large typed-option tree and its own dependencies into a static /init for no gain;
//! keeping options as raw bytes also lets replies carry exactly the PXE options iPXE
//! and firmware expect, in the order given.

use std::net::Ipv4Addr;

pub const BOOTREQUEST: u8 = 1;
pub const BOOTREPLY: u8 = 2;
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Fixed header (236 bytes) + magic cookie.
pub const HEADER_LEN: usize = 240;

pub mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const TFTP_SERVER: u8 = 66;
    pub const BOOTFILE: u8 = 67;
    pub const USER_CLASS: u8 = 77;
    pub const CLIENT_ARCH: u8 = 93;
    pub const CLIENT_NDI: u8 = 94;
    pub const CLIENT_UUID: u8 = 97;
    pub const VENDOR_SPECIFIC: u8 = 43;
    pub const IPXE_ENCAP: u8 = 175;
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
}

impl MessageType {
    pub fn from_byte(b: u8) -> Option<MessageType> {
        Some(match b {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return None,
        })
    }
    pub fn byte(self) -> u8 {
        match self {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("packet of {0} bytes is shorter than the 240-byte BOOTP header")]
    Short(usize),
    #[error("no DHCP magic cookie")]
    NoMagic,
    #[error("option {code} runs past the end of the packet")]
    Truncated { code: u8 },
    #[error("hardware address length {0} is over 16")]
    BadHlen(u8),
}

/// One BOOTP/DHCP packet. Options are kept in order as (code, value); a code given
/// twice is concatenated (RFC 3396) when parsing.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub hops: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 16],
    pub sname: Vec<u8>,
    pub file: Vec<u8>,
    pub options: Vec<(u8, Vec<u8>)>,
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// A zero-terminated fixed field as bytes (without the padding).
fn field(b: &[u8]) -> Vec<u8> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    b[..end].to_vec()
}

fn parse_options(mut b: &[u8], out: &mut Vec<(u8, Vec<u8>)>) -> Result<(), WireError> {
    while let Some((&code, rest)) = b.split_first() {
        match code {
            opt::PAD => b = rest,
            opt::END => break,
            _ => {
                let (&len, rest) = rest.split_first().ok_or(WireError::Truncated { code })?;
                let len = usize::from(len);
                if rest.len() < len {
                    return Err(WireError::Truncated { code });
                }
                let value = &rest[..len];
                match out.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, existing)) => existing.extend_from_slice(value),
                    None => out.push((code, value.to_vec())),
                }
                b = &rest[len..];
            }
        }
    }
    Ok(())
}

impl Packet {
    pub fn parse(b: &[u8]) -> Result<Packet, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::Short(b.len()));
        }
        if b[236..240] != MAGIC {
            return Err(WireError::NoMagic);
        }
        if b[2] > 16 {
            return Err(WireError::BadHlen(b[2]));
        }
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&b[28..44]);
        let mut options = Vec::new();
        parse_options(&b[240..], &mut options)?;
        let mut packet = Packet {
            op: b[0],
            htype: b[1],
            hlen: b[2],
            hops: b[3],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            secs: u16::from_be_bytes([b[8], b[9]]),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: ip_at(b, 12),
            yiaddr: ip_at(b, 16),
            siaddr: ip_at(b, 20),
            giaddr: ip_at(b, 24),
            chaddr,
            sname: field(&b[44..108]),
            file: field(&b[108..236]),
            options,
        };
        // Option overload (52): more options in `file` (1), `sname` (2) or both (3).
        if let Some(&[overload]) = packet.get(opt::OVERLOAD) {
            if overload & 1 != 0 {
                parse_options(&b[108..236], &mut packet.options)?;
                packet.file.clear();
            }
            if overload & 2 != 0 {
                parse_options(&b[44..108], &mut packet.options)?;
                packet.sname.clear();
            }
        }
        Ok(packet)
    }

    /// The packet as bytes: header, options in order (values over 255 bytes split into
    /// several instances), END, padded to the BOOTP minimum of 300 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(576);
        b.extend_from_slice(&[self.op, self.htype, self.hlen, self.hops]);
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&self.secs.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        for ip in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            b.extend_from_slice(&ip.octets());
        }
        b.extend_from_slice(&self.chaddr);
        let mut sname = [0u8; 64];
        let n = self.sname.len().min(63);
        sname[..n].copy_from_slice(&self.sname[..n]);
        b.extend_from_slice(&sname);
        let mut file = [0u8; 128];
        let n = self.file.len().min(127);
        file[..n].copy_from_slice(&self.file[..n]);
        b.extend_from_slice(&file);
        b.extend_from_slice(&MAGIC);
        for (code, value) in &self.options {
            if value.is_empty() {
                b.extend_from_slice(&[*code, 0]);
            }
            for chunk in value.chunks(255) {
                b.push(*code);
                b.push(chunk.len() as u8);
                b.extend_from_slice(chunk);
            }
        }
        b.push(opt::END);
        while b.len() < 300 {
            b.push(opt::PAD);
        }
        b
    }

    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.options.iter().find(|(c, _)| *c == code).map(|(_, v)| v.as_slice())
    }

    pub fn set(&mut self, code: u8, value: impl Into<Vec<u8>>) {
        let value = value.into();
        match self.options.iter_mut().find(|(c, _)| *c == code) {
            Some((_, existing)) => *existing = value,
            None => self.options.push((code, value)),
        }
    }

    pub fn message_type(&self) -> Option<MessageType> {
        match self.get(opt::MESSAGE_TYPE) {
            Some(&[b]) => MessageType::from_byte(b),
            _ => None,
        }
    }

    pub fn ip_option(&self, code: u8) -> Option<Ipv4Addr> {
        match self.get(code) {
            Some(&[a, b, c, d]) => Some(Ipv4Addr::new(a, b, c, d)),
            _ => None,
        }
    }

    /// The client's hardware address (Ethernet: 6 bytes).
    pub fn mac(&self) -> Option<[u8; 6]> {
        if self.htype == 1 && self.hlen == 6 {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&self.chaddr[..6]);
            Some(mac)
        } else {
            None
        }
    }

    /// A reply to this request: same xid, flags, giaddr and chaddr, op BOOTREPLY.
    pub fn reply(&self, kind: MessageType) -> Packet {
        Packet {
            op: BOOTREPLY,
            htype: self.htype,
            hlen: self.hlen,
            hops: 0,
            xid: self.xid,
            secs: 0,
            flags: self.flags,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: self.giaddr,
            chaddr: self.chaddr,
            sname: Vec::new(),
            file: Vec::new(),
            options: vec![(opt::MESSAGE_TYPE, vec![kind.byte()])],
        }
    }

    /// An empty BOOTREQUEST of `kind` from `mac` (what a client sends; for the segment
    /// probe and the tests).
    pub fn request(kind: MessageType, xid: u32, mac: [u8; 6]) -> Packet {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&mac);
        Packet {
            op: BOOTREQUEST,
            htype: 1,
            hlen: 6,
            hops: 0,
            xid,
            secs: 0,
            flags: 0x8000,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            sname: Vec::new(),
            file: Vec::new(),
            options: vec![(opt::MESSAGE_TYPE, vec![kind.byte()])],
        }
    }
}

/// `52:54:00:12:34:56`
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The sub-options (code, value) of an encapsulated option such as 43 or 175.
pub fn sub_options(value: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    // Malformed encapsulations are ignored rather than refused: they are hints.
    let _ = parse_options(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_long_option() {
        let mut p = Packet::request(MessageType::Discover, 0x1234_5678, [2, 0, 0, 0, 0, 1]);
        p.set(opt::VENDOR_CLASS, b"PXEClient:Arch:00000:UNDI:002001".to_vec());
        p.set(opt::HOSTNAME, vec![b'x'; 300]);
        let bytes = p.encode();
        assert_eq!(&bytes[236..240], &MAGIC);
        let q = Packet::parse(&bytes).unwrap();
        assert_eq!(q, p);
        assert_eq!(q.message_type(), Some(MessageType::Discover));
        assert_eq!(q.mac(), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(q.get(opt::HOSTNAME).unwrap().len(), 300);
    }

    #[test]
    fn refusals() {
        assert_eq!(Packet::parse(&[0; 100]), Err(WireError::Short(100)));
        let mut b = Packet::request(MessageType::Discover, 1, [0; 6]).encode();
        b[236] = 0;
        assert_eq!(Packet::parse(&b), Err(WireError::NoMagic));
        let mut b = Packet::request(MessageType::Discover, 1, [0; 6]).encode();
        b[241] = 12; // option 53 claims 12 bytes; only 8 follow
        b.truncate(250);
        assert_eq!(Packet::parse(&b), Err(WireError::Truncated { code: 53 }));
    }

    #[test]
    fn overload_reads_options_from_file_field() {
        let mut b = Packet::request(MessageType::Request, 1, [0; 6]).encode();
        b[108..111].copy_from_slice(&[opt::VENDOR_CLASS, 1, b'x']);
        b[111] = opt::END;
        let end = b.iter().rposition(|&c| c == opt::END).unwrap();
        b.splice(end..end, [opt::OVERLOAD, 1, 1]);
        let p = Packet::parse(&b).unwrap();
        assert_eq!(p.get(opt::VENDOR_CLASS), Some(&b"x"[..]));
        assert!(p.file.is_empty());
    }

    #[test]
    fn sub_options_of_43() {
        assert_eq!(sub_options(&[6, 1, 8, 255]), vec![(6, vec![8])]);
        assert_eq!(sub_options(&[6, 9]), Vec::<(u8, Vec<u8>)>::new());
    }
}

//! TFTP packets (RFC 1350, OACK of RFC 2347).

#[derive(Clone, Debug, PartialEq)]
pub enum Packet {
    /// Read request: file name, mode, options (names lower-cased) in order.
    Rrq {
        file: String,
        mode: String,
        options: Vec<(String, String)>,
    },
    Wrq {
        file: String,
    },
    Data {
        block: u16,
        data: Vec<u8>,
    },
    Ack {
        block: u16,
    },
    Error {
        code: u16,
        message: String,
    },
    Oack {
        options: Vec<(String, String)>,
    },
}

/// RFC 1350 error codes (8: option negotiation refused, RFC 2347).
pub mod code {
    pub const UNDEFINED: u16 = 0;
    pub const NOT_FOUND: u16 = 1;
    pub const ACCESS_VIOLATION: u16 = 2;
    pub const ILLEGAL_OPERATION: u16 = 4;
    pub const UNKNOWN_TID: u16 = 5;
    pub const OPTION_REFUSED: u16 = 8;
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("packet of {0} bytes is too short")]
    Short(usize),
    #[error("unknown opcode {0}")]
    Opcode(u16),
    #[error("string field not terminated by NUL")]
    Unterminated,
    #[error("string field is not UTF-8")]
    NotText,
    #[error("option {0:?} has no value")]
    OptionWithoutValue(String),
}

fn strings(b: &[u8]) -> Result<Vec<String>, WireError> {
    if b.last() != Some(&0) {
        return Err(WireError::Unterminated);
    }
    b[..b.len() - 1].split(|&c| c == 0).map(|s| String::from_utf8(s.to_vec()).map_err(|_| WireError::NotText)).collect()
}

fn options(words: &[String]) -> Result<Vec<(String, String)>, WireError> {
    words
        .chunks(2)
        .map(|pair| match pair {
            [name, value] => Ok((name.to_ascii_lowercase(), value.clone())),
            [name] => Err(WireError::OptionWithoutValue(name.clone())),
            _ => Err(WireError::Unterminated),
        })
        .collect()
}

impl Packet {
    pub fn parse(b: &[u8]) -> Result<Packet, WireError> {
        if b.len() < 4 && !(b.len() >= 2 && u16::from_be_bytes([b[0], b[1]]) == 6) {
            return Err(WireError::Short(b.len()));
        }
        let op = u16::from_be_bytes([b[0], b[1]]);
        let rest = &b[2..];
        match op {
            1 | 2 => {
                let words = strings(rest)?;
                let (file, mode) = match words.as_slice() {
                    [file, mode, ..] => (file.clone(), mode.to_ascii_lowercase()),
                    _ => return Err(WireError::Short(b.len())),
                };
                if op == 2 {
                    return Ok(Packet::Wrq { file });
                }
                Ok(Packet::Rrq { file, mode, options: options(&words[2..])? })
            }
            3 => Ok(Packet::Data { block: u16::from_be_bytes([rest[0], rest[1]]), data: rest[2..].to_vec() }),
            4 => Ok(Packet::Ack { block: u16::from_be_bytes([rest[0], rest[1]]) }),
            5 => {
                let code = u16::from_be_bytes([rest[0], rest[1]]);
                let message = match rest.get(2..) {
                    Some(m) if !m.is_empty() => strings(m)?.join(" "),
                    _ => String::new(),
                };
                Ok(Packet::Error { code, message })
            }
            6 => Ok(Packet::Oack { options: if rest.is_empty() { Vec::new() } else { options(&strings(rest)?)? } }),
            other => Err(WireError::Opcode(other)),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        let text = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        };
        match self {
            Packet::Rrq { file, mode, options } => {
                b.extend_from_slice(&1u16.to_be_bytes());
                text(&mut b, file);
                text(&mut b, mode);
                for (k, v) in options {
                    text(&mut b, k);
                    text(&mut b, v);
                }
            }
            Packet::Wrq { file } => {
                b.extend_from_slice(&2u16.to_be_bytes());
                text(&mut b, file);
                text(&mut b, "octet");
            }
            Packet::Data { block, data } => {
                b.extend_from_slice(&3u16.to_be_bytes());
                b.extend_from_slice(&block.to_be_bytes());
                b.extend_from_slice(data);
            }
            Packet::Ack { block } => {
                b.extend_from_slice(&4u16.to_be_bytes());
                b.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                b.extend_from_slice(&5u16.to_be_bytes());
                b.extend_from_slice(&code.to_be_bytes());
                text(&mut b, message);
            }
            Packet::Oack { options } => {
                b.extend_from_slice(&6u16.to_be_bytes());
                for (k, v) in options {
                    text(&mut b, k);
                    text(&mut b, v);
                }
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for p in [
            Packet::Rrq { file: "ipxe.efi".into(), mode: "octet".into(), options: vec![("blksize".into(), "1456".into())] },
            Packet::Data { block: 65535, data: vec![1, 2, 3] },
            Packet::Ack { block: 7 },
            Packet::Error { code: 1, message: "File not found".into() },
            Packet::Oack { options: vec![("tsize".into(), "12".into())] },
        ] {
            assert_eq!(Packet::parse(&p.encode()), Ok(p));
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(Packet::parse(&[0, 1]), Err(WireError::Short(2)));
        assert_eq!(Packet::parse(&[0, 9, 0, 0]), Err(WireError::Opcode(9)));
        assert_eq!(Packet::parse(b"\x00\x01abc\x00octet"), Err(WireError::Unterminated));
        assert_eq!(Packet::parse(b"\x00\x01a\x00octet\x00blksize\x00"), Err(WireError::OptionWithoutValue("blksize".into())));
        assert_eq!(Packet::parse(b"\x00\x01a\xff\x00octet\x00"), Err(WireError::NotText));
    }

    #[test]
    fn option_names_are_case_insensitive() {
        let p = Packet::parse(b"\x00\x01f\x00OCTET\x00BlkSize\x00512\x00").unwrap();
        assert_eq!(p, Packet::Rrq { file: "f".into(), mode: "octet".into(), options: vec![("blksize".into(), "512".into())] });
    }
}

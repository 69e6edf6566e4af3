//! The NBD transmission phase as the kernel speaks it over its socket (`<linux/nbd.h>`):
//! 28-byte requests, 16-byte simple replies (followed by the data for a READ).

pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const REQUEST_LEN: usize = 28;
pub const REPLY_LEN: usize = 16;

pub const NBD_CMD_READ: u16 = 0;
pub const NBD_CMD_WRITE: u16 = 1;
pub const NBD_CMD_DISC: u16 = 2;
pub const NBD_CMD_FLUSH: u16 = 3;
pub const NBD_CMD_TRIM: u16 = 4;

/// Error numbers of the protocol (the kernel turns any into an I/O error).
pub const NBD_EPERM: u32 = 1;
pub const NBD_EIO: u32 = 5;
pub const NBD_ENOMEM: u32 = 12;
pub const NBD_EINVAL: u32 = 22;
pub const NBD_ENOTSUP: u32 = 95;

/// The longest request served: the kernel's largest (max_hw_sectors 65536 x 512 B).
pub const MAX_REQUEST: u32 = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read,
    Write,
    Disc,
    Flush,
    Trim,
    Other(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    /// The upper 16 bits of the type word (FUA and the like).
    pub flags: u16,
    pub handle: [u8; 8],
    pub offset: u64,
    pub length: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("request magic {0:#010x}, expected {REQUEST_MAGIC:#010x}: the stream is out of step")]
    BadMagic(u32),
    #[error("request of {0} bytes, {REQUEST_LEN} expected")]
    Short(usize),
}

impl Request {
    /// Parses one request header. Any 28 bytes with the right magic are a request; what it
    /// asks for (bounds, length) is judged by the server.
    pub fn parse(bytes: &[u8]) -> Result<Request, WireError> {
        let b: &[u8; REQUEST_LEN] = bytes.get(..REQUEST_LEN).and_then(|s| s.try_into().ok()).ok_or(WireError::Short(bytes.len()))?;
        let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if magic != REQUEST_MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        let flags = u16::from_be_bytes([b[4], b[5]]);
        let kind = u16::from_be_bytes([b[6], b[7]]);
        let command = match kind {
            NBD_CMD_READ => Command::Read,
            NBD_CMD_WRITE => Command::Write,
            NBD_CMD_DISC => Command::Disc,
            NBD_CMD_FLUSH => Command::Flush,
            NBD_CMD_TRIM => Command::Trim,
            other => Command::Other(other),
        };
        let mut handle = [0u8; 8];
        handle.copy_from_slice(&b[8..16]);
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&b[16..24]);
        Ok(Request { command, flags, handle, offset: u64::from_be_bytes(offset), length: u32::from_be_bytes([b[24], b[25], b[26], b[27]]) })
    }

    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let kind = match self.command {
            Command::Read => NBD_CMD_READ,
            Command::Write => NBD_CMD_WRITE,
            Command::Disc => NBD_CMD_DISC,
            Command::Flush => NBD_CMD_FLUSH,
            Command::Trim => NBD_CMD_TRIM,
            Command::Other(k) => k,
        };
        let mut out = [0u8; REQUEST_LEN];
        out[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&self.flags.to_be_bytes());
        out[6..8].copy_from_slice(&kind.to_be_bytes());
        out[8..16].copy_from_slice(&self.handle);
        out[16..24].copy_from_slice(&self.offset.to_be_bytes());
        out[24..28].copy_from_slice(&self.length.to_be_bytes());
        out
    }
}

pub fn simple_reply(error: u32, handle: [u8; 8]) -> [u8; REPLY_LEN] {
    let mut out = [0u8; REPLY_LEN];
    out[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..16].copy_from_slice(&handle);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_layout() {
        let req = Request { command: Command::Read, flags: 1, handle: *b"handle01", offset: 0x0102_0304_0506_0708, length: 4096 };
        let bytes = req.encode();
        assert_eq!(&bytes[0..8], &[0x25, 0x60, 0x95, 0x13, 0, 1, 0, 0]);
        assert_eq!(&bytes[16..24], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[24..28], &[0, 0, 0x10, 0]);
        assert_eq!(Request::parse(&bytes), Ok(req));
    }

    #[test]
    fn bad_magic_and_short_input() {
        let mut bytes = Request { command: Command::Disc, flags: 0, handle: [0; 8], offset: 0, length: 0 }.encode();
        assert_eq!(Request::parse(&bytes[..10]), Err(WireError::Short(10)));
        bytes[0] = 0;
        assert_eq!(Request::parse(&bytes), Err(WireError::BadMagic(0x0060_9513)));
    }

    #[test]
    fn reply_layout() {
        assert_eq!(simple_reply(NBD_EINVAL, *b"abcdefgh"), *b"\x67\x44\x66\x98\0\0\0\x16abcdefgh");
    }
}

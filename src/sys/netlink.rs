//! Netlink (`<linux/netlink.h>`), the one codec for every family VIVER speaks:
//! rtnetlink (links, addresses, routes: [`crate::net::link`]) and generic netlink (the NBD
//! driver: [`crate::nbd::netlink`]). A message is `nlmsghdr` + a family header (ifinfomsg,
//! ifaddrmsg, rtmsg, genlmsghdr: opaque bytes here) + attributes; a reply datagram is a
//! run of such messages ending in an ACK (`NLMSG_ERROR` with code 0), an error or
//! `NLMSG_DONE`. [`Socket::transact`] sends one request and collects the replies.
//!
//! Hand-written rather than taken from a crate (netlink-packet-*, neli): three request
//! kinds per family are needed, and the static /init should not carry a typed tree of
//! every netlink message.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub const NETLINK_ROUTE: i32 = 0;
pub const NETLINK_GENERIC: i32 = 16;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_CREATE: u16 = 0x400;
/// The attribute type without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = !(1 << 15 | 1 << 14);
const HEADER_LEN: usize = 16;

/// Attributes of one level: (type, payload); nests are left as their raw payload.
pub type Attrs = Vec<(u16, Vec<u8>)>;

/// Builds one netlink message: nlmsghdr + family header + attributes (4-byte aligned).
#[derive(Debug, Clone)]
pub struct Message {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Message {
    /// `header` is the family's fixed header (its length must be a multiple of 4).
    pub fn new(kind: u16, flags: u16, seq: u32, header: &[u8]) -> Message {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it
        buf.extend_from_slice(header);
        let mut msg = Message { buf, nests: Vec::new() };
        msg.pad();
        msg
    }

    pub fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Message {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    pub fn attr_u32(&mut self, kind: u16, value: u32) -> &mut Message {
        self.attr(kind, &value.to_ne_bytes())
    }

    pub fn attr_u64(&mut self, kind: u16, value: u64) -> &mut Message {
        self.attr(kind, &value.to_ne_bytes())
    }

    /// Opens a nested attribute (closed by [`Message::end_nest`]). No NLA_F_NESTED flag,
    /// like libnl and nbd-client: the families VIVER uses parse nests leniently.
    pub fn begin_nest(&mut self, kind: u16) -> &mut Message {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self
    }

    pub fn end_nest(&mut self) -> &mut Message {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        while !self.nests.is_empty() {
            self.end_nest();
        }
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One message of a reply datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ack,
    /// A positive errno.
    Error(i32),
    Done,
    /// Any other message: its type and everything after the nlmsghdr (family header
    /// and attributes).
    Message {
        msg_type: u16,
        payload: Vec<u8>,
    },
}

/// Splits a received datagram into messages. Hostile or truncated input is an error.
pub fn parse_replies(data: &[u8]) -> Result<Vec<Reply>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < HEADER_LEN {
            return Err(format!("{} stray bytes after the last message", rest.len()));
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let msg_type = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < HEADER_LEN || len > rest.len() {
            return Err(format!("message length {len} with {} bytes left", rest.len()));
        }
        let body = &rest[HEADER_LEN..len];
        match msg_type {
            NLMSG_ERROR => {
                let code = body.get(0..4).ok_or("NLMSG_ERROR without an error code")?;
                let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
                // saturating: a hostile i32::MIN must not overflow the negation.
                out.push(if code == 0 { Reply::Ack } else { Reply::Error(code.saturating_neg()) });
            }
            NLMSG_DONE => out.push(Reply::Done),
            _ => out.push(Reply::Message { msg_type, payload: body.to_vec() }),
        }
        let advance = len.div_ceil(4) * 4;
        rest = rest.get(advance..).unwrap_or(&[]);
    }
    Ok(out)
}

/// Attributes of one level (the bytes after the family header, or a nest's payload).
pub fn parse_attrs(data: &[u8]) -> Result<Attrs, String> {
    let mut data = data;
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > data.len() {
            return Err(format!("attribute length {len} with {} bytes left", data.len()));
        }
        out.push((kind, data[4..len].to_vec()));
        data = data.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
    }
    Ok(out)
}

/// The first attribute `kind` as a u32 (native order).
pub fn attr_u32(attrs: &[(u16, Vec<u8>)], kind: u16) -> Option<u32> {
    let value = &attrs.iter().find(|(k, _)| *k == kind)?.1;
    Some(u32::from_ne_bytes(value.get(0..4)?.try_into().ok()?))
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("netlink socket: {0}")]
    Open(std::io::Error),
    #[error("netlink {what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    #[error("kernel refused {what}: {source}")]
    Refused { what: &'static str, source: std::io::Error },
    #[error("malformed netlink reply to {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

/// A netlink socket of one protocol, in the calling thread's network namespace.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    /// Opens a `protocol` socket whose receives time out after `timeout`.
    pub fn open(protocol: i32, timeout: Duration) -> Result<Socket, SocketError> {
        // SAFETY: plain socket(2) call; the returned fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if raw < 0 {
            return Err(SocketError::Open(std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let timeout = libc::timeval { tv_sec: timeout.as_secs() as libc::time_t, tv_usec: timeout.subsec_micros() as libc::suseconds_t };
        // SAFETY: the option value is a valid timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(SocketError::Open(std::io::Error::last_os_error()));
        }
        Ok(Socket { fd, seq: 1 })
    }

    /// The sequence number for the next request.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends one request and reads until its ACK, error or DONE (a dump ends with DONE);
    /// returns the other messages as (type, payload).
    pub fn transact(&mut self, msg: &[u8], what: &'static str) -> Result<Vec<(u16, Vec<u8>)>, SocketError> {
        // SAFETY: an all-zero sockaddr_nl is valid; nl_pid 0 addresses the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `addr` are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(SocketError::Io { what, source: std::io::Error::last_os_error() });
        }
        let mut collected = Vec::new();
        let mut buf = vec![0u8; 32 << 10];
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SocketError::Io { what, source: err });
            }
            let replies = parse_replies(&buf[..n as usize]).map_err(|detail| SocketError::Malformed { what, detail })?;
            for reply in replies {
                match reply {
                    Reply::Ack | Reply::Done => return Ok(collected),
                    Reply::Error(errno) => return Err(SocketError::Refused { what, source: std::io::Error::from_raw_os_error(errno) }),
                    Reply::Message { msg_type, payload } => collected.push((msg_type, payload)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_code_of_i32_min_is_no_overflow() {
        // Found by the nbd_request fuzz target: negating i32::MIN overflowed.
        let mut msg = vec![0u8; 20];
        msg[0..4].copy_from_slice(&20u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        assert!(matches!(parse_replies(&msg).as_deref(), Ok([Reply::Error(i32::MAX)])));
    }

    #[test]
    fn messages_round_trip_with_nests() {
        let mut m = Message::new(0x22, NLM_F_REQUEST, 5, &[1, 2, 3, 4]);
        m.attr_u32(1, 7).begin_nest(2).attr(3, b"ab").end_nest();
        let bytes = m.finish();
        assert_eq!(bytes.len() % 4, 0);
        let replies = parse_replies(&bytes).unwrap();
        let Reply::Message { msg_type, payload } = &replies[0] else { panic!("{replies:?}") };
        assert_eq!(*msg_type, 0x22);
        assert_eq!(&payload[..4], &[1, 2, 3, 4]);
        let attrs = parse_attrs(&payload[4..]).unwrap();
        assert_eq!(attr_u32(&attrs, 1), Some(7));
        assert_eq!(parse_attrs(&attrs[1].1).unwrap(), vec![(3, b"ab".to_vec())]);
    }

    #[test]
    fn refuses_truncated_input() {
        assert!(parse_replies(&[1, 2, 3]).is_err());
        let mut m = Message::new(0x22, 0, 1, &[]);
        m.attr_u32(1, 7);
        let mut bytes = m.finish();
        bytes[0] = 200;
        assert!(parse_replies(&bytes).is_err());
        assert!(parse_attrs(&[9, 0, 1, 0, 0]).is_err());
    }

    /// In a fresh network namespace (needs CAP_SYS_ADMIN; skipped without): a dump of
    /// links ends in DONE and lists lo.
    #[test]
    fn dumps_links() {
        let got = std::thread::spawn(|| {
            // SAFETY: unshare of this thread's network namespace only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            let mut sock = Socket::open(NETLINK_ROUTE, Duration::from_secs(5)).ok()?;
            let seq = sock.next_seq();
            let msg = Message::new(18 /* RTM_GETLINK */, NLM_F_REQUEST | NLM_F_DUMP, seq, &[0u8; 16]).finish();
            sock.transact(&msg, "dump").ok()
        })
        .join()
        .unwrap();
        if let Some(links) = got {
            assert_eq!(links.len(), 1, "a new namespace has only lo");
            assert_eq!(links[0].0, 16 /* RTM_NEWLINK */);
        }
    }
}

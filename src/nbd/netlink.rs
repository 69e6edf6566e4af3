//! The kernel NBD driver's generic netlink interface (`<linux/nbd-netlink.h>`): connect a
//! device to sockets we hold, reconfigure it with a new socket, disconnect it.
//!
//! Hand-written on a raw `NETLINK_GENERIC` socket: the family id of "nbd" is resolved
//! with `CTRL_CMD_GETFAMILY`, then each command is one request answered by the kernel's
//! reply (CONNECT answers with the device index) and an ACK or an error.

use crate::sys::netlink::{self as nl, Message as NlMessage, Socket, SocketError, NETLINK_GENERIC, NLM_F_ACK, NLM_F_REQUEST};
use std::os::fd::RawFd;
use std::time::Duration;

pub use crate::sys::netlink::{parse_attrs, Attrs};

// <linux/genetlink.h>
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

// <linux/nbd-netlink.h>
pub const NBD_GENL_FAMILY_NAME: &str = "nbd";
pub const NBD_GENL_VERSION: u8 = 1;
pub const NBD_CMD_CONNECT: u8 = 1;
pub const NBD_CMD_DISCONNECT: u8 = 2;
pub const NBD_CMD_RECONFIGURE: u8 = 3;
pub const NBD_ATTR_INDEX: u16 = 1;
pub const NBD_ATTR_SIZE_BYTES: u16 = 2;
pub const NBD_ATTR_BLOCK_SIZE_BYTES: u16 = 3;
pub const NBD_ATTR_TIMEOUT: u16 = 4;
pub const NBD_ATTR_SERVER_FLAGS: u16 = 5;
pub const NBD_ATTR_CLIENT_FLAGS: u16 = 6;
pub const NBD_ATTR_SOCKETS: u16 = 7;
pub const NBD_ATTR_DEAD_CONN_TIMEOUT: u16 = 8;
pub const NBD_SOCK_ITEM: u16 = 1;
pub const NBD_SOCK_FD: u16 = 1;

// <linux/nbd.h>: transmission flags the "server" (we) announce.
pub const NBD_FLAG_HAS_FLAGS: u64 = 1 << 0;
pub const NBD_FLAG_READ_ONLY: u64 = 1 << 1;
pub const NBD_FLAG_SEND_FLUSH: u64 = 1 << 2;
pub const NBD_FLAG_CAN_MULTI_CONN: u64 = 1 << 8;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink {what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    #[error("no generic netlink family \"nbd\" (is nbd.ko loaded?): {0}")]
    NoFamily(std::io::Error),
    #[error("kernel refused {what}: {source}")]
    Refused { what: &'static str, source: std::io::Error },
    #[error("malformed netlink reply to {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

/// How a device is to be connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectConfig {
    /// `/dev/nbdN`'s N; `None` lets the kernel pick (it answers with the index).
    pub index: Option<u32>,
    pub size_bytes: u64,
    pub block_size: u64,
    /// Seconds a request may take before the kernel gives up on the socket; 0 = never
    /// (the kernel then only warns and keeps waiting: a lost link stalls reads).
    pub timeout: u64,
    /// Seconds the kernel waits for a new socket (RECONFIGURE) after the old one died.
    pub dead_conn_timeout: u64,
    pub server_flags: u64,
    pub client_flags: u64,
}

impl ConnectConfig {
    /// A read-only device of `size` bytes with the flags VIVER's server supports.
    pub fn read_only(index: Option<u32>, size: u64) -> ConnectConfig {
        ConnectConfig {
            index,
            size_bytes: size,
            block_size: if size % 4096 == 0 { 4096 } else { 512 },
            timeout: 0,
            dead_conn_timeout: 3600,
            server_flags: NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_FLUSH,
            client_flags: 0,
        }
    }
}

/// A generic netlink message: nlmsghdr + genlmsghdr (command, version) + attributes,
/// built with the shared codec of [`crate::sys::netlink`].
pub struct Message;

impl Message {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(family: u16, flags: u16, seq: u32, cmd: u8, version: u8) -> NlMessage {
        NlMessage::new(family, flags, seq, &[cmd, version, 0, 0])
    }
}

/// The CTRL_CMD_GETFAMILY request for `name`.
pub fn get_family_message(seq: u32, name: &str) -> Vec<u8> {
    let mut msg = Message::new(GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, seq, CTRL_CMD_GETFAMILY, 1);
    let mut text = name.as_bytes().to_vec();
    text.push(0);
    msg.attr(CTRL_ATTR_FAMILY_NAME, &text);
    msg.finish()
}

/// NBD_CMD_CONNECT with one socket per fd in `socks`.
pub fn connect_message(family: u16, seq: u32, config: &ConnectConfig, socks: &[RawFd]) -> Vec<u8> {
    let mut msg = Message::new(family, NLM_F_REQUEST | NLM_F_ACK, seq, NBD_CMD_CONNECT, NBD_GENL_VERSION);
    if let Some(index) = config.index {
        msg.attr_u32(NBD_ATTR_INDEX, index);
    }
    msg.attr_u64(NBD_ATTR_SIZE_BYTES, config.size_bytes)
        .attr_u64(NBD_ATTR_BLOCK_SIZE_BYTES, config.block_size)
        .attr_u64(NBD_ATTR_SERVER_FLAGS, config.server_flags)
        .attr_u64(NBD_ATTR_CLIENT_FLAGS, config.client_flags)
        .attr_u64(NBD_ATTR_DEAD_CONN_TIMEOUT, config.dead_conn_timeout);
    if config.timeout > 0 {
        msg.attr_u64(NBD_ATTR_TIMEOUT, config.timeout);
    }
    sockets(&mut msg, socks);
    msg.finish()
}

/// NBD_CMD_RECONFIGURE: hand device `index` new sockets after the old ones died.
pub fn reconfigure_message(family: u16, seq: u32, index: u32, socks: &[RawFd]) -> Vec<u8> {
    let mut msg = Message::new(family, NLM_F_REQUEST | NLM_F_ACK, seq, NBD_CMD_RECONFIGURE, NBD_GENL_VERSION);
    msg.attr_u32(NBD_ATTR_INDEX, index);
    sockets(&mut msg, socks);
    msg.finish()
}

pub fn disconnect_message(family: u16, seq: u32, index: u32) -> Vec<u8> {
    let mut msg = Message::new(family, NLM_F_REQUEST | NLM_F_ACK, seq, NBD_CMD_DISCONNECT, NBD_GENL_VERSION);
    msg.attr_u32(NBD_ATTR_INDEX, index);
    msg.finish()
}

fn sockets(msg: &mut NlMessage, socks: &[RawFd]) {
    msg.begin_nest(NBD_ATTR_SOCKETS);
    for fd in socks {
        msg.begin_nest(NBD_SOCK_ITEM);
        msg.attr_u32(NBD_SOCK_FD, *fd as u32);
        msg.end_nest();
    }
    msg.end_nest();
}

/// One message of a reply: its type and, for generic netlink messages, the attributes
/// after the genlmsghdr; for NLMSG_ERROR the errno (0 = ACK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ack,
    Error(i32),
    Done,
    Attrs { msg_type: u16, attrs: Attrs },
}

/// Splits a received datagram into generic netlink messages. Hostile or truncated input
/// is an error.
pub fn parse_replies(data: &[u8]) -> Result<Vec<Reply>, String> {
    nl::parse_replies(data)?
        .into_iter()
        .map(|reply| {
            Ok(match reply {
                nl::Reply::Ack => Reply::Ack,
                nl::Reply::Error(errno) => Reply::Error(errno),
                nl::Reply::Done => Reply::Done,
                nl::Reply::Message { msg_type, payload } => Reply::Attrs { msg_type, attrs: genl_attrs(&payload)? },
            })
        })
        .collect()
}

/// The attributes after the 4-byte genlmsghdr.
fn genl_attrs(payload: &[u8]) -> Result<Attrs, String> {
    parse_attrs(payload.get(4..).ok_or("generic netlink message without genlmsghdr")?)
}

/// A generic netlink socket with the nbd family resolved.
pub struct NbdNetlink {
    socket: Socket,
    family: u16,
}

impl From<SocketError> for NetlinkError {
    fn from(e: SocketError) -> NetlinkError {
        match e {
            SocketError::Open(e) => NetlinkError::Socket(e),
            SocketError::Io { what, source } => NetlinkError::Io { what, source },
            SocketError::Refused { what, source } => NetlinkError::Refused { what, source },
            SocketError::Malformed { what, detail } => NetlinkError::Malformed { what, detail },
        }
    }
}

impl NbdNetlink {
    /// Opens the socket and resolves the "nbd" family (nbd.ko must be loaded).
    pub fn open() -> Result<NbdNetlink, NetlinkError> {
        let socket = Socket::open(NETLINK_GENERIC, Duration::from_secs(10))?;
        let mut nl = NbdNetlink { socket, family: 0 };
        let seq = nl.socket.next_seq();
        let replies = nl.transact(&get_family_message(seq, NBD_GENL_FAMILY_NAME), "CTRL_CMD_GETFAMILY").map_err(|e| match e {
            NetlinkError::Refused { source, .. } => NetlinkError::NoFamily(source),
            other => other,
        })?;
        let family = replies
            .iter()
            .find_map(|(_, attrs)| attrs.iter().find(|(k, _)| *k == CTRL_ATTR_FAMILY_ID))
            .and_then(|(_, v)| Some(u16::from_ne_bytes(v.get(0..2)?.try_into().ok()?)))
            .ok_or(NetlinkError::Malformed { what: "CTRL_CMD_GETFAMILY", detail: "no CTRL_ATTR_FAMILY_ID".into() })?;
        nl.family = family;
        Ok(nl)
    }

    pub fn family(&self) -> u16 {
        self.family
    }

    /// Connects a device to `socks`; returns the device index the kernel used.
    pub fn connect(&mut self, config: &ConnectConfig, socks: &[RawFd]) -> Result<u32, NetlinkError> {
        let seq = self.socket.next_seq();
        let replies = self.transact(&connect_message(self.family, seq, config, socks), "NBD_CMD_CONNECT")?;
        let index = replies.iter().find_map(|(_, attrs)| nl::attr_u32(attrs, NBD_ATTR_INDEX));
        index.or(config.index).ok_or(NetlinkError::Malformed { what: "NBD_CMD_CONNECT", detail: "no NBD_ATTR_INDEX in the reply".into() })
    }

    pub fn reconfigure(&mut self, index: u32, socks: &[RawFd]) -> Result<(), NetlinkError> {
        let seq = self.socket.next_seq();
        self.transact(&reconfigure_message(self.family, seq, index, socks), "NBD_CMD_RECONFIGURE")?;
        Ok(())
    }

    pub fn disconnect(&mut self, index: u32) -> Result<(), NetlinkError> {
        let seq = self.socket.next_seq();
        self.transact(&disconnect_message(self.family, seq, index), "NBD_CMD_DISCONNECT")?;
        Ok(())
    }

    /// Sends one request and reads until its ACK or error (10 s receive timeout);
    /// returns the replies' attributes.
    fn transact(&mut self, msg: &[u8], what: &'static str) -> Result<Vec<(u16, Attrs)>, NetlinkError> {
        self.socket
            .transact(msg, what)?
            .into_iter()
            .map(|(msg_type, payload)| Ok((msg_type, genl_attrs(&payload).map_err(|detail| NetlinkError::Malformed { what, detail })?)))
            .collect()
    }
}

/// `/dev/nbd3` (or `nbd3`) -> 3.
pub fn device_index(device: &str) -> Option<u32> {
    let name = device.rsplit('/').next()?;
    name.strip_prefix("nbd")?.parse().ok()
}

/// Waits up to `deadline` for the kernel to say the device is connected: `/sys/block/nbdN/pid`
/// exists while a connection holds it (netlink-configured devices show the caller's pid).
pub fn wait_connected(index: u32, deadline: Duration) -> bool {
    let path = format!("/sys/block/nbd{index}/size");
    let until = std::time::Instant::now() + deadline;
    while std::time::Instant::now() < until {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if text.trim().parse::<u64>().is_ok_and(|s| s > 0) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::netlink::NLMSG_ERROR;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn get_family_is_byte_exact() {
        let msg = get_family_message(7, "nbd");
        // nlmsghdr: len 24 (16+4) + attr 8 = 28? 16 + 4 + (4+4) = 28.
        assert_eq!(
            hex(&msg),
            concat!(
                "1c000000", "1000", "0500", "07000000", "00000000", // nlmsghdr: 28, GENL_ID_CTRL, REQUEST|ACK, seq 7
                "03010000", // CTRL_CMD_GETFAMILY, version 1
                "0800", "0200", "6e626400", // CTRL_ATTR_FAMILY_NAME "nbd\0"
            )
        );
    }

    #[test]
    fn connect_is_byte_exact() {
        let config = ConnectConfig {
            index: Some(0),
            size_bytes: 0x1000_0000,
            block_size: 4096,
            timeout: 30,
            dead_conn_timeout: 120,
            server_flags: NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_FLUSH,
            client_flags: 0,
        };
        let msg = connect_message(0x22, 9, &config, &[5]);
        let expected = concat!(
            "74000000",
            "2200",
            "0500",
            "09000000",
            "00000000", // 116 bytes, family 0x22
            "01010000", // NBD_CMD_CONNECT v1
            "0800",
            "0100",
            "00000000", // INDEX 0
            "0c00",
            "0200",
            "0000001000000000", // SIZE_BYTES
            "0c00",
            "0300",
            "0010000000000000", // BLOCK_SIZE_BYTES 4096
            "0c00",
            "0500",
            "0700000000000000", // SERVER_FLAGS HAS_FLAGS|READ_ONLY|SEND_FLUSH
            "0c00",
            "0600",
            "0000000000000000", // CLIENT_FLAGS
            "0c00",
            "0800",
            "7800000000000000", // DEAD_CONN_TIMEOUT 120
            "0c00",
            "0400",
            "1e00000000000000", // TIMEOUT 30
            "1000",
            "0700", // SOCKETS (16)
            "0c00",
            "0100", // SOCK_ITEM (12)
            "0800",
            "0100",
            "05000000", // SOCK_FD 5
        );
        assert_eq!(hex(&msg), expected);
        assert_eq!(msg.len(), 0x74);
    }

    #[test]
    fn reconfigure_and_disconnect_are_byte_exact() {
        let msg = reconfigure_message(0x22, 3, 2, &[7, 8]);
        let expected = concat!(
            "38000000", "2200", "0500", "03000000", "00000000", "03010000", "0800", "0100", "02000000", "1c00", "0700", "0c00", "0100",
            "0800", "0100", "07000000", "0c00", "0100", "0800", "0100", "08000000",
        );
        assert_eq!(hex(&msg), expected);
        let msg = disconnect_message(0x22, 4, 1);
        assert_eq!(hex(&msg), concat!("1c000000", "2200", "0500", "04000000", "00000000", "02010000", "0800", "0100", "01000000"));
    }

    #[test]
    fn parses_ack_error_and_family_reply() {
        let mut data = Vec::new();
        // A CTRL reply: family id attr (u16 padded) and name.
        let mut m = Message::new(GENL_ID_CTRL, 0, 2, 1, 2);
        m.attr(CTRL_ATTR_FAMILY_NAME, b"nbd\0").attr(CTRL_ATTR_FAMILY_ID, &0x23u16.to_ne_bytes());
        data.extend(m.finish());
        // An error -19 (ENODEV).
        data.extend_from_slice(&36u32.to_ne_bytes());
        data.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        data.extend_from_slice(&[0; 10]);
        data.extend_from_slice(&(-19i32).to_ne_bytes());
        data.extend_from_slice(&[0; 16]);
        let replies = parse_replies(&data).unwrap();
        assert_eq!(replies.len(), 2);
        match &replies[0] {
            Reply::Attrs { attrs, .. } => assert_eq!(attrs[1], (CTRL_ATTR_FAMILY_ID, vec![0x23, 0])),
            other => panic!("{other:?}"),
        }
        assert_eq!(replies[1], Reply::Error(19));
    }

    #[test]
    fn hostile_replies_are_errors_not_panics() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut m = Message::new(0x22, 0, 1, 1, 1);
        m.attr_u32(NBD_ATTR_INDEX, 3).begin_nest(7).attr_u32(1, 2);
        let seed = m.finish();
        for _ in 0..5000 {
            let mut v = seed.clone();
            for _ in 0..4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = (rng as usize) % v.len();
                v[i] = (rng >> 32) as u8;
            }
            let cut = (rng as usize >> 8) % (v.len() + 1);
            let _ = parse_replies(&v[..cut]);
            let _ = parse_replies(&v);
        }
    }

    #[test]
    fn device_index_from_path() {
        assert_eq!(device_index("/dev/nbd0"), Some(0));
        assert_eq!(device_index("nbd12"), Some(12));
        assert_eq!(device_index("/dev/sda"), None);
        assert_eq!(device_index("/dev/nbd"), None);
    }
}

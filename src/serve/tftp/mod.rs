//! Read-only TFTP (RFC 1350, option negotiation of RFC 2347: blksize of RFC 2348, tsize and
//! timeout of RFC 2349, windowsize of RFC 7440) for the iPXE binaries only.
//! - [`wire`]: the packets.
//! - [`session`]: one transfer as a state machine (no sockets, unit-tested).
//! - [`server`]: the listening socket, one thread and socket per transfer, bounded.

pub mod server;
pub mod session;
pub mod wire;

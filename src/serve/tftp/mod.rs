//! Read-only TFTP (RFC 1350, option negotiation of RFC 2347: blksize 2348, tsize and
//! timeout 2349, windowsize 7440) for the iPXE binaries only.
//! - [`wire`]: packets.
//! - [`session`]: one transfer as a state machine (no sockets, unit-tested).
//! - [`server`]: the listening socket, one thread and socket per transfer, bounded.

pub mod server;
pub mod session;
pub mod wire;

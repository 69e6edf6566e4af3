//! DHCP and proxyDHCP for network-boot clients, safe on a LAN that has its own DHCP
//! (see the README's "Boot a LAN" for the rules).
//! The packet format is [`crate::net::dhcp::wire`], shared with the node's DHCP client.
//! - [`policy`]: client classification, boot file choice, the reply to each request.
//! - [`leases`]: the full-mode address pool, persisted in the state directory.
//! - [`probe`]: the segment survey and the rules that choose full, proxy or silent.
//! - [`server`]: sockets and threads.

pub mod leases;
pub mod policy;
pub mod probe;
pub mod server;

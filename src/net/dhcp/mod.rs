//! DHCP: one wire codec ([`wire`]) for the node's client ([`client`]) and the boot
//! server (`crate::serve::dhcp`).
pub mod client;
pub mod wire;

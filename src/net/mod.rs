//! The network of a node and of the boot server: bringing a link up and addressing it
//! (rtnetlink, [`link`]), interfaces, UDP sockets tied to one interface and the ARP
//! probe ([`iface`]), and DHCP: the one wire codec and the client ([`dhcp`]).
pub mod dhcp;
pub mod iface;
pub mod link;
pub mod unmanaged;

/// The client's old path (`net::dhcp_client::run`), kept so callers written against it
/// build; new code uses [`dhcp::client`].
pub use dhcp::client as dhcp_client;

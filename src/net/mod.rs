//! The node's network: bringing a link up, DHCP.
pub mod dhcp_client;
pub mod link;
pub mod unmanaged;

//! The node's network: bringing a link up, DHCP.

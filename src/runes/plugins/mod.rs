//! VIVER's built-in plugins (see [`super::builtin`] for how they run):
//! - [`ip_address`]: the address, netmask and gateway of the node's interface;
//! - [`tftp`]: the boot files PXE firmware asks TFTP for;
//! - [`dhcp`]: the boot server's DHCP configuration, put together from `ip-address` and
//!   `tftp` as the original's DHCP plugin did.

pub mod dhcp;
pub mod ip_address;
pub mod tftp;

use super::graph::Declaration;

fn declaration(plugin: &str, provides: &[&str], needs: &[&str]) -> Declaration {
    Declaration {
        plugin: plugin.into(),
        provides: provides.iter().map(|s| s.to_string()).collect(),
        needs: needs.iter().map(|s| s.to_string()).collect(),
    }
}

fn unknown_method(interface: &str, method: &str, known: &[&str]) -> String {
    format!("interface {interface} has no method {method:?} (it has: {})", known.join(", "))
}

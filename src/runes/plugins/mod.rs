//! VIVER's built-in plugins (see [`super::builtin`] for how they run):
//! - [`ip_address`]: the address, netmask and gateway of the node's interface;
//! - [`tftp`]: the boot files PXE firmware asks TFTP for;
//! - [`dhcp`]: the boot server's DHCP configuration, put together from `ip-address` and
//!   `tftp` as the original's DHCP plugin did.

pub mod dhcp;
pub mod ip_address;
pub mod tftp;

use super::builtin::Builtin;
use super::graph::Declaration;

/// The plugins VIVER carries, by name.
pub const NAMES: &[&str] = &["ip-address", "tftp", "dhcp"];

pub fn exists(name: &str) -> bool {
    NAMES.contains(&name)
}

/// A new instance of built-in plugin `name` (also what a restart gets).
pub fn create(name: &str) -> Option<Box<dyn Builtin>> {
    Some(match name {
        "ip-address" => Box::new(ip_address::IpAddress::default()),
        "tftp" => Box::new(tftp::Tftp::default()),
        "dhcp" => Box::new(dhcp::Dhcp::default()),
        _ => return None,
    })
}

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

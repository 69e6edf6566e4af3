//! `ip-address`: answers `get` with the node's interface, its IPv4 address, prefix,
//! netmask, MAC and the default gateway through it. The interface is the node's
//! (`--interface`), else the setting `interface`, else the first one with an IPv4
//! address other than loopback. Read at every request: an address may change.

use super::super::builtin::{Builtin, Context};
use super::super::graph::Declaration;
use crate::net::iface::{interfaces, Interface};
use serde_json::{json, Value};
use std::net::Ipv4Addr;

#[derive(Default)]
pub struct IpAddress {
    wanted: Option<String>,
}

/// The default gateway through `interface` from `/proc/net/route`'s text (destination
/// 0, gateway in host-endian hex, as the kernel prints it).
pub fn gateway_in(route_table: &str, interface: &str) -> Option<Ipv4Addr> {
    route_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 || fields[0] != interface || fields[1] != "00000000" {
            return None;
        }
        let raw = u32::from_str_radix(fields[2], 16).ok()?;
        // The kernel prints the address as the host-order u32 of network-order bytes.
        Some(Ipv4Addr::from(raw.to_le_bytes()))
    })
}

fn pick(all: Vec<Interface>, wanted: Option<&str>) -> Result<Interface, String> {
    match wanted {
        Some(name) => all.into_iter().find(|i| i.name == name).ok_or_else(|| format!("interface {name} has no IPv4 address")),
        None => {
            all.into_iter().find(|i| !i.address.is_loopback()).ok_or_else(|| "no interface with an IPv4 address besides loopback".into())
        }
    }
}

impl IpAddress {
    fn current(&self) -> Result<Value, String> {
        let all = interfaces().map_err(|e| format!("listing interfaces: {e}"))?;
        let interface = pick(all, self.wanted.as_deref())?;
        let gateway = std::fs::read_to_string("/proc/net/route").ok().and_then(|t| gateway_in(&t, &interface.name));
        let mac = interface.mac.map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"));
        Ok(json!({
            "interface": interface.name,
            "address": interface.address.to_string(),
            "prefix_len": interface.prefix_len,
            "netmask": interface.netmask().to_string(),
            "gateway": gateway.map(|g| g.to_string()),
            "mac": mac,
        }))
    }
}

impl Builtin for IpAddress {
    fn declaration(&self) -> Declaration {
        super::declaration("ip-address", &["ip-address"], &[])
    }

    fn start(&mut self, context: &Context) -> Result<(), String> {
        self.wanted = context.info.interface.clone().or_else(|| context.setting_str("interface").map(str::to_string));
        let now = self.current()?;
        let text = |key: &str| now[key].as_str().map(str::to_string).unwrap_or_else(|| "none".into());
        log::info!("ip-address: {} {}/{} gateway {}", text("interface"), text("address"), now["prefix_len"], text("gateway"));
        Ok(())
    }

    fn handle(&mut self, _context: &Context, interface: &str, method: &str, _params: &Value) -> Result<Value, String> {
        match method {
            "get" => self.current(),
            _ => Err(super::unknown_method(interface, method, &["get"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_gateway_is_read_from_the_route_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                     eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(gateway_in(table, "eth0"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(gateway_in(table, "eth1"), None);
    }

    #[test]
    fn loopback_is_found_when_named() {
        let lo = pick(interfaces().unwrap(), Some("lo")).unwrap();
        assert_eq!(lo.address, Ipv4Addr::LOCALHOST);
        assert!(pick(interfaces().unwrap(), Some("nonesuch0")).unwrap_err().contains("nonesuch0"));
    }
}

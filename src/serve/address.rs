//! The server's own address. An interface that has an IPv4 address is served on as it
//! is. A bare one (a boot-server node just started from a CD, `--address auto`) gets
//! one: link up, VIVER's DHCP client asks the LAN; when its DHCP server answers, that
//! lease is taken (and the survey then makes VIVER a proxyDHCP); when none answers
//! within the wait, the first address of the range VIVER will serve that nobody
//! answers ARP for (and no stored lease holds) is added with rtnetlink, and the rest
//! of the range is served in full mode.

use super::dhcp::leases;
use super::ServeError;
use crate::net::dhcp::client;
use crate::net::iface::{arp_in_use, Interface};
use crate::net::link;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// The range served (and the server's own address taken from) on a bare interface
/// when none is given: the private 10.77.0.0/24.
pub const DEFAULT_BARE_RANGE: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 254));
/// Addresses of the range tried for the server itself before giving up.
const MAX_SELF_PROBES: usize = 16;
/// One ARP probe's wait; each candidate is probed twice (RFC 5227 sends three probes
/// over 1-2 s: a boot server on a quiet LAN can afford less).
const ARP_WAIT: Duration = Duration::from_millis(400);

/// Where the server's address came from (the report's `address_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The interface had it.
    Interface,
    /// `--address IP` (on the interface).
    Given,
    /// The LAN's DHCP server gave it to VIVER's client.
    Dhcp,
    /// Taken from the served range after an ARP check: no DHCP server answered.
    SelfAssigned,
}

/// The self-assigned address, kept in the state directory: after a restart the
/// interface still holds it, and the same range must be served (leases stay valid).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Kept {
    pub interface: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub range: (Ipv4Addr, Ipv4Addr),
}

pub const KEPT_FILE: &str = "address.json";

impl Kept {
    pub fn load(state_dir: &Path) -> Option<Kept> {
        serde_json::from_str(&std::fs::read_to_string(state_dir.join(KEPT_FILE)).ok()?).ok()
    }

    fn save(&self, state_dir: &Path) {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        let path = state_dir.join(KEPT_FILE);
        if let Err(e) = std::fs::create_dir_all(state_dir).and_then(|_| std::fs::write(&path, text + "\n")) {
            log::warn!("serve: cannot keep the address in {}: {e}", path.display());
        }
    }
}

/// An interface that already has an address: if it is the one VIVER gave itself
/// before (same interface, same address), it stays "self-assigned" with its range.
pub fn existing(interface: Interface, given: bool, range: Option<(Ipv4Addr, Ipv4Addr)>, state_dir: &Path) -> Acquired {
    let kept = Kept::load(state_dir).filter(|k| k.interface == interface.name && k.address == interface.address);
    let text = format!("{}/{} on {}", interface.address, interface.prefix_len, interface.name);
    match kept {
        Some(kept) if !given => Acquired {
            interface,
            origin: Origin::SelfAssigned,
            reason: format!("{text}: self-assigned at an earlier start (kept in {KEPT_FILE})"),
            range: range.or(Some(kept.range)),
            lease_secs: None,
        },
        _ => Acquired { interface, origin: if given { Origin::Given } else { Origin::Interface }, reason: text, range, lease_secs: None },
    }
}

#[derive(Clone, Debug)]
pub struct Acquired {
    pub interface: Interface,
    pub origin: Origin,
    /// In words, for the report and the log.
    pub reason: String,
    /// The range to serve in full mode (the self-assigned case fixes it).
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Seconds the LAN's lease lasts (renewed at half: see [`renew`]).
    pub lease_secs: Option<u32>,
}

/// The smallest prefix length (at most 24) whose network holds both ends of a range.
pub fn covering_prefix(first: Ipv4Addr, last: Ipv4Addr) -> u8 {
    let differ = u32::from(first) ^ u32::from(last);
    let prefix = differ.leading_zeros().min(32) as u8;
    prefix.min(24)
}

/// Candidates for the server's own address: the range in order, without the network
/// and broadcast addresses of `prefix` and without addresses in `leased`.
pub fn candidates(first: Ipv4Addr, last: Ipv4Addr, prefix: u8, leased: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let mask = u32::from(crate::net::iface::prefix_mask(prefix));
    (u32::from(first)..=u32::from(last))
        .map(Ipv4Addr::from)
        .filter(|ip| {
            let host = u32::from(*ip) & !mask;
            host != 0 && host != !mask && !leased.contains(ip)
        })
        .take(MAX_SELF_PROBES)
        .collect()
}

pub struct Bare<'a> {
    pub name: &'a str,
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// How long VIVER's DHCP client waits for the LAN's server.
    pub wait: Duration,
    pub state_dir: &'a Path,
}

fn err(text: String) -> ServeError {
    ServeError::Interface(text)
}

/// Brings `bare.name` up and gives it an address (see the module doc).
pub fn acquire_bare(bare: &Bare) -> Result<Acquired, ServeError> {
    let name = bare.name;
    let index = link::index_of(name).map_err(|e| err(format!("{e}")))?;
    let mac = link::mac_of(name).ok_or_else(|| err(format!("{name} has no Ethernet address: cannot serve DHCP on it")))?;
    let mut rtnl = link::Rtnl::open().map_err(|e| err(format!("{name}: {e}")))?;
    rtnl.link_up(index).map_err(|e| err(format!("{name}: {e}")))?;
    log::info!("serve: {name} has no IPv4 address: asking the LAN's DHCP server ({:?})", bare.wait);
    match client::run(name, mac, bare.wait) {
        Ok(lease) => {
            link::configure(name, lease.address, lease.netmask, lease.router).map_err(|e| err(format!("{name}: {e}")))?;
            let prefix_len = link::prefix_len(lease.netmask);
            let reason = format!(
                "DHCP server {} gave {}/{prefix_len}{}{}",
                lease.server_id,
                lease.address,
                lease.router.map(|r| format!(", router {r}")).unwrap_or_default(),
                lease.lease_secs.map(|s| format!(", lease {s} s")).unwrap_or_default()
            );
            log::info!("serve: {name}: {reason}");
            Ok(Acquired {
                interface: Interface { name: name.to_string(), address: lease.address, prefix_len, mac: Some(mac), index },
                origin: Origin::Dhcp,
                reason,
                range: bare.range,
                lease_secs: lease.lease_secs,
            })
        }
        Err(client::RunError::NoLease { reason, .. }) => self_assign(bare, index, mac, &mut rtnl, &reason),
        Err(e) => Err(err(e.to_string())),
    }
}

fn self_assign(bare: &Bare, index: u32, mac: [u8; 6], rtnl: &mut link::Rtnl, why: &str) -> Result<Acquired, ServeError> {
    let name = bare.name;
    let (first, last) = bare.range.unwrap_or(DEFAULT_BARE_RANGE);
    let prefix_len = covering_prefix(first, last);
    let leased = leases::stored_addresses(&bare.state_dir.join("leases.json"));
    let probe = Interface { name: name.to_string(), address: Ipv4Addr::UNSPECIFIED, prefix_len, mac: Some(mac), index };
    let mut answered = Vec::new();
    for ip in candidates(first, last, prefix_len, &leased) {
        let used = arp_in_use(&probe, ip, ARP_WAIT).and_then(|a| if a { Ok(true) } else { arp_in_use(&probe, ip, ARP_WAIT) });
        match used {
            Ok(false) => {
                rtnl.add_address(index, ip, prefix_len).map_err(|e| err(format!("{name}: {e}")))?;
                let mut reason = format!("{why}: took {ip}/{prefix_len} from the range {first}-{last} (no host answered ARP for it)");
                if !answered.is_empty() {
                    reason.push_str(&format!("; in use: {}", answered.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(", ")));
                }
                log::warn!("serve: {name}: {reason}");
                Kept { interface: name.to_string(), address: ip, prefix_len, range: (first, last) }.save(bare.state_dir);
                return Ok(Acquired {
                    interface: Interface { name: name.to_string(), address: ip, prefix_len, mac: Some(mac), index },
                    origin: Origin::SelfAssigned,
                    reason,
                    range: Some((first, last)),
                    lease_secs: None,
                });
            }
            Ok(true) => answered.push(ip),
            Err(e) => return Err(err(format!("{name}: ARP probe of {ip}: {e}"))),
        }
    }
    Err(err(format!(
        "{why}, and every address tried in {first}-{last} is in use or leased ({}): give --range",
        answered.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(", ")
    )))
}

/// Keeps the LAN's lease of `address` on `name`: at half the lease time VIVER's client
/// asks again (a full exchange; servers give a client its address back) until `stop`.
/// A different address cannot be taken over by the running servers: that is logged as
/// an error (restart `viver serve` to move).
pub fn renew(name: String, mac: [u8; 6], address: Ipv4Addr, lease_secs: u32, stop: super::Stop) {
    let mut wait = Duration::from_secs(u64::from(lease_secs / 2).max(60));
    loop {
        let until = std::time::Instant::now() + wait;
        while std::time::Instant::now() < until {
            if stop.is_stopped() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        match client::run(&name, mac, Duration::from_secs(30)) {
            Ok(lease) if lease.address == address => {
                log::info!("serve: {name}: lease of {address} renewed by {} ({:?} s)", lease.server_id, lease.lease_secs);
                wait = Duration::from_secs(u64::from(lease.lease_secs.unwrap_or(lease_secs) / 2).max(60));
            }
            Ok(lease) => {
                log::error!("serve: {name}: the LAN's DHCP server now gives {} instead of {address}: restart viver serve", lease.address);
                wait = Duration::from_secs(60);
            }
            Err(e) => {
                log::warn!("serve: {name}: renewing the lease of {address}: {e}");
                wait = Duration::from_secs(60);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(covering_prefix(Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 254)), 24);
        assert_eq!(covering_prefix(Ipv4Addr::new(10, 77, 0, 10), Ipv4Addr::new(10, 77, 0, 20)), 24);
        assert_eq!(covering_prefix(Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 1, 200)), 23);
        assert_eq!(covering_prefix(Ipv4Addr::new(192, 168, 0, 1), Ipv4Addr::new(192, 168, 7, 1)), 21);
    }

    #[test]
    fn candidates_skip_network_broadcast_and_leases() {
        let c = candidates(Ipv4Addr::new(10, 77, 0, 0), Ipv4Addr::new(10, 77, 0, 3), 24, &[Ipv4Addr::new(10, 77, 0, 1)]);
        assert_eq!(c, vec![Ipv4Addr::new(10, 77, 0, 2), Ipv4Addr::new(10, 77, 0, 3)]);
        let c = candidates(Ipv4Addr::new(10, 77, 0, 250), Ipv4Addr::new(10, 77, 0, 255), 24, &[]);
        assert_eq!(c.last(), Some(&Ipv4Addr::new(10, 77, 0, 254)));
        assert_eq!(candidates(DEFAULT_BARE_RANGE.0, DEFAULT_BARE_RANGE.1, 24, &[]).len(), MAX_SELF_PROBES);
    }
}

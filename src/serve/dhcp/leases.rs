//! Full-mode address pool: a range of addresses, leases by MAC persisted as JSON in the
//! state directory (so a restart of the server keeps them), and a check that nobody
//! answers for an address before it is offered (an ARP probe by default).

use super::policy::AddressPool;
use crate::net::dhcp::wire::mac_text;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unanswered offers are held this long before the address may go to someone else.
const OFFER_HOLD_SECS: u64 = 60;
/// An address found in use (or declined) is skipped this long.
const IN_USE_HOLD_SECS: u64 = 600;
/// Most probes per DISCOVER: each costs the probe wait, the DHCP loop must not stall.
const MAX_PROBES: usize = 4;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub ip: Ipv4Addr,
    /// Unix seconds.
    pub expires: u64,
    pub bound: bool,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Stored {
    leases: BTreeMap<String, Lease>,
}

pub struct Leases {
    path: Option<PathBuf>,
    first: u32,
    last: u32,
    exclude: Vec<Ipv4Addr>,
    lease_secs: u64,
    leases: BTreeMap<String, Lease>,
    in_use: BTreeMap<Ipv4Addr, u64>,
    /// Is this address answered by some host? (ARP probe; a closure for the tests.)
    probe: Box<dyn FnMut(Ipv4Addr) -> bool + Send>,
    now: Box<dyn Fn() -> u64 + Send>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The addresses of the leases stored at `path` (none if it is missing or unreadable):
/// a server choosing its own address on a bare interface must not take a client's.
pub fn stored_addresses(path: &std::path::Path) -> Vec<Ipv4Addr> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<Stored>(&text).ok())
        .map(|stored| stored.leases.values().map(|l| l.ip).collect())
        .unwrap_or_default()
}

impl Leases {
    /// A pool over `first..=last` without `exclude` (the server's own address),
    /// loading `path` if it exists (an unreadable file is logged and started afresh).
    pub fn new(
        path: Option<PathBuf>,
        first: Ipv4Addr,
        last: Ipv4Addr,
        exclude: Vec<Ipv4Addr>,
        lease_secs: u32,
        probe: Box<dyn FnMut(Ipv4Addr) -> bool + Send>,
    ) -> Leases {
        let mut leases = BTreeMap::new();
        if let Some(path) = &path {
            match std::fs::read_to_string(path) {
                Ok(text) => match serde_json::from_str::<Stored>(&text) {
                    Ok(stored) => leases = stored.leases,
                    Err(e) => {
                        log::warn!("serve: leases {}: {e}; starting with none", path.display())
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("serve: leases {}: {e}; starting with none", path.display()),
            }
        }
        let (first, last) = (u32::from(first), u32::from(last));
        leases.retain(|_, l: &mut Lease| (first..=last).contains(&u32::from(l.ip)));
        Leases {
            path,
            first,
            last,
            exclude,
            lease_secs: u64::from(lease_secs),
            leases,
            in_use: BTreeMap::new(),
            probe,
            now: Box::new(unix_now),
        }
    }

    #[cfg(test)]
    fn with_clock(mut self, now: Box<dyn Fn() -> u64 + Send>) -> Leases {
        self.now = now;
        self
    }

    pub fn lease_of(&self, mac: [u8; 6]) -> Option<&Lease> {
        self.leases.get(&mac_text(&mac))
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip)) && !self.exclude.contains(&ip)
    }

    /// Held by another MAC (a live lease or offer)?
    fn taken_by_other(&self, mac: &str, ip: Ipv4Addr, now: u64) -> bool {
        self.leases.iter().any(|(m, l)| m != mac && l.ip == ip && l.expires > now)
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        let stored = Stored { leases: self.leases.clone() };
        let text = match serde_json::to_string_pretty(&stored) {
            Ok(text) => text,
            Err(e) => return log::warn!("serve: leases: {e}"),
        };
        let tmp = path.with_extension("json.tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)) {
            log::warn!("serve: cannot save leases to {}: {e}", path.display());
        }
    }

    /// Free for `mac`: in range, not held by another, not recently seen in use, and
    /// (when `probe`) nobody answers for it.
    fn usable(&mut self, mac: &str, ip: Ipv4Addr, now: u64, probes: &mut usize) -> bool {
        if !self.in_range(ip) || self.taken_by_other(mac, ip, now) {
            return false;
        }
        if self.in_use.get(&ip).is_some_and(|&until| until > now) {
            return false;
        }
        if *probes >= MAX_PROBES {
            return false;
        }
        *probes += 1;
        if (self.probe)(ip) {
            log::warn!("serve: {ip} answers on the segment though it is in the range: skipped");
            self.in_use.insert(ip, now + IN_USE_HOLD_SECS);
            return false;
        }
        true
    }
}

impl AddressPool for Leases {
    fn offer(&mut self, mac: [u8; 6], requested: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let key = mac_text(&mac);
        let now = (self.now)();
        // A client keeps its address (bound lease, even expired, while nobody took it).
        if let Some(lease) = self.leases.get(&key).cloned() {
            if self.in_range(lease.ip) && !self.taken_by_other(&key, lease.ip, now) {
                if !lease.bound || lease.expires < now {
                    let mut probes = 0;
                    if !self.usable(&key, lease.ip, now, &mut probes) {
                        self.leases.remove(&key);
                        return self.offer(mac, requested);
                    }
                }
                if let Some(l) = self.leases.get_mut(&key) {
                    l.expires = l.expires.max(now + OFFER_HOLD_SECS);
                }
                return Some(lease.ip);
            }
        }
        let mut probes = 0;
        let mut chosen = None;
        if let Some(ip) = requested {
            if self.usable(&key, ip, now, &mut probes) {
                chosen = Some(ip);
            }
        }
        if chosen.is_none() {
            for n in self.first..=self.last {
                let ip = Ipv4Addr::from(n);
                let free = self.in_range(ip)
                    && !self.leases.values().any(|l| l.ip == ip && l.expires > now)
                    && self.in_use.get(&ip).is_none_or(|&u| u <= now);
                if free && self.usable(&key, ip, now, &mut probes) {
                    chosen = Some(ip);
                    break;
                }
                if probes >= MAX_PROBES {
                    break;
                }
            }
        }
        let ip = chosen?;
        // Expired leases of others on this address are forgotten.
        self.leases.retain(|m, l| *m == key || l.ip != ip);
        self.leases.insert(key, Lease { ip, expires: now + OFFER_HOLD_SECS, bound: false });
        Some(ip)
    }

    fn commit(&mut self, mac: [u8; 6], ip: Ipv4Addr) -> bool {
        let key = mac_text(&mac);
        let now = (self.now)();
        if !self.in_range(ip) || self.taken_by_other(&key, ip, now) {
            return false;
        }
        if self.in_use.get(&ip).is_some_and(|&u| u > now) {
            return false;
        }
        self.leases.retain(|m, l| *m == key || l.ip != ip);
        self.leases.insert(key, Lease { ip, expires: now + self.lease_secs, bound: true });
        self.save();
        true
    }

    fn release(&mut self, mac: [u8; 6], ip: Ipv4Addr) {
        let key = mac_text(&mac);
        if self.leases.get(&key).is_some_and(|l| l.ip == ip || ip.is_unspecified()) {
            let was_bound = self.leases.get(&key).is_some_and(|l| l.bound);
            self.leases.remove(&key);
            if was_bound {
                self.save();
            }
        }
    }

    fn decline(&mut self, ip: Ipv4Addr) {
        let now = (self.now)();
        self.in_use.insert(ip, now + IN_USE_HOLD_SECS);
        let before = self.leases.len();
        self.leases.retain(|_, l| l.ip != ip);
        if self.leases.len() != before {
            self.save();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn pool(path: Option<PathBuf>, busy: Vec<Ipv4Addr>) -> Leases {
        Leases::new(path, ip(10), ip(12), vec![ip(11)], 3600, Box::new(move |a| busy.contains(&a)))
    }

    #[test]
    fn offers_skip_own_address_busy_hosts_and_run_out() {
        let mut p = pool(None, vec![ip(10)]);
        assert_eq!(p.offer([1; 6], None), Some(ip(12)));
        assert_eq!(p.offer([1; 6], None), Some(ip(12)), "same client, same address");
        assert_eq!(p.offer([2; 6], None), None, "10 answers ARP, 11 is the server, 12 held");
    }

    #[test]
    fn commit_persists_across_restart() {
        let dir = std::env::temp_dir().join(format!("viver-leases-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("leases.json");
        let _ = std::fs::remove_file(&path);
        let mut p = pool(Some(path.clone()), vec![]);
        assert_eq!(p.offer([1; 6], Some(ip(12))), Some(ip(12)));
        assert!(p.commit([1; 6], ip(12)));
        assert!(!p.commit([2; 6], ip(12)), "taken");
        assert!(!p.commit([2; 6], ip(11)), "the server's own");
        assert!(!p.commit([2; 6], ip(99)), "out of range");
        let mut again = pool(Some(path.clone()), vec![]);
        assert_eq!(again.lease_of([1; 6]).map(|l| l.ip), Some(ip(12)));
        assert_eq!(again.offer([2; 6], None), Some(ip(10)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn offers_expire_and_declines_hold() {
        let clock = Arc::new(Mutex::new(1000u64));
        let c = clock.clone();
        let mut p = pool(None, vec![]).with_clock(Box::new(move || *c.lock().unwrap()));
        assert_eq!(p.offer([1; 6], None), Some(ip(10)));
        assert_eq!(p.offer([2; 6], None), Some(ip(12)));
        *clock.lock().unwrap() += OFFER_HOLD_SECS + 1;
        assert_eq!(p.offer([3; 6], None), Some(ip(10)), "first offer expired");
        p.decline(ip(12));
        assert_eq!(p.offer([2; 6], None), None);
    }
}

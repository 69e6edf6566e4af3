//! Across the LAN: a node announces itself with DNS-SD over multicast DNS (RFC 6762,
//! RFC 6763) as an instance of [`SERVICE_TYPE`], its roles and the interfaces its
//! plugins provide in the TXT record, so `viver find` (and `avahi-browse -r
//! _viver._tcp`) list the nodes that provide an interface.
//!
//! The multicast DNS daemon joins its group on every interface of the network namespace
//! when it starts, so it runs only when asked for: a node announcing on a real
//! interface, or `viver find`.

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The DNS-SD service type of a VIVER node.
pub const SERVICE_TYPE: &str = "_viver._tcp.local.";

/// The longest TXT string (RFC 6763 6.1: one length byte).
const MAX_TXT: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("multicast DNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
    #[error("{0}")]
    Config(String),
}

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Announcement {
    pub node: String,
    pub roles: Vec<String>,
    /// The interfaces its plugins provide.
    pub provides: Vec<String>,
}

/// A node `viver find` heard of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Found {
    pub node: String,
    pub addresses: Vec<Ipv4Addr>,
    pub roles: Vec<String>,
    pub provides: Vec<String>,
    /// The mDNS host name it answers for (`NAME.local.`).
    pub host: String,
}

impl Announcement {
    /// The TXT record: `node`, `roles`, `provides` (comma-separated) and `version`.
    pub fn txt(&self) -> Result<Vec<(String, String)>, AnnounceError> {
        let entries = vec![
            ("node".to_string(), self.node.clone()),
            ("roles".to_string(), self.roles.join(",")),
            ("provides".to_string(), self.provides.join(",")),
            ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ];
        for (key, value) in &entries {
            if key.len() + 1 + value.len() > MAX_TXT {
                return Err(AnnounceError::Config(format!(
                    "the announcement's {key} is {} bytes, over DNS-SD's {MAX_TXT} per TXT string",
                    value.len()
                )));
            }
        }
        Ok(entries)
    }

    /// Reads an announcement back from a TXT record (the instance name if `node` is missing).
    pub fn from_txt(instance: &str, txt: &BTreeMap<String, String>) -> Announcement {
        let list =
            |key: &str| txt.get(key).map(|v| v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default();
        Announcement {
            node: txt.get("node").cloned().unwrap_or_else(|| instance.to_string()),
            roles: list("roles"),
            provides: list("provides"),
        }
    }
}

/// A multicast DNS daemon that only uses `interface`.
fn daemon_on(interface: Option<&str>) -> Result<ServiceDaemon, AnnounceError> {
    let daemon = ServiceDaemon::new()?;
    if let Some(interface) = interface {
        daemon.disable_interface(IfKind::All)?;
        daemon.disable_interface(IfKind::LoopbackV4)?;
        daemon.disable_interface(IfKind::LoopbackV6)?;
        daemon.enable_interface(IfKind::Name(interface.to_string()))?;
    }
    Ok(daemon)
}

/// A node's running announcement; dropping it says goodbye (records with TTL 0).
pub struct Announcer {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Announcer {
    /// Announces `what` on `interface` with `address`.
    pub fn start(what: &Announcement, interface: &str, address: Ipv4Addr) -> Result<Announcer, AnnounceError> {
        let txt = what.txt()?;
        let daemon = daemon_on(Some(interface))?;
        let host = format!("{}.local.", what.node);
        // Port 0: nothing on the node takes connections over the network yet.
        let mut info = ServiceInfo::new(SERVICE_TYPE, &what.node, &host, address.to_string(), 0, &txt[..])?;
        info.set_interfaces(vec![IfKind::Name(interface.to_string())]);
        let fullname = info.get_fullname().to_string();
        daemon.register(info)?;
        log::info!(
            "announcing {fullname} on {interface} ({address}): roles [{}], provides [{}]",
            what.roles.join(", "),
            what.provides.join(", ")
        );
        Ok(Announcer { daemon, fullname })
    }

    /// Withdraws the announcement and stops the daemon.
    pub fn stop(self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(Duration::from_secs(2));
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// Listens for `wait` and returns every node heard of that provides `interface`
/// (every node when `None`), by name.
pub fn find(interface: Option<&str>, on: Option<&str>, wait: Duration) -> Result<Vec<Found>, AnnounceError> {
    let daemon = daemon_on(on)?;
    let events = daemon.browse(SERVICE_TYPE)?;
    let deadline = Instant::now() + wait;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(service)) => {
                let txt: BTreeMap<String, String> =
                    service.txt_properties.iter().map(|p| (p.key().to_string(), p.val_str().to_string())).collect();
                let instance = service.fullname.strip_suffix(&format!(".{SERVICE_TYPE}")).unwrap_or(&service.fullname).to_string();
                let what = Announcement::from_txt(&instance, &txt);
                let mut addresses: Vec<Ipv4Addr> = service.get_addresses_v4().into_iter().collect();
                addresses.sort();
                found.insert(
                    service.fullname.clone(),
                    Found { node: what.node, addresses, roles: what.roles, provides: what.provides, host: service.host.clone() },
                );
            }
            Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                found.remove(&fullname);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_timeout(Duration::from_secs(2));
    }
    let mut nodes: Vec<Found> = found.into_values().filter(|f| interface.is_none_or(|i| f.provides.iter().any(|p| p == i))).collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_survives_its_txt_record() {
        let what = Announcement { node: "web1".into(), roles: vec!["web".into()], provides: vec!["greeting".into(), "ip-address".into()] };
        let txt: BTreeMap<String, String> = what.txt().unwrap().into_iter().collect();
        assert_eq!(txt["provides"], "greeting,ip-address");
        assert_eq!(Announcement::from_txt("ignored", &txt), what);
        let bare = Announcement::from_txt("web2", &BTreeMap::new());
        assert_eq!((bare.node.as_str(), bare.provides.len()), ("web2", 0));
    }

    #[test]
    fn a_txt_string_over_255_bytes_is_refused() {
        let what = Announcement { node: "n".into(), roles: vec![], provides: (0..40).map(|i| format!("interface-{i}")).collect() };
        let err = what.txt().unwrap_err().to_string();
        assert!(err.contains("provides is") && err.contains("over DNS-SD's 255"), "{err}");
    }
}

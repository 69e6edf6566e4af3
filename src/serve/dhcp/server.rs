//! The DHCP side of `viver serve`: the start-up survey, then three threads with
//! blocking sockets tied to the interface: port 67 (DHCP/proxyDHCP), port 4011 (PXE
//! boot server requests) and port 68 (passive watch for other servers, periodic
//! survey).

use super::leases::Leases;
use super::policy::{handle, AddressPool, BootPlan, Context, Dest, Lan, Mode, Port};
use super::probe::{decide, survey, tighten, Seen, Setting};
use crate::net::dhcp::wire::Packet;
use crate::net::iface::{arp_in_use, udp_socket, Interface};
use crate::serve::{ServeError, Stop};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct DhcpConfig {
    pub setting: Setting,
    pub interface: Interface,
    pub plan: BootPlan,
    /// Address range for full mode (None: chosen from the interface's private subnet).
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub router: Option<Ipv4Addr>,
    pub lease_secs: u32,
    pub state_dir: Option<PathBuf>,
    pub survey_wait: Duration,
    pub survey_interval: Duration,
    pub server_port: u16,
    pub client_port: u16,
    pub pxe_port: u16,
}

/// The DHCP state the report shows; changes go through [`DhcpStatus::set_mode`].
#[derive(Debug, serde::Serialize)]
pub struct DhcpState {
    pub setting: Setting,
    pub mode: Mode,
    pub reason: String,
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub seen: Vec<Seen>,
}

pub struct DhcpStatus {
    pub state: Mutex<DhcpState>,
    on_change: Box<dyn Fn(&DhcpState) + Send + Sync>,
}

impl DhcpStatus {
    pub fn new(setting: Setting, on_change: Box<dyn Fn(&DhcpState) + Send + Sync>) -> DhcpStatus {
        DhcpStatus {
            state: Mutex::new(DhcpState { setting, mode: Mode::Silent, reason: "starting".into(), range: None, seen: Vec::new() }),
            on_change,
        }
    }

    pub fn mode(&self) -> Mode {
        self.state.lock().map(|s| s.mode).unwrap_or(Mode::Silent)
    }

    fn update(&self, f: impl FnOnce(&mut DhcpState)) {
        if let Ok(mut state) = self.state.lock() {
            f(&mut state);
            (self.on_change)(&state);
        }
    }

    fn set_mode(&self, mode: Mode, reason: String) {
        log::warn!("serve: DHCP mode {mode:?}: {reason}");
        self.update(|s| {
            s.mode = mode;
            s.reason = reason;
        });
    }
}

fn is_private(ip: Ipv4Addr) -> bool {
    ip.is_private()
}

/// The full-mode range: the one given (checked against the interface's subnet), or
/// the upper half of a private subnet (at most 100 addresses).
pub fn choose_range(interface: &Interface, given: Option<(Ipv4Addr, Ipv4Addr)>) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let mask = u32::from(interface.netmask());
    let net = u32::from(interface.address) & mask;
    let broadcast = net | !mask;
    if let Some((a, b)) = given {
        let (a32, b32) = (u32::from(a), u32::from(b));
        if a32 > b32 {
            return Err(format!("--range {a}-{b}: first address after the last"));
        }
        if a32 & mask != net || b32 & mask != net || a32 == net || b32 == broadcast {
            return Err(format!("--range {a}-{b} is not inside {}/{} of {}", Ipv4Addr::from(net), interface.prefix_len, interface.name));
        }
        return Ok((a, b));
    }
    if !is_private(interface.address) {
        return Err(format!("{} has the public address {}: give --range to serve addresses from it", interface.name, interface.address));
    }
    let hosts = broadcast.saturating_sub(net).saturating_sub(1);
    if hosts < 4 {
        return Err(format!("{}/{} is too small for a range", interface.address, interface.prefix_len));
    }
    let first = net + 1 + hosts / 2;
    let last = (first + 99).min(broadcast - 1);
    Ok((Ipv4Addr::from(first), Ipv4Addr::from(last)))
}

fn open(interface: &Interface, port: u16) -> Result<UdpSocket, ServeError> {
    udp_socket(Ipv4Addr::UNSPECIFIED, port, Some(&interface.name))
        .map_err(|source| ServeError::Bind { what: format!("DHCP port {port} on {}", interface.name), source })
}

/// Runs the survey, settles the mode and starts the threads. With `--dhcp off` no
/// socket is opened.
pub fn start(config: DhcpConfig, status: Arc<DhcpStatus>, stop: Stop) -> Result<Vec<JoinHandle<()>>, ServeError> {
    if config.setting == Setting::Off {
        status.set_mode(Mode::Off, "--dhcp off".into());
        return Ok(Vec::new());
    }
    let mac = config.interface.mac.unwrap_or([0x02, 0x56, 0x49, 0x56, 0x45, 0x52]);
    let watch = open(&config.interface, config.client_port)?;
    let target = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, config.server_port));
    log::info!("serve: DHCP survey on {} ({:?})", config.interface.name, config.survey_wait);
    let seen = survey(&watch, target, mac, config.interface.address, config.survey_wait);
    let (mut mode, mut reason) = decide(config.setting, &seen);
    let mut range = None;
    if mode == Mode::Full {
        match choose_range(&config.interface, config.range) {
            Ok(r) => range = Some(r),
            Err(why) => {
                mode = if config.setting == Setting::Full { Mode::Silent } else { Mode::Proxy };
                reason = format!("{reason}, but {why}: {}", if mode == Mode::Proxy { "proxyDHCP only" } else { "no DHCP" });
            }
        }
    }
    status.update(|s| {
        s.seen = seen.clone();
        s.range = range;
    });
    status.set_mode(mode, reason);

    let (first, last) = range.unwrap_or((config.interface.address, config.interface.address));
    let probe_interface = config.interface.clone();
    let pool = Leases::new(
        config.state_dir.as_ref().map(|d| d.join("leases.json")),
        first,
        last,
        vec![config.interface.address],
        config.lease_secs,
        Box::new(move |ip| match arp_in_use(&probe_interface, ip, Duration::from_millis(300)) {
            Ok(used) => used,
            Err(e) => {
                log::warn!("serve: ARP probe of {ip} failed ({e}): address skipped");
                true
            }
        }),
    );
    let pool = Arc::new(Mutex::new(pool));
    let lan = Lan { netmask: config.interface.netmask(), router: config.router, lease_secs: config.lease_secs };
    let dhcp = open(&config.interface, config.server_port)?;
    let pxe = open(&config.interface, config.pxe_port)?;
    let mut threads = Vec::new();
    for (socket, port, name) in [(dhcp, Port::Dhcp, "viver-dhcp"), (pxe, Port::Pxe, "viver-pxe")] {
        let (config, status, pool, lan, stop) = (config.clone(), status.clone(), pool.clone(), lan.clone(), stop.clone());
        let mac = config.interface.mac;
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve_loop(&socket, port, &config, &status, &pool, &lan, mac, &stop))
            .map_err(|source| ServeError::Thread { source })?;
        threads.push(handle);
    }
    let (config2, status2) = (config.clone(), status.clone());
    let handle = std::thread::Builder::new()
        .name("viver-dhcp-watch".into())
        .spawn(move || watch_loop(&watch, target, mac, &config2, &status2, &stop))
        .map_err(|source| ServeError::Thread { source })?;
    threads.push(handle);
    Ok(threads)
}

#[allow(clippy::too_many_arguments)]
fn serve_loop(
    socket: &UdpSocket,
    port: Port,
    config: &DhcpConfig,
    status: &DhcpStatus,
    pool: &Mutex<Leases>,
    lan: &Lan,
    own_mac: Option<[u8; 6]>,
    stop: &Stop,
) {
    let mut buf = [0u8; 1500];
    let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
    loop {
        if stop.is_stopped() {
            return;
        }
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                log::warn!("serve: DHCP receive: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let packet = match Packet::parse(&buf[..n]) {
            Ok(p) => p,
            Err(e) => {
                log::debug!("serve: DHCP packet of {n} bytes from {from} refused: {e}");
                continue;
            }
        };
        let mode = status.mode();
        let outcome = {
            let Ok(mut pool) = pool.lock() else { continue };
            let ctx = Context { mode, plan: &config.plan, lan, own_mac };
            handle(&packet, port, &ctx, &mut *pool as &mut dyn AddressPool)
        };
        match outcome.reply {
            Some((reply, dest)) => {
                let to = match dest {
                    Dest::Broadcast => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, config.client_port)),
                    Dest::Unicast(ip, 68) => SocketAddr::V4(SocketAddrV4::new(ip, config.client_port)),
                    Dest::Unicast(ip, p) => SocketAddr::V4(SocketAddrV4::new(ip, p)),
                    Dest::Source => from,
                };
                log::info!("serve: DHCP {}", outcome.note);
                if let Err(e) = socket.send_to(&reply.encode(), to) {
                    log::warn!("serve: DHCP reply to {to}: {e}");
                }
            }
            None => log::debug!("serve: DHCP {}", outcome.note),
        }
    }
}

/// Port 68: other servers' offers and acks (to anyone) are watched all the time; a
/// survey DISCOVER goes out every `survey_interval`.
fn watch_loop(socket: &UdpSocket, target: SocketAddr, mac: [u8; 6], config: &DhcpConfig, status: &DhcpStatus, stop: &Stop) {
    let mut next_survey = Instant::now() + config.survey_interval;
    let mut buf = [0u8; 1500];
    loop {
        if stop.is_stopped() {
            return;
        }
        let now = Instant::now();
        let seen = if now >= next_survey {
            next_survey = now + config.survey_interval;
            survey(socket, target, mac, config.interface.address, config.survey_wait)
        } else {
            let _ = socket.set_read_timeout(Some((next_survey - now).clamp(Duration::from_millis(10), Duration::from_millis(500))));
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => Packet::parse(&buf[..n])
                    .ok()
                    .and_then(|p| super::probe::observe(&p, from, config.interface.address))
                    .into_iter()
                    .collect(),
                Err(_) => Vec::new(),
            }
        };
        for s in seen {
            let current = status.mode();
            let known = status.state.lock().map(|st| st.seen.contains(&s)).unwrap_or(true);
            if !known {
                status.update(|st| st.seen.push(s.clone()));
            }
            if let Some((mode, reason)) = tighten(config.setting, current, &s) {
                status.set_mode(mode, reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(addr: [u8; 4], prefix: u8) -> Interface {
        Interface { name: "br0".into(), address: Ipv4Addr::from(addr), prefix_len: prefix, mac: None, index: 1 }
    }

    #[test]
    fn ranges() {
        assert_eq!(choose_range(&iface([10, 77, 0, 1], 24), None), Ok((Ipv4Addr::new(10, 77, 0, 128), Ipv4Addr::new(10, 77, 0, 227))));
        assert_eq!(choose_range(&iface([192, 168, 5, 1], 29), None), Ok((Ipv4Addr::new(192, 168, 5, 4), Ipv4Addr::new(192, 168, 5, 6))));
        assert!(choose_range(&iface([8, 8, 0, 1], 24), None).unwrap_err().contains("public"));
        let r = (Ipv4Addr::new(10, 77, 0, 10), Ipv4Addr::new(10, 77, 0, 20));
        assert_eq!(choose_range(&iface([10, 77, 0, 1], 24), Some(r)), Ok(r));
        let outside = (Ipv4Addr::new(10, 78, 0, 10), Ipv4Addr::new(10, 78, 0, 20));
        assert!(choose_range(&iface([10, 77, 0, 1], 24), Some(outside)).unwrap_err().contains("not inside"));
    }
}

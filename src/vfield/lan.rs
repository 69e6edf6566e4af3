//! The LAN announcement on a socket: [`super::lsd`]'s datagrams sent to the group out of
//! every IPv4 interface but loopback (time to live 1: they never leave the segment), and
//! the group listened to on each of them.
//!
//! - [`announce`]: a node of a swarm announces it and hands every peer heard to `on_peer`
//!   (the swarm dials it), for as long as `stop` says no;
//! - [`search`]: a node that knows nothing asks the segment and collects what it hears.

use super::lsd::{Action, Datagram, Heard, Lsd, GROUP, MAX_DATAGRAM, PORT};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// How often interfaces are looked at again (a link that came up later joins the group).
const RESCAN_EVERY: Duration = Duration::from_secs(10);

/// A socket bound to the group's port, in the group on every interface found so far.
struct GroupSocket {
    socket: std::net::UdpSocket,
    /// Only this interface's address (a node listening on one address announces there).
    only: Option<Ipv4Addr>,
    joined: BTreeSet<Ipv4Addr>,
    scanned: Option<Instant>,
}

/// IPv4 addresses of the interfaces that are up, loopback excepted.
fn interface_addrs() -> Vec<Ipv4Addr> {
    if_addrs::get_if_addrs()
        .map(|list| {
            list.into_iter()
                .filter(|i| !i.is_loopback())
                .filter_map(|i| match i.ip() {
                    std::net::IpAddr::V4(v4) => Some(v4),
                    std::net::IpAddr::V6(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

impl GroupSocket {
    fn open(only: Option<Ipv4Addr>) -> Result<GroupSocket, String> {
        let failed = |what: &str, e: std::io::Error| format!("LAN announcement: {what}: {e}");
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| failed("socket", e))?;
        // Several nodes on one host (or a standard client beside VIVER) share the port.
        socket.set_reuse_address(true).map_err(|e| failed("SO_REUSEADDR", e))?;
        socket.set_multicast_ttl_v4(1).map_err(|e| failed("multicast TTL", e))?;
        // Two nodes on one host hear each other; a node's own datagrams carry its cookie.
        socket.set_multicast_loop_v4(true).map_err(|e| failed("multicast loop", e))?;
        socket.bind(&SocketAddr::from(([0, 0, 0, 0], PORT)).into()).map_err(|e| failed(&format!("binding port {PORT}"), e))?;
        socket.set_read_timeout(Some(Duration::from_millis(250))).map_err(|e| failed("timeout", e))?;
        let mut group = GroupSocket { socket: socket.into(), only, joined: BTreeSet::new(), scanned: None };
        group.rescan();
        Ok(group)
    }

    /// Joins the group on interfaces that appeared since the last scan.
    fn rescan(&mut self) {
        if self.scanned.is_some_and(|t| t.elapsed() < RESCAN_EVERY) {
            return;
        }
        self.scanned = Some(Instant::now());
        for addr in interface_addrs() {
            if !self.joined.contains(&addr) && self.only.is_none_or(|only| only == addr) {
                match self.socket.join_multicast_v4(&GROUP, &addr) {
                    Ok(()) => {
                        log::info!("V-FIELD: LAN announcement on {addr} ({GROUP}:{PORT})");
                        self.joined.insert(addr);
                    }
                    Err(e) => log::debug!("V-FIELD: LAN announcement: joining {GROUP} on {addr}: {e}"),
                }
            }
        }
    }

    /// Sends `datagram` to the group out of every joined interface.
    fn send(&self, datagram: &Datagram) {
        let bytes = datagram.encode();
        let to = SocketAddrV4::new(GROUP, PORT);
        for addr in &self.joined {
            if let Err(e) = SockRef::from(&self.socket).set_multicast_if_v4(addr).and_then(|_| self.socket.send_to(&bytes, to)) {
                log::debug!("V-FIELD: LAN announcement out of {addr}: {e}");
            }
        }
    }

    /// One datagram, or None when none came within the read timeout (or it was malformed).
    fn receive(&self) -> Option<(std::net::IpAddr, Datagram)> {
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        let (n, from) = self.socket.recv_from(&mut buf).ok()?;
        let from = from.ip();
        match Datagram::parse(&buf[..n]) {
            Ok(d) => Some((from, d)),
            Err(e) => {
                log::debug!("V-FIELD: LAN datagram from {from} refused: {e}");
                None
            }
        }
    }
}

/// A searcher's cookie: only needs to differ from the nodes' (theirs are their peer ids).
fn search_cookie() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    format!("viver-search-{:x}", t ^ u64::from(std::process::id()) << 40)
}

/// Announces the swarm `infohash` (manifest `image`) reachable on `port` while `running`
/// says so, on the interface with address `only` or on all, handing each peer heard to
/// `on_peer`. Starts a thread; errors are the socket's.
pub fn announce(
    only: Option<Ipv4Addr>,
    cookie: String,
    infohash: [u8; 20],
    image: &str,
    port: u16,
    running: impl Fn() -> bool + Send + 'static,
    on_peer: impl Fn(SocketAddr) + Send + 'static,
) -> Result<(), String> {
    let mut group = GroupSocket::open(only)?;
    let mut lsd = Lsd::announcing(cookie, port, infohash, image);
    let started = Instant::now();
    std::thread::Builder::new()
        .name("vfield-lan".into())
        .spawn(move || {
            while running() {
                group.rescan();
                let now = started.elapsed();
                if let Some(Action::Send(d)) = lsd.tick(now) {
                    group.send(&d);
                }
                let Some((from, d)) = group.receive() else { continue };
                for action in lsd.received(started.elapsed(), from, &d) {
                    match action {
                        Action::Send(d) => group.send(&d),
                        Action::Peer(heard) => on_peer(heard.addr),
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Asks the segment which swarms its nodes are in and listens for `wait`; returns every
/// node heard (one entry per address and swarm).
pub fn search(wait: Duration) -> Result<Vec<Heard>, String> {
    let group = GroupSocket::open(None)?;
    if group.joined.is_empty() {
        return Err("no network interface with an IPv4 address to search the LAN on".into());
    }
    let mut lsd = Lsd::searching(search_cookie());
    let started = Instant::now();
    let mut heard: Vec<Heard> = Vec::new();
    let mut sent = 0u32;
    while started.elapsed() < wait {
        // Three searches spread over the first seconds: a datagram may be lost.
        if sent < 3 && started.elapsed() >= Duration::from_millis(700) * sent {
            group.send(&lsd.search(0));
            sent += 1;
        }
        let Some((from, d)) = group.receive() else { continue };
        for action in lsd.received(started.elapsed(), from, &d) {
            if let Action::Peer(h) = action {
                if !heard.contains(&h) {
                    heard.push(h);
                }
            }
        }
    }
    Ok(heard)
}

//! A DHCP client for the initramfs (RFC 2131): DISCOVER, OFFER, REQUEST, ACK, with
//! retransmission and a hard deadline. The state machine ([`Client`]) does no I/O and
//! takes the time as an argument, so it is tested with packets; [`run`] drives it over a
//! UDP broadcast socket bound to one interface (replies asked broadcast: the interface
//! has no address yet).
//!
//! Option 61 (client id) is `01` + the MAC; the lease carries what netbooting needs:
//! `siaddr` (next server), the boot file (`file` field or option 67), option 66 and the
//! vendor-specific option 43. Packets are read and written by the one DHCP codec,
//! [`super::wire`] (also the boot server's): split options joined (RFC 3396), option 52
//! overload read.

use super::wire::{opt, MessageType, Packet};
use crate::net::iface::udp_socket;
use std::net::Ipv4Addr;
use std::time::Duration;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn c_string(b: &[u8]) -> Vec<u8> {
    b.iter().take_while(|c| **c != 0).copied().collect()
}

fn option_ip(p: &Packet, code: u8) -> Option<Ipv4Addr> {
    p.get(code).filter(|v| v.len() >= 4).map(ip)
}

/// What the node got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server_id: Ipv4Addr,
    pub lease_secs: Option<u32>,
    pub next_server: Option<Ipv4Addr>,
    pub boot_file: Option<String>,
    pub tftp_server: Option<String>,
    pub vendor: Option<Vec<u8>>,
}

impl Lease {
    fn from_packet(p: &Packet, server_id: Ipv4Addr) -> Lease {
        let text = |v: &[u8]| Some(String::from_utf8_lossy(&c_string(v)).into_owned()).filter(|s| !s.is_empty());
        Lease {
            address: p.yiaddr,
            netmask: option_ip(p, opt::SUBNET_MASK).unwrap_or(Ipv4Addr::new(255, 255, 255, 0)),
            router: option_ip(p, opt::ROUTER),
            dns: p.get(opt::DNS).map(|v| v.chunks_exact(4).map(ip).collect()).unwrap_or_default(),
            server_id,
            lease_secs: p.get(opt::LEASE_TIME).filter(|v| v.len() >= 4).map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            next_server: Some(p.siaddr).filter(|a| !a.is_unspecified()),
            boot_file: p.get(opt::BOOTFILE).and_then(text).or_else(|| text(&p.file)),
            tftp_server: p.get(opt::TFTP_SERVER).and_then(text),
            vendor: p.get(opt::VENDOR_SPECIFIC).map(<[u8]>::to_vec),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Selecting,
    Requesting { offer: Lease },
    Bound(Lease),
    Failed,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Broadcast this packet, then wait until the given time (since start).
    Send(Vec<u8>, Duration),
    /// Nothing to send; keep waiting until the given time.
    Wait(Duration),
    Bound(Lease),
    /// The deadline passed.
    Failed(String),
}

/// The DHCP exchange of one interface. Times are durations since the start.
pub struct Client {
    mac: [u8; 6],
    xid: u32,
    deadline: Duration,
    state: State,
    attempt: u32,
    next_send: Duration,
    started_request: Duration,
}

/// Waits between retransmissions: 1, 2, 4, 4, ... seconds (RFC 2131's 4..64 s is too slow
/// for a boot; the deadline bounds the total).
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.min(2))
}

impl Client {
    pub fn new(mac: [u8; 6], xid: u32, deadline: Duration) -> Client {
        Client { mac, xid, deadline, state: State::Selecting, attempt: 0, next_send: Duration::ZERO, started_request: Duration::ZERO }
    }

    /// The first DISCOVER.
    pub fn start(&mut self) -> Action {
        self.state = State::Selecting;
        self.attempt = 0;
        self.send(Duration::ZERO)
    }

    fn packet(&self, kind: MessageType, now: Duration) -> Packet {
        let mut p = Packet::request(kind, self.xid, self.mac);
        p.secs = now.as_secs().min(u64::from(u16::MAX)) as u16;
        // Packet::request asks broadcast replies (flags 0x8000): no address yet.
        let mut client_id = vec![1u8];
        client_id.extend_from_slice(&self.mac);
        p.set(opt::CLIENT_ID, client_id);
        p.set(
            opt::PARAMETER_LIST,
            vec![
                opt::SUBNET_MASK,
                opt::ROUTER,
                opt::DNS,
                opt::HOSTNAME,
                opt::LEASE_TIME,
                opt::VENDOR_SPECIFIC,
                opt::TFTP_SERVER,
                opt::BOOTFILE,
            ],
        );
        p.set(opt::VENDOR_CLASS, b"VIVER".to_vec());
        if let State::Requesting { offer } = &self.state {
            p.set(opt::REQUESTED_IP, offer.address.octets().to_vec());
            p.set(opt::SERVER_ID, offer.server_id.octets().to_vec());
        }
        p
    }

    fn send(&mut self, now: Duration) -> Action {
        if now >= self.deadline {
            self.state = State::Failed;
            return Action::Failed(format!("no DHCP lease within {:?}", self.deadline));
        }
        let kind = if matches!(self.state, State::Requesting { .. }) { MessageType::Request } else { MessageType::Discover };
        let packet = self.packet(kind, now).encode();
        self.next_send = (now + backoff(self.attempt)).min(self.deadline);
        self.attempt += 1;
        Action::Send(packet, self.next_send)
    }

    /// The wait ended without a useful packet.
    pub fn on_timeout(&mut self, now: Duration) -> Action {
        match &self.state {
            State::Bound(lease) => Action::Bound(lease.clone()),
            State::Failed => Action::Failed("failed".into()),
            _ if now < self.next_send => Action::Wait(self.next_send),
            State::Requesting { .. } if now >= self.started_request + Duration::from_secs(8) => {
                // The server went quiet after its offer: start over.
                self.state = State::Selecting;
                self.attempt = 0;
                self.send(now)
            }
            _ => self.send(now),
        }
    }

    /// A datagram arrived on port 68 (anything: other clients' traffic, junk).
    pub fn on_packet(&mut self, bytes: &[u8], now: Duration) -> Action {
        let Ok(p) = Packet::parse(bytes) else { return self.on_timeout(now) };
        if p.op != super::wire::BOOTREPLY || p.xid != self.xid || p.chaddr[..6] != self.mac {
            return self.on_timeout(now);
        }
        let Some(server_id) = option_ip(&p, opt::SERVER_ID) else { return self.on_timeout(now) };
        match (&self.state, p.message_type()) {
            (State::Selecting, Some(MessageType::Offer)) if !p.yiaddr.is_unspecified() => {
                self.state = State::Requesting { offer: Lease::from_packet(&p, server_id) };
                self.attempt = 0;
                self.started_request = now;
                self.send(now)
            }
            (State::Requesting { offer }, Some(MessageType::Ack)) if offer.server_id == server_id && !p.yiaddr.is_unspecified() => {
                let lease = Lease::from_packet(&p, server_id);
                self.state = State::Bound(lease.clone());
                Action::Bound(lease)
            }
            (State::Requesting { offer }, Some(MessageType::Nak)) if offer.server_id == server_id => {
                self.state = State::Selecting;
                self.attempt = 0;
                self.send(now)
            }
            _ => self.on_timeout(now),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("DHCP socket on {ifname}: {source}")]
    Socket { ifname: String, source: std::io::Error },
    #[error("DHCP on {ifname}: {reason}")]
    NoLease { ifname: String, reason: String },
}

/// Runs the exchange on `ifname` (which must be up) until bound or `deadline`.
pub fn run(ifname: &str, mac: [u8; 6], deadline: Duration) -> Result<Lease, RunError> {
    let sock_err = |source| RunError::Socket { ifname: ifname.to_string(), source };
    // Tied to the interface (SO_BINDTODEVICE): with several links up, each one's
    // exchange stays on its own segment.
    let socket = udp_socket(Ipv4Addr::UNSPECIFIED, CLIENT_PORT, Some(ifname)).map_err(sock_err)?;
    let started = std::time::Instant::now();
    let xid = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ started.elapsed().subsec_nanos() ^ std::process::id();
    let mut client = Client::new(mac, xid, deadline);
    let mut action = client.start();
    let mut buf = vec![0u8; 1500];
    loop {
        let until = match action {
            Action::Bound(lease) => return Ok(lease),
            Action::Failed(reason) => return Err(RunError::NoLease { ifname: ifname.to_string(), reason }),
            Action::Send(packet, until) => {
                if let Err(e) = socket.send_to(&packet, (Ipv4Addr::BROADCAST, SERVER_PORT)) {
                    log::warn!("dhcp: send on {ifname}: {e}");
                }
                until
            }
            Action::Wait(until) => until,
        };
        let wait = until.saturating_sub(started.elapsed()).max(Duration::from_millis(10));
        socket.set_read_timeout(Some(wait)).map_err(sock_err)?;
        action = match socket.recv_from(&mut buf) {
            Ok((n, _)) => client.on_packet(&buf[..n], started.elapsed()),
            Err(_) => client.on_timeout(started.elapsed()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x77, 0, 1];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

    fn reply(kind: MessageType, xid: u32, yiaddr: Ipv4Addr) -> Vec<u8> {
        let mut p = Packet::request(MessageType::Discover, xid, MAC).reply(kind);
        p.yiaddr = yiaddr;
        p.siaddr = SERVER;
        p.file = b"viver/initrd.img".to_vec();
        p.set(opt::SERVER_ID, SERVER.octets().to_vec());
        p.set(opt::SUBNET_MASK, vec![255, 255, 0, 0]);
        p.set(opt::ROUTER, SERVER.octets().to_vec());
        p.set(opt::DNS, vec![10, 77, 0, 1, 10, 77, 0, 2]);
        p.set(opt::LEASE_TIME, 3600u32.to_be_bytes().to_vec());
        p.set(opt::VENDOR_SPECIFIC, vec![6, 1, 8]);
        p.encode()
    }

    fn sent(action: &Action) -> Packet {
        match action {
            Action::Send(p, _) => Packet::parse(p).unwrap(),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    #[test]
    fn discover_offer_request_ack() {
        let mut c = Client::new(MAC, 42, Duration::from_secs(30));
        let d = sent(&c.start());
        assert_eq!(d.message_type(), Some(MessageType::Discover));
        assert_eq!(d.get(opt::CLIENT_ID), Some(&[1, 0x52, 0x54, 0, 0x77, 0, 1][..]));
        assert_eq!(d.flags, 0x8000);
        // Someone else's offer and junk are ignored.
        assert_eq!(
            c.on_packet(&reply(MessageType::Offer, 43, Ipv4Addr::new(10, 77, 0, 9)), Duration::from_millis(100)),
            Action::Wait(Duration::from_secs(1))
        );
        assert_eq!(c.on_packet(b"junk", Duration::from_millis(100)), Action::Wait(Duration::from_secs(1)));
        let r = sent(&c.on_packet(&reply(MessageType::Offer, 42, Ipv4Addr::new(10, 77, 0, 9)), Duration::from_millis(200)));
        assert_eq!(r.message_type(), Some(MessageType::Request));
        assert_eq!(r.get(opt::REQUESTED_IP), Some(&[10, 77, 0, 9][..]));
        assert_eq!(r.get(opt::SERVER_ID), Some(&SERVER.octets()[..]));
        match c.on_packet(&reply(MessageType::Ack, 42, Ipv4Addr::new(10, 77, 0, 9)), Duration::from_millis(300)) {
            Action::Bound(lease) => {
                assert_eq!(lease.address, Ipv4Addr::new(10, 77, 0, 9));
                assert_eq!(lease.netmask, Ipv4Addr::new(255, 255, 0, 0));
                assert_eq!(lease.router, Some(SERVER));
                assert_eq!(lease.dns.len(), 2);
                assert_eq!(lease.lease_secs, Some(3600));
                assert_eq!(lease.next_server, Some(SERVER));
                assert_eq!(lease.boot_file.as_deref(), Some("viver/initrd.img"));
                assert_eq!(lease.vendor, Some(vec![6, 1, 8]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retransmits_with_backoff_and_gives_up_at_the_deadline() {
        let mut c = Client::new(MAC, 7, Duration::from_secs(10));
        let mut times = Vec::new();
        let mut action = c.start();
        let mut now = Duration::ZERO;
        loop {
            match action {
                Action::Send(_, until) => {
                    times.push(now.as_secs());
                    now = until;
                }
                Action::Wait(until) => now = until,
                Action::Failed(_) => break,
                Action::Bound(_) => panic!("bound without a server"),
            }
            action = c.on_timeout(now);
        }
        assert_eq!(times, vec![0, 1, 3, 7]);
        assert_eq!(now, Duration::from_secs(10));
    }

    #[test]
    fn nak_starts_over() {
        let mut c = Client::new(MAC, 9, Duration::from_secs(30));
        c.start();
        sent(&c.on_packet(&reply(MessageType::Offer, 9, Ipv4Addr::new(10, 77, 0, 5)), Duration::ZERO));
        let again = sent(&c.on_packet(&reply(MessageType::Nak, 9, Ipv4Addr::UNSPECIFIED), Duration::from_secs(1)));
        assert_eq!(again.message_type(), Some(MessageType::Discover));
    }

    #[test]
    fn split_options_are_joined_and_long_values_split() {
        let mut p = Packet::parse(&reply(MessageType::Offer, 1, Ipv4Addr::new(1, 2, 3, 4))).unwrap();
        p.options.push((opt::BOOTFILE, vec![b'a'; 300]));
        let back = Packet::parse(&p.encode()).unwrap();
        assert_eq!(back.get(opt::BOOTFILE).map(<[u8]>::len), Some(300));
        assert_eq!(back, p);
    }

    #[test]
    fn mutated_packets_never_panic() {
        let seed = reply(MessageType::Ack, 5, Ipv4Addr::new(10, 0, 0, 2));
        let mut rng = 0xdead_beef_cafe_f00du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut c = Client::new(MAC, 5, Duration::from_secs(30));
        c.start();
        for _ in 0..20_000 {
            let mut v = seed.clone();
            for _ in 0..(next() % 8) {
                let i = (next() as usize) % v.len();
                v[i] = next() as u8;
            }
            let cut = (next() as usize) % (v.len() + 1);
            let _ = Packet::parse(&v[..cut]);
            let _ = c.on_packet(&v, Duration::from_secs(1));
        }
    }
}

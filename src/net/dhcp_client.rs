//! A DHCP client for the initramfs (RFC 2131): DISCOVER, OFFER, REQUEST, ACK, with
//! retransmission and a hard deadline. The state machine ([`Client`]) does no I/O and
//! takes the time as an argument, so it is tested with packets; [`run`] drives it over a
//! UDP broadcast socket bound to one interface (replies asked broadcast: the interface
//! has no address yet).
//!
//! Option 61 (client id) is `01` + the MAC; the lease carries what netbooting needs:
//! `siaddr` (next server), the boot file (`file` field or option 67), option 66 and the
//! vendor-specific option 43. Options split over several instances are joined (RFC 3396);
//! option 52 (overload of `file`/`sname`) is not read.

use std::net::Ipv4Addr;
use std::time::Duration;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
const FIXED_LEN: usize = 236;

pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

pub const OPT_SUBNET: u8 = 1;
pub const OPT_ROUTER: u8 = 3;
pub const OPT_DNS: u8 = 6;
pub const OPT_HOSTNAME: u8 = 12;
pub const OPT_VENDOR: u8 = 43;
pub const OPT_REQUESTED_IP: u8 = 50;
pub const OPT_LEASE: u8 = 51;
pub const OPT_MSG_TYPE: u8 = 53;
pub const OPT_SERVER_ID: u8 = 54;
pub const OPT_PARAMS: u8 = 55;
pub const OPT_CLASS_ID: u8 = 60;
pub const OPT_CLIENT_ID: u8 = 61;
pub const OPT_TFTP_SERVER: u8 = 66;
pub const OPT_BOOTFILE: u8 = 67;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    #[error("DHCP packet of {0} bytes is too short")]
    Short(usize),
    #[error("no DHCP magic cookie")]
    NoMagic,
    #[error("option {code} runs past the end of the packet")]
    Truncated { code: u8 },
}

/// A BOOTP/DHCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub op: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 16],
    pub sname: Vec<u8>,
    pub file: Vec<u8>,
    /// In order of first appearance; repeated codes concatenated.
    pub options: Vec<(u8, Vec<u8>)>,
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn c_string(b: &[u8]) -> Vec<u8> {
    b.iter().take_while(|c| **c != 0).copied().collect()
}

impl Packet {
    pub fn parse(b: &[u8]) -> Result<Packet, DhcpError> {
        if b.len() < FIXED_LEN + 4 {
            return Err(DhcpError::Short(b.len()));
        }
        if b[FIXED_LEN..FIXED_LEN + 4] != MAGIC {
            return Err(DhcpError::NoMagic);
        }
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&b[28..44]);
        let mut options: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut i = FIXED_LEN + 4;
        while i < b.len() {
            let code = b[i];
            match code {
                0 => i += 1,
                255 => break,
                _ => {
                    let len = *b.get(i + 1).ok_or(DhcpError::Truncated { code })? as usize;
                    let value = b.get(i + 2..i + 2 + len).ok_or(DhcpError::Truncated { code })?;
                    match options.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, v)) => v.extend_from_slice(value),
                        None => options.push((code, value.to_vec())),
                    }
                    i += 2 + len;
                }
            }
        }
        Ok(Packet {
            op: b[0],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            secs: u16::from_be_bytes([b[8], b[9]]),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: ip(&b[12..16]),
            yiaddr: ip(&b[16..20]),
            siaddr: ip(&b[20..24]),
            giaddr: ip(&b[24..28]),
            chaddr,
            sname: c_string(&b[44..108]),
            file: c_string(&b[108..236]),
            options,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; FIXED_LEN];
        b[0] = self.op;
        b[1] = 1; // Ethernet
        b[2] = 6;
        b[4..8].copy_from_slice(&self.xid.to_be_bytes());
        b[8..10].copy_from_slice(&self.secs.to_be_bytes());
        b[10..12].copy_from_slice(&self.flags.to_be_bytes());
        b[12..16].copy_from_slice(&self.ciaddr.octets());
        b[16..20].copy_from_slice(&self.yiaddr.octets());
        b[20..24].copy_from_slice(&self.siaddr.octets());
        b[24..28].copy_from_slice(&self.giaddr.octets());
        b[28..44].copy_from_slice(&self.chaddr);
        let n = self.sname.len().min(63);
        b[44..44 + n].copy_from_slice(&self.sname[..n]);
        let n = self.file.len().min(127);
        b[108..108 + n].copy_from_slice(&self.file[..n]);
        b.extend_from_slice(&MAGIC);
        for (code, value) in &self.options {
            // Long values split over several instances (RFC 3396).
            for part in value.chunks(255) {
                b.push(*code);
                b.push(part.len() as u8);
                b.extend_from_slice(part);
            }
            if value.is_empty() {
                b.extend_from_slice(&[*code, 0]);
            }
        }
        b.push(255);
        while b.len() < 300 {
            b.push(0); // BOOTP minimum, some relays insist
        }
        b
    }

    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options.iter().find(|(c, _)| *c == code).map(|(_, v)| v.as_slice())
    }

    fn option_ip(&self, code: u8) -> Option<Ipv4Addr> {
        self.option(code).filter(|v| v.len() >= 4).map(ip)
    }

    pub fn message_type(&self) -> Option<u8> {
        self.option(OPT_MSG_TYPE).and_then(|v| v.first().copied())
    }
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
            netmask: p.option_ip(OPT_SUBNET).unwrap_or(Ipv4Addr::new(255, 255, 255, 0)),
            router: p.option_ip(OPT_ROUTER),
            dns: p.option(OPT_DNS).map(|v| v.chunks_exact(4).map(ip).collect()).unwrap_or_default(),
            server_id,
            lease_secs: p.option(OPT_LEASE).filter(|v| v.len() >= 4).map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            next_server: Some(p.siaddr).filter(|a| !a.is_unspecified()),
            boot_file: p.option(OPT_BOOTFILE).and_then(text).or_else(|| text(&p.file)),
            tftp_server: p.option(OPT_TFTP_SERVER).and_then(text),
            vendor: p.option(OPT_VENDOR).map(<[u8]>::to_vec),
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

    fn packet(&self, kind: u8, now: Duration) -> Packet {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&self.mac);
        let mut client_id = vec![1u8];
        client_id.extend_from_slice(&self.mac);
        let mut options = vec![
            (OPT_MSG_TYPE, vec![kind]),
            (OPT_CLIENT_ID, client_id),
            (OPT_PARAMS, vec![OPT_SUBNET, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_LEASE, OPT_VENDOR, OPT_TFTP_SERVER, OPT_BOOTFILE]),
            (OPT_CLASS_ID, b"VIVER".to_vec()),
        ];
        if let State::Requesting { offer } = &self.state {
            options.push((OPT_REQUESTED_IP, offer.address.octets().to_vec()));
            options.push((OPT_SERVER_ID, offer.server_id.octets().to_vec()));
        }
        Packet {
            op: 1,
            xid: self.xid,
            secs: now.as_secs().min(u64::from(u16::MAX)) as u16,
            flags: 0x8000, // broadcast replies: no address yet
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            sname: Vec::new(),
            file: Vec::new(),
            options,
        }
    }

    fn send(&mut self, now: Duration) -> Action {
        if now >= self.deadline {
            self.state = State::Failed;
            return Action::Failed(format!("no DHCP lease within {:?}", self.deadline));
        }
        let kind = if matches!(self.state, State::Requesting { .. }) { REQUEST } else { DISCOVER };
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
        if p.op != 2 || p.xid != self.xid || p.chaddr[..6] != self.mac {
            return self.on_timeout(now);
        }
        let Some(server_id) = p.option_ip(OPT_SERVER_ID) else { return self.on_timeout(now) };
        match (&self.state, p.message_type()) {
            (State::Selecting, Some(OFFER)) if !p.yiaddr.is_unspecified() => {
                self.state = State::Requesting { offer: Lease::from_packet(&p, server_id) };
                self.attempt = 0;
                self.started_request = now;
                self.send(now)
            }
            (State::Requesting { offer }, Some(ACK)) if offer.server_id == server_id && !p.yiaddr.is_unspecified() => {
                let lease = Lease::from_packet(&p, server_id);
                self.state = State::Bound(lease.clone());
                Action::Bound(lease)
            }
            (State::Requesting { offer }, Some(NAK)) if offer.server_id == server_id => {
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
    use std::os::fd::AsRawFd;
    let sock_err = |source| RunError::Socket { ifname: ifname.to_string(), source };
    let socket = std::net::UdpSocket::bind(("0.0.0.0", CLIENT_PORT)).map_err(sock_err)?;
    socket.set_broadcast(true).map_err(sock_err)?;
    let name = ifname.as_bytes();
    // SAFETY: the option value is the interface name's bytes, of the length given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr() as *const libc::c_void,
            name.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(sock_err(std::io::Error::last_os_error()));
    }
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

    fn reply(kind: u8, xid: u32, yiaddr: Ipv4Addr) -> Vec<u8> {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&MAC);
        Packet {
            op: 2,
            xid,
            secs: 0,
            flags: 0x8000,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr,
            siaddr: SERVER,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            sname: Vec::new(),
            file: b"viver/initrd.img".to_vec(),
            options: vec![
                (OPT_MSG_TYPE, vec![kind]),
                (OPT_SERVER_ID, SERVER.octets().to_vec()),
                (OPT_SUBNET, vec![255, 255, 0, 0]),
                (OPT_ROUTER, SERVER.octets().to_vec()),
                (OPT_DNS, vec![10, 77, 0, 1, 10, 77, 0, 2]),
                (OPT_LEASE, 3600u32.to_be_bytes().to_vec()),
                (OPT_VENDOR, vec![6, 1, 8]),
            ],
        }
        .encode()
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
        assert_eq!(d.message_type(), Some(DISCOVER));
        assert_eq!(d.option(OPT_CLIENT_ID), Some(&[1, 0x52, 0x54, 0, 0x77, 0, 1][..]));
        assert_eq!(d.flags, 0x8000);
        // Someone else's offer and junk are ignored.
        assert_eq!(
            c.on_packet(&reply(OFFER, 43, Ipv4Addr::new(10, 77, 0, 9)), Duration::from_millis(100)),
            Action::Wait(Duration::from_secs(1))
        );
        assert_eq!(c.on_packet(b"junk", Duration::from_millis(100)), Action::Wait(Duration::from_secs(1)));
        let r = sent(&c.on_packet(&reply(OFFER, 42, Ipv4Addr::new(10, 77, 0, 9)), Duration::from_millis(200)));
        assert_eq!(r.message_type(), Some(REQUEST));
        assert_eq!(r.option(OPT_REQUESTED_IP), Some(&[10, 77, 0, 9][..]));
        assert_eq!(r.option(OPT_SERVER_ID), Some(&SERVER.octets()[..]));
        match c.on_packet(&reply(ACK, 42, Ipv4Addr::new(10, 77, 0, 9)), Duration::from_millis(300)) {
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
        sent(&c.on_packet(&reply(OFFER, 9, Ipv4Addr::new(10, 77, 0, 5)), Duration::ZERO));
        let again = sent(&c.on_packet(&reply(NAK, 9, Ipv4Addr::UNSPECIFIED), Duration::from_secs(1)));
        assert_eq!(again.message_type(), Some(DISCOVER));
    }

    #[test]
    fn split_options_are_joined_and_long_values_split() {
        let mut p = Packet::parse(&reply(OFFER, 1, Ipv4Addr::new(1, 2, 3, 4))).unwrap();
        p.options.push((OPT_BOOTFILE, vec![b'a'; 300]));
        let back = Packet::parse(&p.encode()).unwrap();
        assert_eq!(back.option(OPT_BOOTFILE).map(<[u8]>::len), Some(300));
        assert_eq!(back, p);
    }

    #[test]
    fn mutated_packets_never_panic() {
        let seed = reply(ACK, 5, Ipv4Addr::new(10, 0, 0, 2));
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

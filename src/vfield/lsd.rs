//! Finding peers on the same segment with no address at all: BitTorrent's Local Service
//! Discovery (BEP 14), one UDP datagram to the multicast group 239.192.152.143:6771:
//!
//! ```text
//! BT-SEARCH * HTTP/1.1\r\n
//! Host: 239.192.152.143:6771\r\n
//! Port: 6881\r\n
//! Infohash: 0f3a...(40 hex digits)\r\n
//! cookie: viver-1a2b3c4d\r\n
//! x-viver-image: 3f9c0a6b5e7d1c24\r\n
//! \r\n
//! \r\n
//! ```
//!
//! Every node announces the swarm it is in (the info hash as the wire carries it, see
//! [`super::meta::Meta::wire_hash`]) when it starts and then every [`ANNOUNCE_EVERY`];
//! standard clients do the same and find VIVER's nodes. VIVER adds two headers:
//! `x-viver-image` (the manifest id, so a person can tell swarms apart) and
//! `x-viver-search: 1` in a datagram without `Infohash`: a node that knows nothing yet
//! asks, and every node answers with its announcement (at most once per
//! [`ANSWER_EVERY`], so a storm of searches costs each node one datagram per interval).
//!
//! This module is the wire format and the state machine, pure; [`super::lan`] runs them
//! on a socket. A node never takes its own datagram for a peer: the cookie says whose it
//! is.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 192, 152, 143);
pub const PORT: u16 = 6771;
/// BEP 14: no more than once a minute per swarm; five is what clients do.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(300);
/// A node answers searches at most this often.
pub const ANSWER_EVERY: Duration = Duration::from_secs(2);
/// The longest datagram accepted (one Ethernet frame).
pub const MAX_DATAGRAM: usize = 1400;
/// Info hashes one announcement may carry.
const MAX_HASHES: usize = 16;

/// One LSD datagram.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Datagram {
    /// Where the sender accepts peer connections.
    pub port: u16,
    /// Info hashes (20 bytes each, as on the wire); empty in a search.
    pub infohashes: Vec<[u8; 20]>,
    pub cookie: Option<String>,
    /// `x-viver-image`: the manifest id of the swarm announced.
    pub image: Option<String>,
    /// `x-viver-search: 1`: the sender asks every node to announce (its `port` may be 0).
    pub search: bool,
}

fn hex20(hash: &[u8; 20]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex20(text: &str) -> Option<[u8; 20]> {
    if text.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A cookie is a short token of visible characters (it is echoed into logs).
fn token_ok(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_graphic())
}

impl Datagram {
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("BT-SEARCH * HTTP/1.1\r\nHost: {GROUP}:{PORT}\r\nPort: {}\r\n", self.port);
        for hash in &self.infohashes {
            text.push_str(&format!("Infohash: {}\r\n", hex20(hash)));
        }
        if let Some(cookie) = &self.cookie {
            text.push_str(&format!("cookie: {cookie}\r\n"));
        }
        if let Some(image) = &self.image {
            text.push_str(&format!("x-viver-image: {image}\r\n"));
        }
        if self.search {
            text.push_str("x-viver-search: 1\r\n");
        }
        text.push_str("\r\n\r\n");
        text.into_bytes()
    }

    /// Parses one datagram; anything else (another protocol on the group, a truncated or
    /// oversized one, a bad header) is an error, never a guess.
    pub fn parse(bytes: &[u8]) -> Result<Datagram, String> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(format!("{} bytes: longer than {MAX_DATAGRAM}", bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
        let mut lines = text.split("\r\n");
        if lines.next() != Some("BT-SEARCH * HTTP/1.1") {
            return Err("not a BT-SEARCH request".into());
        }
        let mut d = Datagram::default();
        let mut port = None;
        for line in lines.take_while(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').ok_or_else(|| format!("header line {line:?} has no colon"))?;
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "port" => port = Some(value.parse::<u16>().map_err(|_| format!("Port {value:?}"))?),
                "infohash" => {
                    let hash = parse_hex20(value).ok_or_else(|| format!("Infohash {value:?} is not 40 hex digits"))?;
                    if d.infohashes.len() == MAX_HASHES {
                        return Err(format!("more than {MAX_HASHES} info hashes"));
                    }
                    if !d.infohashes.contains(&hash) {
                        d.infohashes.push(hash);
                    }
                }
                "cookie" if token_ok(value) => d.cookie = Some(value.to_string()),
                "cookie" => return Err(format!("cookie {value:?}")),
                "x-viver-image" if value.len() == 16 && value.bytes().all(|b| b.is_ascii_hexdigit()) => d.image = Some(value.to_string()),
                "x-viver-image" => return Err(format!("x-viver-image {value:?} is not 16 hex digits")),
                "x-viver-search" => d.search = value == "1",
                // Host and whatever a later client adds.
                _ => {}
            }
        }
        d.port = port.ok_or("no Port header")?;
        // A searcher may not listen yet; an announcement names where peers connect.
        if d.port == 0 && !d.infohashes.is_empty() {
            return Err("Port 0 in an announcement".into());
        }
        if d.infohashes.is_empty() && !d.search {
            return Err("neither an Infohash nor a search".into());
        }
        Ok(d)
    }
}

/// A peer heard on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub addr: SocketAddr,
    pub infohash: [u8; 20],
    pub image: Option<String>,
}

/// What the state machine wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this datagram to the group.
    Send(Datagram),
    /// A peer to dial.
    Peer(Heard),
}

/// One node's LSD: what it announces (none while it only searches) and when it spoke last.
pub struct Lsd {
    cookie: String,
    announce: Option<Datagram>,
    last_announce: Option<Duration>,
    last_answer: Option<Duration>,
}

impl Lsd {
    /// A node in the swarm `infohash` (manifest `image`), accepting peers on `port`.
    pub fn announcing(cookie: String, port: u16, infohash: [u8; 20], image: &str) -> Lsd {
        let announce =
            Datagram { port, infohashes: vec![infohash], cookie: Some(cookie.clone()), image: Some(image.to_string()), search: false };
        Lsd { cookie, announce: Some(announce), last_announce: None, last_answer: None }
    }

    /// A node that knows no swarm yet and asks (`port`: where it will accept peers).
    pub fn searching(cookie: String) -> Lsd {
        Lsd { cookie, announce: None, last_announce: None, last_answer: None }
    }

    /// The search a joiner with nothing sends.
    pub fn search(&self, port: u16) -> Datagram {
        Datagram { port, infohashes: Vec::new(), cookie: Some(self.cookie.clone()), image: None, search: true }
    }

    /// Time passed: announce when due (at once on the first call).
    pub fn tick(&mut self, now: Duration) -> Option<Action> {
        let announce = self.announce.as_ref()?;
        if self.last_announce.is_some_and(|t| now.saturating_sub(t) < ANNOUNCE_EVERY) {
            return None;
        }
        self.last_announce = Some(now);
        Some(Action::Send(announce.clone()))
    }

    /// A datagram from `from` (its source address; the peer port is in the datagram).
    pub fn received(&mut self, now: Duration, from: IpAddr, d: &Datagram) -> Vec<Action> {
        let mut actions = Vec::new();
        if d.cookie.as_deref() == Some(self.cookie.as_str()) {
            return actions;
        }
        if d.search {
            if let Some(announce) = &self.announce {
                if self.last_answer.is_none_or(|t| now.saturating_sub(t) >= ANSWER_EVERY) {
                    self.last_answer = Some(now);
                    actions.push(Action::Send(announce.clone()));
                }
            }
        }
        for hash in &d.infohashes {
            let ours = self.announce.as_ref().map(|a| &a.infohashes);
            // Announcing: peers of our swarm only. Searching: every swarm heard.
            if d.port != 0 && ours.is_none_or(|ours| ours.contains(hash)) {
                actions.push(Action::Peer(Heard { addr: SocketAddr::new(from, d.port), infohash: *hash, image: d.image.clone() }));
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> [u8; 20] {
        [n; 20]
    }

    #[test]
    fn a_datagram_reads_back_as_written_and_standard_ones_are_read() {
        let d = Datagram {
            port: 6881,
            infohashes: vec![hash(0xab)],
            cookie: Some("viver-1".into()),
            image: Some("3f9c0a6b5e7d1c24".into()),
            search: false,
        };
        assert_eq!(Datagram::parse(&d.encode()).unwrap(), d);
        // As libtorrent writes it: two hashes, its own header case, no VIVER headers.
        let theirs = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 51413\r\nInfohash: {}\r\nInfohash: {}\r\ncookie: 7f3a\r\n\r\n\r\n",
            "ab".repeat(20),
            "CD".repeat(20)
        );
        let got = Datagram::parse(theirs.as_bytes()).unwrap();
        assert_eq!((got.port, got.infohashes, got.image, got.search), (51413, vec![hash(0xab), hash(0xcd)], None, false));
    }

    #[test]
    fn hostile_or_foreign_datagrams_are_refused() {
        let good = Datagram { port: 1, infohashes: vec![hash(1)], ..Default::default() }.encode();
        let text = String::from_utf8(good).unwrap();
        for bad in [
            String::new(),
            "M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\n\r\n".to_string(),
            text.replace("Port: 1", "Port: 0"),
            text.replace("Port: 1", "Port: 70000"),
            text.replace("Port: 1\r\n", ""),
            text.replace(&"01".repeat(20), &"01".repeat(19)),
            text.replace(&"01".repeat(20), &"zz".repeat(20)),
            text.replace("Host: 239.192.152.143:6771", "a line without a colon"),
            "BT-SEARCH * HTTP/1.1\r\nPort: 5\r\n\r\n".to_string(),
            format!("BT-SEARCH * HTTP/1.1\r\nPort: 5\r\ncookie: a b\r\nInfohash: {}\r\n\r\n", "01".repeat(20)),
            format!("BT-SEARCH * HTTP/1.1\r\nPort: 5\r\nx-viver-image: ../etc\r\nInfohash: {}\r\n\r\n", "01".repeat(20)),
            format!("{text}{}", " ".repeat(MAX_DATAGRAM)),
        ] {
            assert!(Datagram::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let many: String = (0..17).map(|i| format!("Infohash: {}\r\n", format!("{i:02x}").repeat(20))).collect();
        assert!(Datagram::parse(format!("BT-SEARCH * HTTP/1.1\r\nPort: 5\r\n{many}\r\n").as_bytes()).unwrap_err().contains("more than 16"));
    }

    #[test]
    fn a_node_announces_at_once_then_every_interval_and_answers_searches_sparingly() {
        let mut node = Lsd::announcing("viver-a".into(), 6881, hash(1), "3f9c0a6b5e7d1c24");
        assert!(matches!(node.tick(Duration::ZERO), Some(Action::Send(_))));
        assert_eq!(node.tick(Duration::from_secs(10)), None);
        assert!(node.tick(ANNOUNCE_EVERY).is_some());
        let joiner = Lsd::searching("viver-b".into());
        let search = joiner.search(7000);
        let from: IpAddr = "10.0.0.9".parse().unwrap();
        let now = Duration::from_secs(400);
        assert!(matches!(node.received(now, from, &search)[..], [Action::Send(ref d)] if d.infohashes == [hash(1)]));
        assert!(node.received(now + Duration::from_millis(500), from, &search).is_empty(), "a second search within the interval");
        assert_eq!(node.received(now + ANSWER_EVERY, from, &search).len(), 1);
        // Its own datagram looped back: nothing.
        let own = Datagram { cookie: Some("viver-a".into()), ..search.clone() };
        assert!(node.received(now + ANSWER_EVERY * 2, from, &own).is_empty());
    }

    #[test]
    fn peers_of_the_swarm_are_dialed_and_other_swarms_ignored_unless_searching() {
        let mut node = Lsd::announcing("viver-a".into(), 6881, hash(1), "3f9c0a6b5e7d1c24");
        let from: IpAddr = "10.0.0.7".parse().unwrap();
        let theirs = Datagram { port: 6999, infohashes: vec![hash(2), hash(1)], cookie: Some("x".into()), ..Default::default() };
        let peers = node.received(Duration::ZERO, from, &theirs);
        assert_eq!(peers, [Action::Peer(Heard { addr: "10.0.0.7:6999".parse().unwrap(), infohash: hash(1), image: None })]);
        let mut joiner = Lsd::searching("viver-b".into());
        assert_eq!(joiner.tick(Duration::ZERO), None, "a searcher announces nothing");
        assert_eq!(joiner.received(Duration::ZERO, from, &theirs).len(), 2, "a searcher hears every swarm");
    }

    #[test]
    fn mutated_datagrams_never_panic() {
        let seeds = [
            Datagram {
                port: 6881,
                infohashes: vec![hash(1), hash(2)],
                cookie: Some("viver-x".into()),
                image: Some("0123456789abcdef".into()),
                search: false,
            }
            .encode(),
            Lsd::searching("viver-s".into()).search(0).encode(),
        ];
        let mut node = Lsd::announcing("viver-a".into(), 6881, hash(1), "3f9c0a6b5e7d1c24");
        let mut state = 7u64;
        for round in 0..20_000u64 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut data = seeds[(state >> 60) as usize % seeds.len()].clone();
            for _ in 0..3 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (state >> 33) as usize % data.len();
                data[at] = (state >> 17) as u8;
            }
            if let Ok(d) = Datagram::parse(&data) {
                let _ = node.received(Duration::from_millis(round), "10.0.0.1".parse().unwrap(), &d);
            }
        }
    }
}

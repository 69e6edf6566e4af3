//! One read transfer as a state machine: option negotiation, windows of DATA, ACK
//! handling (duplicate ACKs ignored: no Sorcerer's Apprentice), retransmission on
//! timeout, 16-bit block numbers rolling over to 0 for files over 32 MB at 512 bytes.

use super::wire::{code, Packet};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_BLKSIZE: usize = 512;
pub const MAX_BLKSIZE: usize = 65464;
pub const MAX_WINDOW: u16 = 64;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_RETRIES: u32 = 5;

#[derive(Clone, Debug, PartialEq)]
pub struct Negotiated {
    pub blksize: usize,
    pub windowsize: u16,
    pub timeout: Duration,
    /// The options to confirm in an OACK (empty: no OACK, plain RFC 1350).
    pub oack: Vec<(String, String)>,
}

/// The options VIVER accepts, clamped to its limits; unknown ones are left out of the
/// OACK, which tells the client they were not taken (RFC 2347).
pub fn negotiate(options: &[(String, String)], size: u64) -> Negotiated {
    let mut n = Negotiated { blksize: DEFAULT_BLKSIZE, windowsize: 1, timeout: DEFAULT_TIMEOUT, oack: Vec::new() };
    for (name, value) in options {
        let number = value.trim().parse::<u64>().ok();
        match (name.as_str(), number) {
            ("blksize", Some(v)) if v >= 8 => {
                n.blksize = (v as usize).min(MAX_BLKSIZE);
                n.oack.push((name.clone(), n.blksize.to_string()));
            }
            ("tsize", Some(_)) => n.oack.push((name.clone(), size.to_string())),
            ("timeout", Some(v)) if (1..=255).contains(&v) => {
                n.timeout = Duration::from_secs(v);
                n.oack.push((name.clone(), v.to_string()));
            }
            ("windowsize", Some(v)) if v >= 1 => {
                n.windowsize = (v.min(u64::from(MAX_WINDOW))) as u16;
                n.oack.push((name.clone(), n.windowsize.to_string()));
            }
            _ => {}
        }
    }
    n
}

#[derive(Debug, PartialEq)]
pub enum Action {
    Send(Vec<Packet>),
    /// Nothing to send (a duplicate or stray packet).
    Wait,
    /// The last block is acknowledged.
    Done,
    /// The transfer ends: send these (maybe an ERROR) and stop.
    Abort(Vec<Packet>, String),
}

#[derive(Debug)]
pub struct Session {
    data: Arc<Vec<u8>>,
    pub negotiated: Negotiated,
    /// Number of the last block (1-based, 64-bit; the last block is shorter than blksize).
    last: u64,
    /// First block not yet acknowledged; 0 while the OACK waits for ACK 0.
    base: u64,
    retries: u32,
}

impl Session {
    pub fn new(data: Arc<Vec<u8>>, negotiated: Negotiated) -> Session {
        let last = data.len() as u64 / negotiated.blksize as u64 + 1;
        let base = if negotiated.oack.is_empty() { 1 } else { 0 };
        Session { data, negotiated, last, base, retries: 0 }
    }

    pub fn blocks(&self) -> u64 {
        self.last
    }

    fn block(&self, k: u64) -> Packet {
        let bs = self.negotiated.blksize as u64;
        let start = ((k - 1) * bs).min(self.data.len() as u64) as usize;
        let end = (k * bs).min(self.data.len() as u64) as usize;
        Packet::Data { block: (k % 65536) as u16, data: self.data.get(start..end).unwrap_or_default().to_vec() }
    }

    /// What to send now: the OACK, or the window starting at the first unacked block.
    pub fn current(&self) -> Vec<Packet> {
        if self.base == 0 {
            return vec![Packet::Oack { options: self.negotiated.oack.clone() }];
        }
        let end = (self.base + u64::from(self.negotiated.windowsize) - 1).min(self.last);
        (self.base..=end).map(|k| self.block(k)).collect()
    }

    pub fn start(&self) -> Action {
        Action::Send(self.current())
    }

    pub fn on_packet(&mut self, packet: Packet) -> Action {
        match packet {
            Packet::Ack { block } => {
                if self.base == 0 {
                    if block != 0 {
                        return Action::Wait;
                    }
                    self.base = 1;
                    self.retries = 0;
                    return Action::Send(self.current());
                }
                // The acked block among those sent: base-1 (a duplicate) ..= window end.
                let end = (self.base + u64::from(self.negotiated.windowsize) - 1).min(self.last);
                let acked = (self.base..=end).find(|k| (k % 65536) as u16 == block);
                match acked {
                    Some(k) if k == self.last => Action::Done,
                    Some(k) => {
                        self.base = k + 1;
                        self.retries = 0;
                        Action::Send(self.current())
                    }
                    None => Action::Wait,
                }
            }
            Packet::Error { code, message } => Action::Abort(Vec::new(), format!("client sent error {code}: {message}")),
            other => Action::Abort(
                vec![Packet::Error { code: code::ILLEGAL_OPERATION, message: "only ACKs expected".into() }],
                format!("unexpected {other:?}"),
            ),
        }
    }

    pub fn on_timeout(&mut self) -> Action {
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            return Action::Abort(
                vec![Packet::Error { code: code::UNDEFINED, message: "timeout".into() }],
                format!("no ACK after {MAX_RETRIES} retransmissions"),
            );
        }
        Action::Send(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn data_blocks(action: &Action) -> Vec<(u16, usize)> {
        match action {
            Action::Send(packets) => packets
                .iter()
                .filter_map(|p| match p {
                    Packet::Data { block, data } => Some((*block, data.len())),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn negotiation_clamps_and_skips_unknown() {
        let n =
            negotiate(&opts(&[("blksize", "100000"), ("tsize", "0"), ("windowsize", "500"), ("multicast", ""), ("timeout", "0")]), 1234);
        assert_eq!(n.blksize, MAX_BLKSIZE);
        assert_eq!(n.windowsize, MAX_WINDOW);
        assert_eq!(n.timeout, DEFAULT_TIMEOUT);
        assert_eq!(n.oack, opts(&[("blksize", "65464"), ("tsize", "1234"), ("windowsize", "64")]));
        assert!(negotiate(&opts(&[("blksize", "4")]), 1).oack.is_empty());
    }

    #[test]
    fn plain_transfer_ends_with_empty_block_on_exact_multiple() {
        let mut s = Session::new(Arc::new(vec![7; 1024]), negotiate(&[], 1024));
        assert_eq!(data_blocks(&s.start()), vec![(1, 512)]);
        assert_eq!(s.on_packet(Packet::Ack { block: 0 }), Action::Wait, "stray ack");
        assert_eq!(data_blocks(&s.on_packet(Packet::Ack { block: 1 })), vec![(2, 512)]);
        assert_eq!(s.on_packet(Packet::Ack { block: 1 }), Action::Wait, "duplicate ack ignored");
        assert_eq!(data_blocks(&s.on_packet(Packet::Ack { block: 2 })), vec![(3, 0)]);
        assert_eq!(s.on_packet(Packet::Ack { block: 3 }), Action::Done);
    }

    #[test]
    fn oack_then_windows_and_a_lost_block() {
        let mut s = Session::new(Arc::new(vec![1; 10 * 100 + 5]), negotiate(&opts(&[("blksize", "100"), ("windowsize", "4")]), 1005));
        assert!(matches!(s.start(), Action::Send(ref p) if matches!(p[0], Packet::Oack { .. })));
        assert_eq!(data_blocks(&s.on_packet(Packet::Ack { block: 0 })), vec![(1, 100), (2, 100), (3, 100), (4, 100)]);
        // Block 3 lost: the client acks 2; the window restarts at 3.
        assert_eq!(data_blocks(&s.on_packet(Packet::Ack { block: 2 })), vec![(3, 100), (4, 100), (5, 100), (6, 100)]);
        assert_eq!(data_blocks(&s.on_timeout()), vec![(3, 100), (4, 100), (5, 100), (6, 100)]);
        assert_eq!(data_blocks(&s.on_packet(Packet::Ack { block: 6 })), vec![(7, 100), (8, 100), (9, 100), (10, 100)]);
        assert_eq!(data_blocks(&s.on_packet(Packet::Ack { block: 10 })), vec![(11, 5)]);
        assert_eq!(s.on_packet(Packet::Ack { block: 11 }), Action::Done);
    }

    #[test]
    fn block_numbers_roll_over() {
        let mut s = Session::new(Arc::new(vec![0; 70000 * 8]), negotiate(&opts(&[("blksize", "8")]), 0));
        let mut last = None;
        let mut ack = 0u16; // first the OACK's ACK 0
        loop {
            match s.on_packet(Packet::Ack { block: ack }) {
                Action::Send(p) => match &p[0] {
                    Packet::Data { block, .. } => {
                        last = Some(*block);
                        ack = *block;
                    }
                    _ => unreachable!(),
                },
                Action::Done => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(last, Some((70001 % 65536) as u16));
    }

    #[test]
    fn gives_up_after_retries() {
        let mut s = Session::new(Arc::new(vec![0; 10]), negotiate(&[], 10));
        for _ in 0..MAX_RETRIES {
            assert!(matches!(s.on_timeout(), Action::Send(_)));
        }
        assert!(matches!(s.on_timeout(), Action::Abort(..)));
    }
}

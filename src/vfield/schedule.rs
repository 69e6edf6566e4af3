//! The chunk scheduler: which chunk to ask of which peer, next. Pure logic over time
//! given by the caller, so the same code runs in the daemon, in `viver vfield` and in the
//! simulation ([`super::sim`]).
//!
//! Order, as the boot needs it:
//! 1. chunks a read is blocked on, oldest first (and, once one has waited half a timeout
//!    at one peer, a second request elsewhere: a slow peer must not hold a boot up);
//! 2. the boot profile's chunks, in the order the recorded boot read them;
//! 3. background fill, rarest first (fewest holders among the known peers), ties broken
//!    by a per-node offset so that joiners spread over the image;
//! 4. endgame: when every wanted chunk is already requested, idle peers duplicate the
//!    oldest requests.
//!
//! A request not answered within `timeout` is taken back (a strike for the peer) and goes
//! elsewhere. Peers schedule themselves: no tracker decides for them (Kraken's lesson).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

pub type PeerKey = u64;

/// How far into the boot profile joiners spread their requests to a seed.
const PROFILE_WINDOW: usize = 32;

#[derive(Debug, Clone)]
pub struct Params {
    /// Chunks requested from one peer at a time.
    pub pipeline: usize,
    /// A request older than this is taken back.
    pub timeout: Duration,
    /// A node-specific number: where the fill scan starts (spreads joiners).
    pub spread: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params { pipeline: 2, timeout: Duration::from_secs(10), spread: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    No,
    Fill,
    /// Position in the boot profile.
    Profile(u32),
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Request {
        peer: PeerKey,
        index: u32,
    },
    /// Taken back after the timeout (or superseded): tell the peer.
    Cancel {
        peer: PeerKey,
        index: u32,
    },
}

#[derive(Debug, Default)]
struct Peer {
    has: Vec<bool>,
    /// Chunks in `has`.
    held: usize,
    choked: bool,
    /// Requested chunk -> when.
    inflight: BTreeMap<u32, Duration>,
    strikes: u32,
}

pub struct Scheduler {
    params: Params,
    count: usize,
    have: Vec<bool>,
    want: Vec<Want>,
    blocked: VecDeque<u32>,
    profile: Vec<u32>,
    /// Profile positions before this one are held (or no longer wanted).
    profile_cursor: usize,
    /// Known peers holding each chunk.
    holders: Vec<u32>,
    /// The same, counting only peers that do not hold every chunk.
    partial_holders: Vec<u32>,
    peers: HashMap<PeerKey, Peer>,
    /// Chunk -> peers it is requested from.
    inflight: HashMap<u32, Vec<PeerKey>>,
    /// Chunks in `inflight`, by index: the scans over every chunk ask this, not the map.
    requested: Vec<bool>,
    /// Peers that hold every chunk and are no node of the swarm (web seeds): counted as
    /// holders for reads, not for replicas.
    not_nodes: u32,
}

impl Scheduler {
    pub fn new(count: usize, params: Params) -> Scheduler {
        Scheduler {
            params,
            count,
            have: vec![false; count],
            want: vec![Want::No; count],
            blocked: VecDeque::new(),
            profile: Vec::new(),
            profile_cursor: 0,
            holders: vec![0; count],
            partial_holders: vec![0; count],
            peers: HashMap::new(),
            inflight: HashMap::new(),
            requested: vec![false; count],
            not_nodes: 0,
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn have(&self, index: u32) -> bool {
        self.have.get(index as usize).copied().unwrap_or(false)
    }

    /// Known peers that hold `index`.
    pub fn holders(&self, index: u32) -> u32 {
        self.holders.get(index as usize).copied().unwrap_or(0)
    }

    /// Nodes holding `index`: [`Scheduler::holders`] less the web seeds.
    pub fn node_holders(&self, index: u32) -> u32 {
        self.holders(index).saturating_sub(self.not_nodes)
    }

    /// Adds a web seed: a peer holding every chunk, asked like a seed, never counted as a
    /// replica.
    pub fn add_web_seed(&mut self, peer: PeerKey) {
        self.add_peer(peer, vec![true; self.count]);
        self.set_choked(peer, false);
        self.not_nodes += 1;
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn strikes(&self, peer: PeerKey) -> u32 {
        self.peers.get(&peer).map_or(0, |p| p.strikes)
    }

    /// Is `index` wanted (for any reason) and not held?
    pub fn wanted(&self, index: u32) -> bool {
        let i = index as usize;
        i < self.count && self.want[i] != Want::No && !self.have[i]
    }

    /// Chunks wanted and not held.
    pub fn missing(&self) -> usize {
        (0..self.count).filter(|&i| self.want[i] != Want::No && !self.have[i]).count()
    }

    /// The node holds `index` (verified), or no longer does (`false`: dropped from its store).
    pub fn set_have(&mut self, index: u32, held: bool) {
        if let Some(h) = self.have.get_mut(index as usize) {
            *h = held;
        }
    }

    /// Raise what is wanted of a chunk (never lowers: a blocked read stays blocked).
    pub fn want(&mut self, index: u32, want: Want) {
        let Some(slot) = self.want.get_mut(index as usize) else { return };
        let rank = |w: Want| match w {
            Want::No => 0,
            Want::Fill => 1,
            Want::Profile(_) => 2,
            Want::Blocked => 3,
        };
        if rank(want) > rank(*slot) {
            *slot = want;
            if want == Want::Blocked && !self.have[index as usize] {
                self.blocked.push_back(index);
            }
        }
    }

    /// Drops a fill wish (the store is full); blocked and profile wishes stay.
    pub fn unwant_fill(&mut self, index: u32) {
        if let Some(slot) = self.want.get_mut(index as usize) {
            if *slot == Want::Fill {
                *slot = Want::No;
            }
        }
    }

    /// The boot profile: chunk indices in the order a boot read them.
    pub fn set_profile(&mut self, order: &[u32]) {
        self.profile = order.iter().copied().filter(|&i| (i as usize) < self.count).collect();
        self.profile_cursor = 0;
        for (pos, &index) in self.profile.clone().iter().enumerate() {
            self.want(index, Want::Profile(pos as u32));
        }
    }

    pub fn add_peer(&mut self, peer: PeerKey, has: Vec<bool>) {
        self.remove_peer(peer);
        let mut has = has;
        has.resize(self.count, false);
        let held = has.iter().filter(|h| **h).count();
        let p = Peer { has, held, choked: true, ..Default::default() };
        self.count_peer(&p, 1);
        self.peers.insert(peer, p);
    }

    /// Adds (`sign` 1) or takes away (-1) a peer's chunks from the holder counts.
    fn count_peer(&mut self, p: &Peer, sign: i32) {
        let full = p.held == self.count;
        for (i, _) in p.has.iter().enumerate().filter(|(_, h)| **h) {
            self.holders[i] = self.holders[i].saturating_add_signed(sign);
            if !full {
                self.partial_holders[i] = self.partial_holders[i].saturating_add_signed(sign);
            }
        }
    }

    /// Forgets a peer; its requests go back to the pool.
    pub fn remove_peer(&mut self, peer: PeerKey) {
        let Some(p) = self.peers.remove(&peer) else { return };
        self.count_peer(&p, -1);
        for index in p.inflight.keys() {
            self.drop_inflight(*index, peer);
        }
    }

    pub fn set_choked(&mut self, peer: PeerKey, choked: bool) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.choked = choked;
            if choked {
                // BEP 3: a choke discards the peer's pending requests.
                let lost: Vec<u32> = p.inflight.keys().copied().collect();
                p.inflight.clear();
                lost.into_iter().for_each(|i| self.drop_inflight(i, peer));
            }
        }
    }

    /// A peer announced (`true`) or dropped (`false`) a chunk.
    pub fn peer_has(&mut self, peer: PeerKey, index: u32, held: bool) {
        let Some(mut p) = self.peers.remove(&peer) else { return };
        if p.has.get(index as usize).is_some_and(|&h| h != held) {
            let was_full = p.held == self.count;
            let will_be_full = held && p.held + 1 == self.count;
            if was_full || will_be_full {
                // Turning full, or no longer full, changes every chunk's count of partial
                // holders: the peer's old counts out, the new ones in (once per peer).
                self.count_peer(&p, -1);
                p.has[index as usize] = held;
                p.held = if held { p.held + 1 } else { p.held - 1 };
                self.count_peer(&p, 1);
            } else {
                let i = index as usize;
                p.has[i] = held;
                let sign = if held { 1 } else { -1 };
                p.held = p.held.saturating_add_signed(sign as isize);
                self.holders[i] = self.holders[i].saturating_add_signed(sign);
                self.partial_holders[i] = self.partial_holders[i].saturating_add_signed(sign);
            }
        }
        let dropped_asked = !held && p.inflight.remove(&index).is_some();
        self.peers.insert(peer, p);
        if dropped_asked {
            // `lt_donthave` for a chunk asked of it: the peer will not answer; ask elsewhere
            // now rather than at the timeout (no strike: it said so).
            self.drop_inflight(index, peer);
        }
    }

    pub fn peer_holds(&self, peer: PeerKey, index: u32) -> bool {
        self.peers.get(&peer).and_then(|p| p.has.get(index as usize)).copied().unwrap_or(false)
    }

    /// A chunk arrived verified from `peer`: duplicates elsewhere are cancelled.
    pub fn completed(&mut self, peer: PeerKey, index: u32) -> Vec<Action> {
        self.set_have(index, true);
        // The read or the profile had it: from now on it is fill, as the plan decides (a
        // chunk read but not kept must not be fetched again for a boot that is past it).
        if let Some(w @ (Want::Profile(_) | Want::Blocked)) = self.want.get_mut(index as usize) {
            *w = Want::Fill;
        }
        let mut cancels = Vec::new();
        if let Some(r) = self.requested.get_mut(index as usize) {
            *r = false;
        }
        for other in self.inflight.remove(&index).unwrap_or_default() {
            if let Some(p) = self.peers.get_mut(&other) {
                p.inflight.remove(&index);
            }
            if other != peer {
                cancels.push(Action::Cancel { peer: other, index });
            }
        }
        self.blocked.retain(|&i| i != index);
        cancels
    }

    /// The peer's answer for `index` failed or was refused: take the request back.
    pub fn abandoned(&mut self, peer: PeerKey, index: u32) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.inflight.remove(&index);
            p.strikes += 1;
        }
        self.drop_inflight(index, peer);
    }

    fn drop_inflight(&mut self, index: u32, peer: PeerKey) {
        if let Some(list) = self.inflight.get_mut(&index) {
            list.retain(|&p| p != peer);
            if list.is_empty() {
                self.inflight.remove(&index);
                self.requested[index as usize] = false;
            }
        }
    }

    /// What to do now: requests for idle pipeline slots, cancels for timed-out requests.
    pub fn tick(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        // Timeouts first, so that their chunks can go elsewhere in this same tick.
        let timeout = self.params.timeout;
        let mut expired = Vec::new();
        for (&key, p) in &self.peers {
            for (&index, &since) in &p.inflight {
                if now.saturating_sub(since) >= timeout {
                    expired.push((key, index));
                }
            }
        }
        // In a fixed order (the map's is random): the same events give the same requests.
        expired.sort_unstable();
        for (peer, index) in expired {
            self.abandoned(peer, index);
            actions.push(Action::Cancel { peer, index });
        }
        while self.profile_cursor < self.profile.len() && self.have[self.profile[self.profile_cursor] as usize] {
            self.profile_cursor += 1;
        }
        let booting = self.booting();
        let mut keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        // Least busy, fewest strikes first; the key keeps the order deterministic.
        keys.sort_by_key(|k| (self.peers[k].inflight.len(), self.peers[k].strikes, *k));
        for key in keys {
            while self.peers.get(&key).is_some_and(|p| !p.choked && p.inflight.len() < self.params.pipeline) {
                let Some(index) = self.pick(key, now, booting) else { break };
                self.inflight.entry(index).or_default().push(key);
                self.requested[index as usize] = true;
                if let Some(p) = self.peers.get_mut(&key) {
                    p.inflight.insert(index, now);
                }
                actions.push(Action::Request { peer: key, index });
            }
        }
        actions
    }

    fn open(&self, index: u32, peer: &Peer) -> bool {
        let i = index as usize;
        !self.have[i] && peer.has[i] && !self.requested[i]
    }

    fn pick(&self, key: PeerKey, now: Duration, booting: bool) -> Option<u32> {
        let peer = self.peers.get(&key)?;
        // A peer holding everything (a seed, the first node) is asked only for what no peer
        // that is still fetching holds (blocked reads included: asked of a seed by every
        // joiner at once, one chunk would cost it one upload per joiner), and joiners start
        // at different places of the profile: the first node's upload is spread over the
        // swarm instead of being paid once per joiner.
        let seed = peer.held == self.count;
        let spare = |index: u32| !seed || self.partial_holders[index as usize] == 0;
        // A chunk the boot needs, asked only of seeds, that this partial peer holds: ask it
        // here too (the first answer cancels the other), so that the seed's queue is not
        // where a boot waits, nor what it uploads.
        let reroute = |index: u32| {
            let i = index as usize;
            !seed && !self.have[i] && peer.has[i] && !peer.inflight.contains_key(&index) && self.only_at_seeds(index)
        };
        // A read waits: the seed unless an unchoked peer still fetching can answer it.
        let spare_now = |index: u32| {
            let i = index as usize;
            !seed || !self.peers.values().any(|p| !p.choked && p.held < self.count && p.has[i])
        };
        // 1. Blocked reads.
        for &index in &self.blocked {
            if (self.open(index, peer) && spare_now(index)) || reroute(index) {
                return Some(index);
            }
        }
        // A blocked chunk waiting at a slow peer: ask this one as well.
        for &index in &self.blocked {
            let i = index as usize;
            if self.have[i] || !peer.has[i] || peer.inflight.contains_key(&index) {
                continue;
            }
            let at = self.inflight.get(&index).map_or(&[][..], |v| v.as_slice());
            let oldest = at.iter().filter_map(|p| self.peers.get(p)?.inflight.get(&index)).min().copied();
            if at.len() < 2 && oldest.is_some_and(|t| now.saturating_sub(t) >= self.params.timeout / 2) {
                return Some(index);
            }
        }
        // 2. The boot profile, in order (from a seed: from a per-node place in the next window).
        let ahead = &self.profile[self.profile_cursor..];
        let skip = if seed && !ahead.is_empty() { (self.params.spread % PROFILE_WINDOW.min(ahead.len()) as u64) as usize } else { 0 };
        for &index in ahead[skip..].iter().chain(&ahead[..skip]) {
            if self.want[index as usize] != Want::No && ((self.open(index, peer) && spare(index)) || reroute(index)) {
                return Some(index);
            }
        }
        // The boot first: no fill while a read waits or profile chunks are missing; fill
        // would share the links, the first node's above all, with the boot. An idle peer
        // duplicates a boot request instead (the first answer cancels the other).
        if booting {
            return self.endgame(key, peer, now, |index| self.want[index as usize] != Want::Fill && spare(index));
        }
        // 3. Fill, rarest first, from a per-node offset.
        let start = (self.params.spread % self.count.max(1) as u64) as usize;
        let mut best: Option<(u32, u32)> = None;
        for step in 0..self.count {
            let i = (start + step) % self.count;
            if self.want[i] == Want::Fill && self.open(i as u32, peer) && spare(i as u32) {
                let rarity = self.holders[i];
                if best.is_none_or(|(_, r)| rarity < r) {
                    best = Some((i as u32, rarity));
                    if rarity <= 1 {
                        break;
                    }
                }
            }
        }
        if let Some((index, _)) = best {
            return Some(index);
        }
        // 4. Endgame: nothing left unrequested; duplicate the oldest request this peer can serve.
        self.endgame(key, peer, now, spare)
    }

    /// Is every request for `index` at a peer holding everything?
    fn only_at_seeds(&self, index: u32) -> bool {
        self.inflight
            .get(&index)
            .is_some_and(|at| at.len() < 2 && at.iter().all(|p| self.peers.get(p).is_some_and(|p| p.held == self.count)))
    }

    /// A profile chunk not yet held, or a read waiting: the boot is not through.
    fn booting(&self) -> bool {
        !self.blocked.is_empty()
            || self.profile[self.profile_cursor..]
                .iter()
                .any(|&i| !self.have[i as usize] && matches!(self.want[i as usize], Want::Profile(_) | Want::Blocked))
    }

    /// The oldest request, among those `eligible`, that this peer can duplicate.
    fn endgame(&self, key: PeerKey, peer: &Peer, now: Duration, eligible: impl Fn(u32) -> bool) -> Option<u32> {
        let mut oldest: Option<(Duration, u32)> = None;
        for (&index, at) in &self.inflight {
            let i = index as usize;
            if self.have[i] || !peer.has[i] || at.contains(&key) || at.len() >= 2 || self.want[i] == Want::No || !eligible(index) {
                continue;
            }
            let since = at.iter().filter_map(|p| self.peers.get(p)?.inflight.get(&index)).min().copied().unwrap_or(now);
            if oldest.is_none_or(|old| (since, index) < old) {
                oldest = Some((since, index));
            }
        }
        oldest.map(|(_, index)| index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer holding chunks 0..n of n + 1 (not a seed: the last chunk, never wanted,
    /// is not held).
    fn all(n: usize) -> Vec<bool> {
        let mut has = vec![true; n];
        has.push(false);
        has
    }

    fn requests(actions: &[Action]) -> Vec<(PeerKey, u32)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Request { peer, index } => Some((*peer, *index)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn blocked_before_profile_before_rarest_fill() {
        let mut s = Scheduler::new(9, Params { pipeline: 1, ..Default::default() });
        (0..8).for_each(|i| s.want(i, Want::Fill));
        s.set_profile(&[5, 6]);
        s.add_peer(1, all(8));
        s.set_choked(1, false);
        // Chunk 3 is held by peer 1 only; the others by peer 2 too: 3 is rarest.
        let mut others = all(8);
        others.pop();
        others[3] = false;
        s.add_peer(2, others);
        s.want(7, Want::Blocked);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(1, 7)]);
        s.completed(1, 7);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(1, 5)]);
        s.completed(1, 5);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(1, 6)]);
        s.completed(1, 6);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(1, 3)], "rarest first");
    }

    #[test]
    fn a_stalled_request_times_out_and_goes_elsewhere() {
        let params = Params { pipeline: 1, timeout: Duration::from_secs(4), spread: 0 };
        let mut s = Scheduler::new(3, params);
        s.want(0, Want::Fill);
        s.add_peer(1, all(2));
        s.set_choked(1, false);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(1, 0)]);
        s.add_peer(2, all(2));
        s.set_choked(2, false);
        // Peer 2 is idle but chunk 0 is in flight: endgame duplicates it.
        assert_eq!(requests(&s.tick(Duration::from_secs(1))), [(2, 0)]);
        let actions = s.tick(Duration::from_millis(4500));
        assert!(actions.contains(&Action::Cancel { peer: 1, index: 0 }));
        assert!(!actions.contains(&Action::Cancel { peer: 2, index: 0 }), "peer 2 asked later: not yet due");
        assert_eq!(s.strikes(1), 1);
        s.completed(2, 0);
        assert_eq!(s.missing(), 0);
    }

    #[test]
    fn a_blocked_read_is_duplicated_at_an_idle_peer_and_holds_the_fill_back() {
        let params = Params { pipeline: 2, timeout: Duration::from_secs(10), spread: 0 };
        let mut s = Scheduler::new(5, params);
        [0, 1, 3].into_iter().for_each(|i| s.want(i, Want::Fill));
        s.want(2, Want::Blocked);
        s.add_peer(1, all(4));
        s.set_choked(1, false);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(1, 2)], "no fill while a read waits");
        s.add_peer(2, all(4));
        s.set_choked(2, false);
        // An idle peer duplicates the waiting read, and takes no fill.
        assert_eq!(requests(&s.tick(Duration::from_secs(1))), [(2, 2)]);
        assert_eq!(s.completed(2, 2), [Action::Cancel { peer: 1, index: 2 }]);
        let fill: std::collections::BTreeSet<u32> = requests(&s.tick(Duration::from_secs(6))).iter().map(|r| r.1).collect();
        assert_eq!(fill, [0, 1, 3].into(), "fill once the read is through");
    }

    #[test]
    fn leaving_and_choking_peers_give_their_requests_back() {
        let mut s = Scheduler::new(4, Params { pipeline: 3, ..Default::default() });
        (0..3).for_each(|i| s.want(i, Want::Fill));
        s.add_peer(1, all(3));
        s.set_choked(1, false);
        assert_eq!(requests(&s.tick(Duration::ZERO)).len(), 3);
        assert_eq!(s.holders(0), 1);
        s.remove_peer(1);
        assert_eq!(s.holders(0), 0);
        s.add_peer(2, vec![true, false, true, false]);
        assert!(requests(&s.tick(Duration::ZERO)).is_empty(), "choked");
        s.set_choked(2, false);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(2, 0), (2, 2)]);
        s.set_choked(2, true);
        s.peer_has(2, 1, true);
        s.set_choked(2, false);
        assert_eq!(requests(&s.tick(Duration::ZERO)).len(), 3);
    }

    #[test]
    fn a_seed_is_asked_only_for_what_no_other_peer_holds() {
        let mut s = Scheduler::new(4, Params { pipeline: 4, ..Default::default() });
        (0..4).for_each(|i| s.want(i, Want::Fill));
        s.add_peer(1, vec![true; 4]);
        s.set_choked(1, false);
        s.add_peer(2, vec![true, true, false, false]);
        s.set_choked(2, false);
        let mut got = requests(&s.tick(Duration::ZERO));
        got.sort();
        assert_eq!(got, [(1, 2), (1, 3), (2, 0), (2, 1)]);
        // A blocked read takes any holder.
        let mut s = Scheduler::new(2, Params { pipeline: 1, ..Default::default() });
        s.add_peer(1, vec![true; 2]);
        s.set_choked(1, false);
        s.add_peer(2, vec![true, false]);
        s.want(0, Want::Blocked);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(1, 0)], "peer 2 is choked");
    }

    #[test]
    fn joiners_spread_over_equally_rare_chunks() {
        let firsts: std::collections::HashSet<u32> = (0..8u64)
            .map(|spread| {
                let mut s = Scheduler::new(65, Params { pipeline: 1, spread: spread * 8, ..Default::default() });
                (0..64).for_each(|i| s.want(i, Want::Fill));
                s.add_peer(1, all(64));
                s.set_choked(1, false);
                requests(&s.tick(Duration::ZERO))[0].1
            })
            .collect();
        assert_eq!(firsts.len(), 8);
    }

    #[test]
    fn a_blocked_read_goes_to_a_partial_holder_before_the_seed() {
        let mut s = Scheduler::new(3, Params { pipeline: 2, ..Default::default() });
        s.add_peer(1, vec![true; 3]);
        s.set_choked(1, false);
        s.add_peer(2, vec![true, false, false]);
        s.set_choked(2, false);
        s.want(0, Want::Blocked);
        s.want(1, Want::Blocked);
        let mut got = requests(&s.tick(Duration::ZERO));
        got.sort();
        // Chunk 0 from the joiner that has it; chunk 1, which only the seed holds, from the seed.
        assert_eq!(got, [(1, 1), (2, 0)]);
    }

    #[test]
    fn a_boot_chunk_waiting_at_the_seed_is_asked_of_a_joiner_that_gets_it() {
        let mut s = Scheduler::new(3, Params { pipeline: 2, ..Default::default() });
        s.add_peer(1, vec![true; 3]);
        s.set_choked(1, false);
        s.add_peer(2, vec![false; 3]);
        s.set_choked(2, false);
        s.want(0, Want::Blocked);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(1, 0)]);
        s.peer_has(2, 0, true);
        assert_eq!(requests(&s.tick(Duration::from_millis(1))), [(2, 0)], "not left in the seed's queue");
        assert_eq!(s.completed(2, 0), [Action::Cancel { peer: 1, index: 0 }]);
    }

    #[test]
    fn no_fill_while_the_boot_profile_is_missing() {
        let mut s = Scheduler::new(4, Params { pipeline: 4, ..Default::default() });
        (0..3).for_each(|i| s.want(i, Want::Fill));
        s.set_profile(&[2]);
        s.add_peer(1, all(3));
        s.set_choked(1, false);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(1, 2)]);
        s.completed(1, 2);
        let mut got = requests(&s.tick(Duration::ZERO));
        got.sort();
        assert_eq!(got, [(1, 0), (1, 1)], "fill once the profile is held");
    }

    #[test]
    fn a_profile_chunk_read_but_not_kept_is_not_fetched_again() {
        let mut s = Scheduler::new(3, Params { pipeline: 2, ..Default::default() });
        s.set_profile(&[0, 1]);
        s.add_peer(1, all(2));
        s.set_choked(1, false);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(1, 0), (1, 1)]);
        s.completed(1, 0);
        s.completed(1, 1);
        // The store did not keep chunk 0 (as `policy::keep` tells the scheduler).
        s.set_have(0, false);
        s.unwant_fill(0);
        assert!(requests(&s.tick(Duration::ZERO)).is_empty());
        assert_eq!(s.missing(), 0);
    }

    #[test]
    fn donthave_takes_a_request_back_at_once_and_without_a_strike() {
        let mut s = Scheduler::new(2, Params { pipeline: 1, ..Default::default() });
        s.want(0, Want::Fill);
        s.add_peer(1, all(1));
        s.set_choked(1, false);
        assert_eq!(requests(&s.tick(Duration::ZERO)), [(1, 0)]);
        s.add_peer(2, all(1));
        s.set_choked(2, false);
        s.peer_has(1, 0, false);
        assert_eq!(requests(&s.tick(Duration::from_millis(1))), [(2, 0)]);
        assert_eq!(s.strikes(1), 0);
    }
}

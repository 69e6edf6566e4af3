//! The V-FIELD scale simulation: N nodes booting at once from one first node, in simulated
//! time, without sockets. Each node owns a real [`Scheduler`] and a real RAM [`Store`] and
//! takes the runtime's decisions through the same code ([`policy`], [`Scheduler::tick`]);
//! what is simulated is only what the sockets and threads do: messages cross links with a
//! bandwidth and a latency, one after another on the sender's uplink and the receiver's
//! downlink.
//!
//! The model, and what it leaves out:
//! - a chunk request is its 16 KiB block requests (their wire frames' bytes); a chunk
//!   answer is its blocks with their framing, sent as one transfer (blocks of one chunk
//!   leave back to back, as a peer's connection thread writes them);
//! - a node answers the requests it has received one chunk at a time on its uplink, the
//!   least sent chunk first ([`policy::next_to_serve`]), and drops those cancelled before
//!   their turn; the runtime answers from one thread per connection, each taking its
//!   connection's least sent request when no other connection has a less sent one
//!   ([`policy::serve_pick`]): the same order, ties answered in parallel;
//! - `Have` and `lt_donthave` cost latency only (9 and 10 bytes beside 256 KiB chunks);
//! - connections: every joiner reaches the first node while it has room (`max_peers` + 8,
//!   as the runtime accepts), then random other nodes up to `max_peers` (as peer exchange
//!   and dialing give them); every connection unchokes at once (as the runtime does);
//!   connection set-up takes no time; CPU time (hashing, the scheduler) takes none;
//! - a node killed is seen gone by its peers one latency later (its kernel resets the
//!   connections); a node powered off would be seen only at the request timeout.

use super::meta::Meta;
use super::policy;
use super::schedule::{Action, Params, Scheduler, Want};
use super::store::Store;
use super::wire::{Message, BLOCK};
use crate::image::chunks::{self, Digest2};
use crate::image::manifest::{Chunks, Manifest, FORMAT_V2};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Nanoseconds of simulated time.
type Nanos = u64;

const MS: Nanos = 1_000_000;
const SECOND: Nanos = 1_000 * MS;
/// The runtime plans the fill every 500 ms, wakes its scheduler at least every 100 ms,
/// checks a planned leave every 200 ms, redials every 2 s and drops a peer at 8 strikes.
const PLAN_EVERY: Nanos = 500 * MS;
const TICK_EVERY: Nanos = 100 * MS;
const LEAVE_CHECK_EVERY: Nanos = 200 * MS;
const REDIAL_EVERY: Nanos = 2 * SECOND;
const LEAVE_DEADLINE: Nanos = 30 * SECOND;
const MAX_STRIKES: u32 = 8;
/// A peer's `Have` is acted on this much later, so that news arriving together costs one
/// scheduler run (a completed chunk or a blocked read is acted on at once).
const NEWS_REACTION: Nanos = MS / 2;
/// The simulation gives up past this (a swarm that does not settle is a finding too).
/// How often the experiment looks whether the swarm is filled or the first node gone.
const PHASE_EVERY: Nanos = 50 * MS;
/// Stores full this long without every chunk at `replicas` joiners: filled anyway.
const SETTLE: Nanos = 10 * SECOND;
const GIVE_UP: Nanos = 1_800 * SECOND;
/// Reads after the leaves that take longer than this are reported unfinished.
const AFTER_KILL_LIMIT: Nanos = 60 * SECOND;

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Nodes joining at once (besides the first node, which holds the image).
    pub nodes: usize,
    pub image_bytes: u64,
    pub chunk_bytes: u64,
    /// Each joiner's store budget.
    pub store_bytes: u64,
    pub replicas: u32,
    /// The share of the image's chunks the boot reads (its profile).
    pub profile_share: f64,
    /// Every node's uplink and downlink, bytes per second.
    pub upload_bps: f64,
    pub download_bps: f64,
    /// One way, every link.
    pub latency_ns: u64,
    pub max_peers: usize,
    pub pipeline: usize,
    pub timeout_ns: u64,
    /// The first node leaves (planned), then a random third of the joiners (killed).
    pub survival: bool,
    /// Chunks each survivor reads after the leaves (ones it does not hold).
    pub reads_after: usize,
    pub rng_seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        let params = Params::default();
        Config {
            nodes: 10,
            image_bytes: 256 << 20,
            chunk_bytes: chunks::DEFAULT_CHUNK,
            store_bytes: 64 << 20,
            replicas: 2,
            profile_share: 0.15,
            upload_bps: 125e6,
            download_bps: 125e6,
            latency_ns: 200_000,
            max_peers: 40,
            pipeline: params.pipeline,
            timeout_ns: params.timeout.as_nanos() as u64,
            survival: true,
            reads_after: 8,
            rng_seed: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: Config,
    pub chunks: usize,
    /// The first node's upload, in image sizes, when every joiner had read its profile.
    pub seed_upload_at_profile: f64,
    /// The same when every joiner's store was full (or at the end, if it never was).
    pub seed_upload: f64,
    /// All joiners' upload together, in image sizes, at the same moment.
    pub joiners_upload: f64,
    /// Seconds from the start until a joiner had read its whole boot profile.
    pub profile_median_s: f64,
    pub profile_p99_s: f64,
    pub profile_max_s: f64,
    /// Seconds until every joiner's store was full; `None`: never (within the give-up time).
    pub filled_s: Option<f64>,
    pub survival: Option<Survival>,
    /// The fewest nodes holding one chunk once filled (the first node not counted).
    pub min_holders: u32,
    /// Seconds one chunk takes over one idle link (request, answer, latencies).
    pub one_chunk_s: f64,
    pub events: u64,
    /// Scheduler ticks run (all nodes).
    pub ticks: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Survival {
    /// Chunks the first node's planned leave left without another holder.
    pub seed_left_alone: usize,
    pub seed_leave_s: f64,
    pub killed: usize,
    /// Chunks no live node holds once the third was killed.
    pub lost_chunks: usize,
    pub reads: usize,
    /// Reads that never completed (within the give-up time).
    pub reads_unfinished: usize,
    /// The longest a read after the leaves was blocked, seconds (every such read is of a
    /// chunk its node did not hold), and the 99th percentile.
    pub max_blocked_s: f64,
    pub p99_blocked_s: f64,
}

/// A tiny deterministic PRNG (SplitMix64): the same seed gives the same run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Tick(usize),
    Periodic(usize),
    Plan(usize),
    Read(usize),
    Redial(usize),
    /// A chunk request reaches the server `to`.
    Request {
        from: usize,
        to: usize,
        index: u32,
    },
    /// A cancel reaches the server `to`: the request leaves its queue if not yet answered.
    Cancel {
        from: usize,
        to: usize,
        index: u32,
    },
    /// The server's uplink has sent its current chunk.
    UplinkFree(usize),
    /// A chunk's last block reaches `to`.
    Chunk {
        from: usize,
        to: usize,
        index: u32,
    },
    /// `Have` (held) or `lt_donthave` reaches `from`'s peers.
    Announce {
        from: usize,
        index: u32,
        held: bool,
    },
    /// The extension handshake saying `from` is leaving reaches its peers.
    Leaving(usize),
    /// `to` sees its connection to `from` closed.
    Gone {
        from: usize,
        to: usize,
    },
    LeaveCheck(usize),
    /// The experiment's own clock: is the swarm filled, the first node gone?
    Phase,
}

struct Queued {
    at: Nanos,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        Reverse((self.at, self.seq)).cmp(&Reverse((other.at, other.seq)))
    }
}

struct Node {
    sched: Scheduler,
    store: Store,
    /// Connected peers (ordered: the run is deterministic).
    peers: BTreeSet<usize>,
    /// Peers that said they are leaving.
    leavers: BTreeSet<usize>,
    /// Requests sent and not answered nor cancelled (the runtime's chunks being assembled).
    asked: HashSet<(usize, u32)>,
    /// The same, counted per peer.
    asked_at: HashMap<usize, usize>,
    alive: bool,
    leaving: bool,
    serve_queue: VecDeque<(usize, u32)>,
    /// Times each chunk was sent (the serving order's input).
    times_sent: Vec<u32>,
    uplink_busy: bool,
    /// When the uplink's current transfer ends, and the downlink's last reserved one.
    uplink_free_at: Nanos,
    downlink_free_at: Nanos,
    sent: u64,
    tick_pending: bool,
    /// Chunks to read, in order; the one blocked on, since when.
    reads: VecDeque<u32>,
    reading: Option<(u32, Nanos)>,
    profile_done_at: Option<Nanos>,
    /// Reads after the leaves: their longest block, and how many are left.
    after_blocked: Vec<Nanos>,
    after_measuring: bool,
}

impl Node {
    fn ask(&mut self, peer: usize, index: u32) {
        if self.asked.insert((peer, index)) {
            *self.asked_at.entry(peer).or_default() += 1;
        }
    }

    fn unask(&mut self, peer: usize, index: u32) -> bool {
        let was = self.asked.remove(&(peer, index));
        if was {
            if let Some(n) = self.asked_at.get_mut(&peer) {
                *n -= 1;
            }
        }
        was
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Booting,
    SeedLeaving,
    AfterKill,
    Done,
}

pub struct Sim {
    config: Config,
    meta: Arc<Meta>,
    /// One chunk's bytes, shared by every store (the simulation never reads them).
    data: Arc<Vec<u8>>,
    nodes: Vec<Node>,
    queue: BinaryHeap<Queued>,
    seq: u64,
    now: Nanos,
    rng: Rng,
    events: u64,
    ticks: u64,
    phase: Phase,
    profile_done_at: Option<Nanos>,
    seed_upload_at_profile: u64,
    filled_at: Option<Nanos>,
    upload_at_filled: (u64, u64),
    min_holders: u32,
    full_since: Option<Nanos>,
    seed_left_alone: usize,
    seed_left_at: Option<Nanos>,
    killed: usize,
    killed_at: Option<Nanos>,
    lost_chunks: usize,
    request_bytes: u64,
    answer_bytes: u64,
}

/// A manifest for an image of `size` bytes in chunks of `chunk` (hashes made up: the
/// simulation checks no data).
fn synthetic_meta(size: u64, chunk: u64) -> Result<Meta, String> {
    let layout = chunks::Layout { size, chunk };
    let hashes: Vec<chunks::Hash> = (0..layout.count())
        .map(|i| {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&i.to_be_bytes());
            h
        })
        .collect();
    let root = layout.root(&hashes);
    let digest = Digest2 { sha256: [0; 32], size, chunk, hashes, root };
    let manifest = Manifest {
        format: FORMAT_V2,
        id: crate::image::manifest::id_from_checksum(&chunks::hex(&[0; 32])),
        name: "simulated".into(),
        image: "simulated".into(),
        created: 0,
        size,
        checksum: format!("sha256:{}", chunks::hex(&[0; 32])),
        compressor: "none".into(),
        kernels: Vec::new(),
        chunks: Some(Chunks::from_digest(&digest)),
        verity: None,
        profile: None,
        seal: None,
    };
    Meta::from_text(manifest.to_signed_text(None).into_bytes(), "simulated image")
}

impl Sim {
    pub fn new(config: Config) -> Result<Sim, String> {
        if config.image_bytes % config.chunk_bytes != 0 || config.image_bytes == 0 {
            return Err(format!("image of {} bytes: not a whole number of {}-byte chunks", config.image_bytes, config.chunk_bytes));
        }
        if config.nodes == 0 {
            return Err("at least one joining node".into());
        }
        let meta = Arc::new(synthetic_meta(config.image_bytes, config.chunk_bytes).map_err(|e| format!("simulated manifest: {e}"))?);
        let count = meta.chunk_count();
        let data = Arc::new(vec![0u8; config.chunk_bytes as usize]);
        let blocks = (config.chunk_bytes as u32).div_ceil(BLOCK);
        let request_bytes = blocks as u64 * Message::Request { index: 0, begin: 0, length: BLOCK }.encode().len() as u64;
        let framing = Message::Piece { index: 0, begin: 0, data: Vec::new() }.encode().len() as u64;
        let answer_bytes = config.chunk_bytes + blocks as u64 * framing;
        let mut rng = Rng(config.rng_seed);
        // The boot profile: a share of the chunks, scattered over the image, in the order
        // one recorded boot read them (the same for every node: the same image).
        let mut order: Vec<u32> = (0..count as u32).collect();
        rng.shuffle(&mut order);
        order.truncate(((count as f64 * config.profile_share).round() as usize).clamp(1, count));
        let mut nodes = Vec::with_capacity(config.nodes + 1);
        for n in 0..=config.nodes {
            let params = Params { pipeline: config.pipeline, timeout: Duration::from_nanos(config.timeout_ns), spread: rng.next() };
            let mut sched = Scheduler::new(count, params);
            let mut store = Store::ram(if n == 0 { config.image_bytes } else { config.store_bytes });
            let mut reads = VecDeque::new();
            if n == 0 {
                for i in 0..count as u32 {
                    let _ = store.insert(&meta, i, data.clone(), |_| 0);
                    sched.set_have(i, true);
                }
            } else {
                // As `Swarm::new` with fill on: every chunk is a fill wish.
                (0..count as u32).for_each(|i| sched.want(i, Want::Fill));
                sched.set_profile(&order);
                reads.extend(order.iter().copied());
            }
            nodes.push(Node {
                sched,
                store,
                peers: BTreeSet::new(),
                leavers: BTreeSet::new(),
                asked: HashSet::new(),
                asked_at: HashMap::new(),
                alive: true,
                leaving: false,
                serve_queue: VecDeque::new(),
                times_sent: vec![0; count],
                uplink_busy: false,
                uplink_free_at: 0,
                downlink_free_at: 0,
                sent: 0,
                tick_pending: false,
                reads,
                reading: None,
                profile_done_at: None,
                after_blocked: Vec::new(),
                after_measuring: false,
            });
        }
        let mut sim = Sim {
            config,
            meta,
            data,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            rng,
            events: 0,
            ticks: 0,
            phase: Phase::Booting,
            profile_done_at: None,
            seed_upload_at_profile: 0,
            filled_at: None,
            upload_at_filled: (0, 0),
            min_holders: 0,
            full_since: None,
            seed_left_alone: 0,
            seed_left_at: None,
            killed: 0,
            killed_at: None,
            lost_chunks: 0,
            request_bytes,
            answer_bytes,
        };
        sim.connect_initial();
        for n in 0..sim.nodes.len() {
            // Spread the periodic work over its period, as independent machines would.
            let (tick, plan, redial) = (sim.rng.next() % TICK_EVERY, sim.rng.next() % PLAN_EVERY, sim.rng.next() % REDIAL_EVERY);
            sim.at(tick, Event::Periodic(n));
            sim.at(plan, Event::Plan(n));
            sim.at(REDIAL_EVERY + redial, Event::Redial(n));
            sim.at(0, Event::Read(n));
        }
        sim.at(PHASE_EVERY, Event::Phase);
        Ok(sim)
    }

    fn at(&mut self, at: Nanos, event: Event) {
        self.seq += 1;
        self.queue.push(Queued { at, seq: self.seq, event });
    }

    fn after(&mut self, delay: Nanos, event: Event) {
        self.at(self.now + delay, event);
    }

    fn transfer_ns(&self, bytes: u64, bps: f64) -> Nanos {
        (bytes as f64 * 1e9 / bps) as Nanos
    }

    /// Every joiner dials the first node (while it accepts), then random others.
    fn connect_initial(&mut self) {
        let mut order: Vec<usize> = (1..self.nodes.len()).collect();
        self.rng.shuffle(&mut order);
        for &n in &order {
            self.connect(n, 0);
        }
        for &n in &order {
            self.dial_random(n);
        }
    }

    fn room(&self, n: usize, accepting: bool) -> bool {
        let limit = if accepting { self.config.max_peers + 8 } else { self.config.max_peers };
        self.nodes[n].alive && !self.nodes[n].leaving && self.nodes[n].peers.len() < limit
    }

    fn connect(&mut self, a: usize, b: usize) -> bool {
        if a == b || self.nodes[a].peers.contains(&b) || !self.room(a, false) || !self.room(b, true) {
            return false;
        }
        for (x, y) in [(a, b), (b, a)] {
            let has = self.nodes[y].store.held(&self.meta);
            let node = &mut self.nodes[x];
            node.peers.insert(y);
            node.sched.add_peer(y as u64, has);
            node.sched.set_choked(y as u64, false);
        }
        true
    }

    fn dial_random(&mut self, n: usize) {
        let total = self.nodes.len();
        let mut tries = 4 * self.config.max_peers;
        while tries > 0 && self.room(n, false) && self.nodes[n].peers.len() + 1 < total {
            tries -= 1;
            let other = self.rng.below(total);
            if self.connect(n, other) {
                self.schedule_tick(n);
                self.schedule_tick(other);
            }
        }
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        self.drop_peer(a, b);
        self.after(self.config.latency_ns, Event::Gone { from: a, to: b });
    }

    fn drop_peer(&mut self, n: usize, peer: usize) {
        let node = &mut self.nodes[n];
        if node.peers.remove(&peer) {
            node.sched.remove_peer(peer as u64);
            node.asked.retain(|(p, _)| *p != peer);
            node.asked_at.remove(&peer);
            node.leavers.remove(&peer);
            node.serve_queue.retain(|(p, _)| *p != peer);
        }
    }

    fn schedule_tick(&mut self, n: usize) {
        self.schedule_tick_in(n, 0);
    }

    /// A tick `delay` from now, unless one is already due (ticks coalesce).
    fn schedule_tick_in(&mut self, n: usize, delay: Nanos) {
        if !self.nodes[n].tick_pending && self.nodes[n].alive {
            self.nodes[n].tick_pending = true;
            self.after(delay, Event::Tick(n));
        }
    }

    /// Runs to the end of the experiment.
    pub fn run(mut self) -> Report {
        while let Some(Queued { at, event, .. }) = self.queue.pop() {
            if self.phase == Phase::Done || at > GIVE_UP {
                break;
            }
            self.now = at;
            self.events += 1;
            self.handle(event);
        }
        self.report()
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick(n) => {
                self.nodes[n].tick_pending = false;
                self.tick(n);
            }
            Event::Periodic(n) => {
                if self.nodes[n].alive {
                    self.tick(n);
                    self.after(TICK_EVERY, Event::Periodic(n));
                }
            }
            Event::Plan(n) => {
                if self.nodes[n].alive {
                    let leavers: Vec<u64> = self.nodes[n].leavers.iter().map(|&k| k as u64).collect();
                    let node = &mut self.nodes[n];
                    policy::plan_fill(&self.meta, &node.store, &mut node.sched, self.config.replicas, &leavers);
                    self.schedule_tick(n);
                    self.after(PLAN_EVERY, Event::Plan(n));
                }
            }
            Event::Read(n) => self.read_next(n),
            Event::Redial(n) => {
                if self.nodes[n].alive && !self.nodes[n].leaving {
                    self.dial_random(n);
                    self.after(REDIAL_EVERY, Event::Redial(n));
                }
            }
            Event::Request { from, to, index } => {
                let server = &mut self.nodes[to];
                if server.alive && server.peers.contains(&from) {
                    server.serve_queue.push_back((from, index));
                    if !server.uplink_busy {
                        self.serve_next(to);
                    }
                }
            }
            Event::Cancel { from, to, index } => {
                self.nodes[to].serve_queue.retain(|&q| q != (from, index));
            }
            Event::UplinkFree(n) => {
                self.nodes[n].uplink_busy = false;
                self.serve_next(n);
            }
            Event::Chunk { from, to, index } => self.chunk_arrived(from, to, index),
            Event::Announce { from, index, held } => {
                let peers: Vec<usize> = self.nodes[from].peers.iter().copied().collect();
                for p in peers {
                    let node = &mut self.nodes[p];
                    if !node.alive || !node.peers.contains(&from) {
                        continue;
                    }
                    node.sched.peer_has(from as u64, index, held);
                    // News that can only lead to a request to `from`: worth a tick only
                    // when the chunk is wanted and `from` has a free pipeline slot (the
                    // runtime ticks on every message; the other ticks come to the same).
                    let busy = node.asked_at.get(&from).copied().unwrap_or(0) >= self.config.pipeline;
                    if held && !busy && node.sched.wanted(index) {
                        self.schedule_tick_in(p, NEWS_REACTION);
                    }
                }
            }
            Event::Leaving(from) => {
                let peers: Vec<usize> = self.nodes[from].peers.iter().copied().collect();
                for p in peers {
                    if self.nodes[p].peers.contains(&from) {
                        self.nodes[p].leavers.insert(from);
                    }
                }
            }
            Event::Gone { from, to } => {
                self.drop_peer(to, from);
                self.schedule_tick(to);
            }
            Event::LeaveCheck(n) => {
                let node = &self.nodes[n];
                let alone = policy::alone(&self.meta, &node.store, &node.sched);
                let started = self.seed_left_at.unwrap_or(self.now);
                if alone.is_empty() || node.peers.is_empty() || self.now >= started + LEAVE_DEADLINE {
                    self.seed_left_alone = alone.len();
                    self.depart(n);
                    self.seed_left_at = Some(self.now);
                } else {
                    self.after(LEAVE_CHECK_EVERY, Event::LeaveCheck(n));
                }
            }
            Event::Phase => self.phase_step(),
        }
    }

    /// The node stops: its peers see the connections close one latency later.
    fn depart(&mut self, n: usize) {
        self.nodes[n].alive = false;
        let peers: Vec<usize> = self.nodes[n].peers.iter().copied().collect();
        for p in peers {
            self.after(self.config.latency_ns, Event::Gone { from: n, to: p });
        }
    }

    fn tick(&mut self, n: usize) {
        if !self.nodes[n].alive {
            return;
        }
        self.ticks += 1;
        let now = Duration::from_nanos(self.now);
        let actions = self.nodes[n].sched.tick(now);
        for action in actions {
            match action {
                Action::Request { peer, index } => {
                    let peer = peer as usize;
                    let node = &mut self.nodes[n];
                    node.ask(peer, index);
                    // Requests wait behind the chunk the uplink is sending.
                    let leaves = self.now.max(node.uplink_free_at) + self.transfer_ns(self.request_bytes, self.config.upload_bps);
                    self.at(leaves + self.config.latency_ns, Event::Request { from: n, to: peer, index });
                }
                Action::Cancel { peer, index } => {
                    self.nodes[n].unask(peer as usize, index);
                    self.after(self.config.latency_ns, Event::Cancel { from: n, to: peer as usize, index });
                }
            }
        }
        let struck: Vec<usize> =
            self.nodes[n].peers.iter().copied().filter(|&p| self.nodes[n].sched.strikes(p as u64) >= MAX_STRIKES).collect();
        for p in struck {
            self.disconnect(n, p);
        }
    }

    /// The uplink takes the next request it can answer.
    fn serve_next(&mut self, n: usize) {
        loop {
            let server = &mut self.nodes[n];
            let times_sent = &server.times_sent;
            let Some(pos) = policy::next_to_serve(server.serve_queue.iter().map(|&(_, i)| i), |i| times_sent[i as usize]) else { return };
            let Some((to, index)) = server.serve_queue.remove(pos) else { return };
            let server = &self.nodes[n];
            // Not held (any more), or the requester gone: unanswered, as in the runtime.
            if !server.alive || !server.store.holds(index) || !server.peers.contains(&to) {
                continue;
            }
            let bytes = self.answer_bytes;
            let sent_at = self.now + self.transfer_ns(bytes, self.config.upload_bps);
            let down = self.transfer_ns(bytes, self.config.download_bps);
            let received = &mut self.nodes[to];
            let arrives = (sent_at + self.config.latency_ns).max(received.downlink_free_at + down);
            received.downlink_free_at = arrives;
            let server = &mut self.nodes[n];
            server.uplink_busy = true;
            server.uplink_free_at = sent_at;
            server.sent += bytes;
            server.times_sent[index as usize] += 1;
            self.at(sent_at, Event::UplinkFree(n));
            self.at(arrives, Event::Chunk { from: n, to, index });
            return;
        }
    }

    fn chunk_arrived(&mut self, from: usize, to: usize, index: u32) {
        if !self.nodes[from].alive || !self.nodes[to].alive {
            return;
        }
        let node = &mut self.nodes[to];
        if !node.unask(from, index) {
            // Cancelled or not asked: dropped, as the runtime drops it.
            return;
        }
        let mut cancels = Vec::new();
        for cancel in node.sched.completed(from as u64, index) {
            if let Action::Cancel { peer, index } = cancel {
                node.unask(peer as usize, index);
                cancels.push(Event::Cancel { from: to, to: peer as usize, index });
            }
        }
        cancels.into_iter().for_each(|c| self.after(self.config.latency_ns, c));
        let node = &mut self.nodes[to];
        let kept = policy::keep(&self.meta, &mut node.store, &mut node.sched, index, self.data.clone());
        let latency = self.config.latency_ns;
        if let Ok(dropped) = kept {
            self.after(latency, Event::Announce { from: to, index, held: true });
            for d in dropped {
                self.after(latency, Event::Announce { from: to, index: d, held: false });
            }
        }
        let node = &mut self.nodes[to];
        if let Some((reading, since)) = node.reading {
            if reading == index {
                if node.after_measuring {
                    node.after_blocked.push(self.now - since);
                }
                node.reading = None;
                node.reads.pop_front();
                self.after(0, Event::Read(to));
            }
        }
        self.schedule_tick(to);
    }

    /// The node's next read: at once if its store holds the chunk, else blocked on it.
    fn read_next(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if !node.alive || node.reading.is_some() {
            return;
        }
        while let Some(&index) = node.reads.front() {
            if node.store.holds(index) {
                node.reads.pop_front();
                continue;
            }
            node.sched.set_have(index, false);
            node.sched.want(index, Want::Blocked);
            node.reading = Some((index, self.now));
            self.schedule_tick(n);
            return;
        }
        if node.profile_done_at.is_none() {
            node.profile_done_at = Some(self.now);
            if self.profile_done_at.is_none() && self.joiners().all(|n| n.profile_done_at.is_some()) {
                self.profile_done_at = Some(self.now);
                self.seed_upload_at_profile = self.nodes[0].sent;
            }
        }
    }

    fn joiners(&self) -> impl Iterator<Item = &Node> {
        self.nodes[1..].iter()
    }

    fn phase_step(&mut self) {
        match self.phase {
            Phase::Booting => {
                // Filled: every store full and every chunk on `replicas` joiners (or, if the
                // replicas never come, stores full for SETTLE).
                let full = self.profile_done_at.is_some() && self.joiners().all(|n| !n.store.has_room(&self.meta, 0));
                let count = self.meta.chunk_count() as u32;
                let least = (0..count).map(|i| self.joiners().filter(|n| n.store.holds(i)).count() as u32).min().unwrap_or(0);
                if full && self.full_since.is_none() {
                    self.full_since = Some(self.now);
                }
                let settled = self.full_since.is_some_and(|t| self.now >= t + SETTLE);
                if full && (least >= self.config.replicas.min(self.config.nodes as u32) || settled) {
                    self.min_holders = least;
                    self.filled_at = Some(self.now);
                    self.upload_at_filled = (self.nodes[0].sent, self.joiners().map(|n| n.sent).sum());
                    if !self.config.survival {
                        self.phase = Phase::Done;
                        return;
                    }
                    // The first node's planned leave.
                    self.phase = Phase::SeedLeaving;
                    self.nodes[0].leaving = true;
                    self.after(self.config.latency_ns, Event::Leaving(0));
                    self.after(LEAVE_CHECK_EVERY, Event::LeaveCheck(0));
                    self.seed_left_at = Some(self.now);
                }
            }
            Phase::SeedLeaving => {
                if !self.nodes[0].alive {
                    self.kill_a_third();
                    self.phase = Phase::AfterKill;
                }
            }
            Phase::AfterKill => {
                let waited = self.now - self.killed_at.unwrap_or(self.now);
                if waited >= AFTER_KILL_LIMIT || self.nodes.iter().filter(|n| n.alive).all(|n| n.reads.is_empty()) {
                    self.phase = Phase::Done;
                    return;
                }
            }
            Phase::Done => return,
        }
        self.after(PHASE_EVERY, Event::Phase);
    }

    /// A random third of the joiners are killed at once; every survivor then reads chunks
    /// it does not hold.
    fn kill_a_third(&mut self) {
        let mut alive: Vec<usize> = (1..self.nodes.len()).filter(|&n| self.nodes[n].alive).collect();
        self.rng.shuffle(&mut alive);
        let kill = alive.len() / 3;
        for &n in &alive[..kill] {
            self.depart(n);
        }
        self.killed = kill;
        self.killed_at = Some(self.now);
        let count = self.meta.chunk_count() as u32;
        self.lost_chunks = (0..count).filter(|&i| !self.nodes.iter().any(|n| n.alive && n.store.holds(i))).count();
        for &n in &alive[kill..] {
            let mut wanted: Vec<u32> = (0..count).filter(|&i| !self.nodes[n].store.holds(i)).collect();
            self.rng.shuffle(&mut wanted);
            wanted.truncate(self.config.reads_after);
            let node = &mut self.nodes[n];
            node.reads.extend(wanted);
            node.after_measuring = true;
            self.after(0, Event::Read(n));
        }
    }

    fn report(&self) -> Report {
        let image = self.config.image_bytes as f64;
        let mut times: Vec<f64> = self.joiners().map(|n| n.profile_done_at.map_or(f64::INFINITY, |t| t as f64 / 1e9)).collect();
        times.sort_by(f64::total_cmp);
        let quantile = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        let (seed_sent, joiners_sent) =
            if self.filled_at.is_some() { self.upload_at_filled } else { (self.nodes[0].sent, self.joiners().map(|n| n.sent).sum()) };
        let survival = self.killed_at.map(|_| {
            let survivors: Vec<&Node> = self.joiners().filter(|n| n.alive).collect();
            let mut blocked: Vec<Nanos> = survivors.iter().flat_map(|n| n.after_blocked.iter().copied()).collect();
            blocked.sort_unstable();
            Survival {
                seed_left_alone: self.seed_left_alone,
                seed_leave_s: self.seed_left_at.zip(self.filled_at).map_or(0.0, |(l, f)| (l - f) as f64 / 1e9),
                killed: self.killed,
                lost_chunks: self.lost_chunks,
                reads: survivors.len() * self.config.reads_after,
                reads_unfinished: survivors.iter().map(|n| n.reads.len()).sum(),
                max_blocked_s: blocked.last().copied().unwrap_or(0) as f64 / 1e9,
                p99_blocked_s: blocked.get((blocked.len() * 99).div_ceil(100).max(1) - 1).copied().unwrap_or(0) as f64 / 1e9,
            }
        });
        let one_chunk = self.transfer_ns(self.request_bytes, self.config.upload_bps)
            + self.transfer_ns(self.answer_bytes, self.config.upload_bps)
            + 2 * self.config.latency_ns;
        Report {
            config: self.config.clone(),
            chunks: self.meta.chunk_count(),
            seed_upload_at_profile: self.seed_upload_at_profile as f64 / image,
            seed_upload: seed_sent as f64 / image,
            joiners_upload: joiners_sent as f64 / image,
            profile_median_s: quantile(0.5),
            profile_p99_s: quantile(0.99),
            profile_max_s: quantile(1.0),
            filled_s: self.filled_at.map(|t| t as f64 / 1e9),
            survival,
            min_holders: self.min_holders,
            one_chunk_s: one_chunk as f64 / 1e9,
            events: self.events,
            ticks: self.ticks,
        }
    }
}

/// Runs one scenario.
pub fn simulate(config: Config) -> Result<Report, String> {
    Ok(Sim::new(config)?.run())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 32 MiB image (128 chunks of the kit's size), stores of a quarter of it.
    fn scenario(nodes: usize, store_share: f64) -> Report {
        let image = 32 << 20;
        let config = Config { nodes, image_bytes: image, store_bytes: (image as f64 * store_share) as u64, ..Default::default() };
        simulate(config).unwrap()
    }

    #[test]
    fn the_first_node_uploads_at_most_two_images_and_boots_stay_flat_in_n() {
        let ten = scenario(10, 0.25);
        let hundred = scenario(100, 0.25);
        for r in [&ten, &hundred] {
            assert!(r.seed_upload <= 2.0, "{} nodes: the first node uploaded {:.2} images", r.config.nodes, r.seed_upload);
            assert!(r.filled_s.is_some(), "{} nodes: the stores never filled", r.config.nodes);
        }
        // Flat from 10 to 100 nodes (against one node alone: see the README's table).
        assert!(
            hundred.profile_p99_s <= 1.5 * ten.profile_p99_s,
            "profile p99: {:.3} s for 100 nodes, {:.3} s for 10",
            hundred.profile_p99_s,
            ten.profile_p99_s
        );
    }

    #[test]
    fn no_chunk_is_lost_when_the_first_node_and_then_a_third_leave() {
        for (nodes, share) in [(100, 0.25), (10, 0.5)] {
            let r = scenario(nodes, share);
            let s = r.survival.as_ref().unwrap();
            assert_eq!(s.seed_left_alone, 0, "{nodes} nodes: the first node left chunks nobody else held");
            assert_eq!(s.killed, nodes / 3);
            assert_eq!(s.lost_chunks, 0, "{nodes} nodes: chunks lost");
            assert_eq!(s.reads_unfinished, 0, "{nodes} nodes: reads never served after the leaves");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let a = scenario(10, 0.25);
        let b = scenario(10, 0.25);
        assert_eq!((a.events, a.ticks), (b.events, b.ticks));
        assert_eq!(a.profile_p99_s, b.profile_p99_s);
    }
}

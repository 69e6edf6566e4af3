//! A V-FIELD peer at run time: TCP connections speaking [`super::wire`], the
//! [`Scheduler`] deciding what to ask whom, the [`Store`] holding what is kept.
//!
//! Threads, not an async runtime: one per connection (reads and answers requests), one
//! accepting, one driving the scheduler, dialing and exchanging peers. Every wait has a
//! deadline: a silent connection is closed after [`IDLE`], a request is taken back after
//! the scheduler's timeout.
//!
//! Nothing unverified leaves or enters: a chunk is assembled from its 16 KiB blocks,
//! checked against the manifest, and only then stored, announced, or given to a reader;
//! the peer that sent a wrong chunk is dropped, its address logged and never dialed again.
//!
//! Plain HTTP servers holding the image file are web seeds (`Options::web_seeds`): the
//! scheduler sees each as one more peer holding every chunk (so, like any seed, it is
//! asked only for what no other peer holds), and a few threads per web seed fetch its
//! requests with Range requests; the chunks are checked like any peer's.

use super::meta::Meta;
use super::policy;
use super::schedule::{Action, Params, PeerKey, Scheduler, Want};
use super::store::Store;
use super::wire::{self, BootRole, ExtensionIds, Handshake, ManifestMessage, Message, PeerInfo, BLOCK};
use crate::nbd::source::{HttpSource, HttpSourceOptions};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A connection with nothing received for this long is closed (keep-alives every 10 s).
pub const IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PEX_EVERY: Duration = Duration::from_secs(1);
const REDIAL_EVERY: Duration = Duration::from_secs(2);
/// Chunks a read needed but the store did not keep, held briefly for their readers.
const RECENT: usize = 64;
/// Strikes (timed-out or refused requests) before a peer is dropped.
const MAX_STRIKES: u32 = 8;

#[derive(Debug, Clone)]
pub struct Options {
    pub listen: Option<SocketAddr>,
    pub bootstrap: Vec<SocketAddr>,
    pub max_peers: usize,
    pub params: Params,
    /// Fetch chunks nobody reads, rarest first, while the budget allows.
    pub fill: bool,
    /// The swarm keeps each chunk on at least this many nodes, budgets allowing.
    pub replicas: u32,
    pub client: String,
    /// Bytes per second this node uploads at most (all peers together); `None`: no limit.
    pub upload_limit: Option<u64>,
    /// `http://` URLs of the image file: servers that answer Range requests.
    pub web_seeds: Vec<String>,
    /// Announce the swarm on the LAN segment and dial the peers heard there (BEP 14).
    pub lan: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: None,
            bootstrap: Vec::new(),
            max_peers: 40,
            params: Params::default(),
            fill: true,
            replicas: 2,
            client: format!("VIVER {}", env!("CARGO_PKG_VERSION")),
            upload_limit: None,
            web_seeds: Vec::new(),
            lan: false,
        }
    }
}

#[derive(Default)]
pub struct Counters {
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub chunks_verified: AtomicU64,
    pub bad_chunks: AtomicU64,
    /// Of `bytes_received`, the bytes that came from web seeds.
    pub web_bytes: AtomicU64,
    /// Chunks of the manifest's boot profile not yet received (0: held, or no profile).
    pub profile_waiting: AtomicU64,
    /// Reads that waited for a chunk outside the boot profile: what the profile missed.
    pub profile_misses: AtomicU64,
}

/// A web seed: its HTTP source and the chunks the scheduler asked of it.
struct WebSeed {
    url: String,
    source: Arc<HttpSource>,
    queue: VecDeque<u32>,
    /// Set while its fetches fail (logged once per outage).
    failing: bool,
}

/// Longest a web seed's fetch retries a lost connection before the request goes back
/// to the scheduler (which may ask a peer, or the same server again).
const WEB_SEED_GIVE_UP: Duration = Duration::from_secs(8);

struct Conn {
    /// Where the peer accepts connections (dialed address, or its IP with BEP 10's `p`).
    listen: Option<SocketAddr>,
    remote: SocketAddr,
    peer_id: [u8; 20],
    writer: Arc<Mutex<BufWriter<TcpStream>>>,
    ids: ExtensionIds,
    info: PeerInfo,
    /// Chunks being assembled from this peer: data, and blocks still missing.
    partial: HashMap<u32, (Vec<u8>, u32)>,
}

struct State {
    store: Store,
    sched: Scheduler,
    conns: HashMap<PeerKey, Conn>,
    known: BTreeSet<SocketAddr>,
    dialing: HashSet<SocketAddr>,
    banned: HashSet<SocketAddr>,
    recent: VecDeque<(u32, Arc<Vec<u8>>)>,
    next_key: PeerKey,
    web: HashMap<PeerKey, WebSeed>,
    /// Block requests received and not yet answered, oldest first: (peer, index, begin,
    /// length). Each connection's writer answers its own, least sent chunks first
    /// ([`policy::serve_pick`]); a `Cancel` takes a request out.
    serve: Vec<(PeerKey, u32, u32, u32)>,
    /// Times each chunk was sent whole.
    times_sent: Vec<u32>,
    /// The boot profile's chunks (`true`) not yet received; empty without a profile.
    profile_left: Vec<bool>,
}

pub struct Swarm {
    pub meta: Arc<Meta>,
    pub options: Options,
    pub counters: Counters,
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    leaving: AtomicBool,
    started: Instant,
    peer_id: [u8; 20],
    /// The address peers reach this node at, once listening.
    pub local: Mutex<Option<SocketAddr>>,
    /// The upload limit's clock: when the bytes sent so far may all have left.
    upload_due: Mutex<Instant>,
    /// This node's part in booting the LAN, told to peers in the extension handshake.
    boot: Mutex<BootRole>,
    /// Background fill on (`Options::fill`, or later: [`Swarm::start_fill`]).
    fill: AtomicBool,
}

/// A connected peer as the swarm sees it.
#[derive(Debug, Clone)]
pub struct PeerView {
    /// Where it accepts peers, else where it connected from.
    pub addr: SocketAddr,
    pub info: PeerInfo,
}

fn random_peer_id() -> [u8; 20] {
    let mut id = *b"-VV0001-000000000000";
    let mut seed = [0u8; 12];
    if getrandom(&mut seed).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        seed.copy_from_slice(&t.to_le_bytes()[..12]);
        seed[0] ^= std::process::id() as u8;
    }
    id[8..].copy_from_slice(&seed);
    id
}

/// Random bytes that never wait: a peer id needs to differ, not to be secret, and early
/// in a boot the kernel's pool may not be ready (reading /dev/urandom then waits about
/// a second for it on Linux 5.18 and later; GRND_INSECURE does not).
fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    // SAFETY: getrandom(2) writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_INSECURE) };
    if n == buf.len() as isize {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Swarm {
    pub fn new(meta: Arc<Meta>, store: Store, mut options: Options) -> Arc<Swarm> {
        let count = meta.chunk_count();
        let peer_id = random_peer_id();
        options.params.spread = u64::from_le_bytes(peer_id[8..16].try_into().unwrap_or_default());
        let mut sched = Scheduler::new(count, options.params.clone());
        for i in 0..count as u32 {
            sched.set_have(i, store.holds(i));
            if options.fill && !store.holds(i) {
                sched.want(i, Want::Fill);
            }
        }
        // The manifest's boot profile: right after blocked reads, before any fill.
        let mut profile_left = Vec::new();
        if let Some(profile) = &meta.manifest.profile {
            sched.set_profile(&profile.chunks);
            profile_left = vec![false; count];
            for &i in &profile.chunks {
                if let Some(slot) = profile_left.get_mut(i as usize) {
                    *slot = !store.holds(i);
                }
            }
        }
        let counters = Counters::default();
        counters.profile_waiting.store(profile_left.iter().filter(|l| **l).count() as u64, Ordering::Relaxed);
        let known = options.bootstrap.iter().copied().collect();
        let fill = options.fill;
        Arc::new(Swarm {
            meta,
            options,
            counters,
            state: Mutex::new(State {
                store,
                sched,
                conns: HashMap::new(),
                known,
                dialing: HashSet::new(),
                banned: HashSet::new(),
                recent: VecDeque::new(),
                next_key: 1,
                web: HashMap::new(),
                serve: Vec::new(),
                times_sent: vec![0; count],
                profile_left,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            started: Instant::now(),
            peer_id,
            local: Mutex::new(None),
            upload_due: Mutex::new(Instant::now()),
            boot: Mutex::new(BootRole::None),
            fill: AtomicBool::new(fill),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking connection thread must not take the node down with it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts listening (when asked), the web seeds' fetchers and the driver thread.
    pub fn start(self: &Arc<Swarm>) -> Result<(), String> {
        for url in &self.options.web_seeds {
            let options = HttpSourceOptions {
                chunk_size: self.meta.layout.chunk,
                size: Some(self.meta.manifest.size),
                give_up_after: Some(WEB_SEED_GIVE_UP),
                // Checked by the swarm like every peer's chunk, not by the source.
                verifier: None,
                ..Default::default()
            };
            let source = Arc::new(HttpSource::open(url, options).map_err(|e| format!("web seed {url}: {e}"))?);
            let key = {
                let mut st = self.lock();
                let key = st.next_key;
                st.next_key += 1;
                st.sched.add_web_seed(key);
                st.web.insert(key, WebSeed { url: url.clone(), source, queue: VecDeque::new(), failing: false });
                key
            };
            for n in 0..self.options.params.pipeline.max(1) {
                let swarm = self.clone();
                std::thread::Builder::new()
                    .name(format!("vfield-web{n}"))
                    .spawn(move || swarm.web_seed_fetcher(key))
                    .map_err(|e| e.to_string())?;
            }
            log::info!("V-FIELD: web seed {url}");
        }
        if let Some(addr) = self.options.listen {
            let listener = TcpListener::bind(addr).map_err(|e| format!("listening on {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            *self.local.lock().unwrap_or_else(|p| p.into_inner()) = Some(local);
            let swarm = self.clone();
            std::thread::Builder::new()
                .name("vfield-accept".into())
                .spawn(move || swarm.accept_loop(listener))
                .map_err(|e| e.to_string())?;
        }
        if self.options.lan {
            // Without it the node still has its bootstrap peers: not a reason to fail.
            if let Err(e) = self.announce_on_lan() {
                log::warn!("V-FIELD: no LAN announcement: {e}");
            }
        }
        let swarm = self.clone();
        std::thread::Builder::new().name("vfield-drive".into()).spawn(move || swarm.drive()).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Announces the swarm on the LAN; peers heard there are dialed like any known peer.
    fn announce_on_lan(self: &Arc<Swarm>) -> Result<(), String> {
        let Some(local) = self.local_addr() else { return Err("the LAN announcement needs a listening node".into()) };
        let only = match local.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => None,
            // A node on loopback has no LAN to announce on.
            std::net::IpAddr::V4(ip) if ip.is_loopback() => return Ok(()),
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => {
                log::info!("V-FIELD: listening on IPv6 {local}: no LAN announcement (BEP 14 over IPv4 only here)");
                return Ok(());
            }
        };
        let port = local.port();
        let (running, heard) = (self.clone(), self.clone());
        let cookie = format!("viver-{}", self.peer_id[8..].iter().map(|b| format!("{b:02x}")).collect::<String>());
        super::lan::announce(
            only,
            cookie,
            self.meta.wire_hash(),
            &self.meta.manifest.id,
            port,
            move || !running.stop.load(Ordering::Relaxed),
            move |addr| {
                let mut st = heard.lock();
                if st.known.insert(addr) {
                    log::info!("V-FIELD: peer {addr} heard on the LAN");
                }
                heard.changed.notify_all();
            },
        )
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut st = self.lock();
        for web in st.web.values() {
            web.source.stop();
        }
        for conn in st.conns.values_mut() {
            if let Ok(w) = conn.writer.lock() {
                let _ = w.get_ref().shutdown(std::net::Shutdown::Both);
            }
        }
        self.changed.notify_all();
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn info(&self, st: &State) -> PeerInfo {
        PeerInfo {
            listen_port: self.local_addr().map_or(0, |a| a.port()),
            listen_addr: self.local_addr().filter(|a| !a.ip().is_unspecified()),
            store_bytes: st.store.budget(&self.meta),
            held_bytes: st.store.held_bytes(&self.meta),
            bytes_sent: self.counters.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.counters.bytes_received.load(Ordering::Relaxed),
            leaving: self.leaving.load(Ordering::Relaxed),
            manifest_size: self.meta.text.len() as u64,
            client: self.options.client.clone(),
            boot: *self.boot.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Starts the background fill of a swarm made without it (a netbooted root: the
    /// boot's own reads first, then the store fills).
    pub fn start_fill(&self) {
        self.fill.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }

    /// Tells the peers this node's new part in booting the LAN.
    pub fn set_boot_role(&self, role: BootRole) {
        *self.boot.lock().unwrap_or_else(|p| p.into_inner()) = role;
        self.broadcast_handshake();
    }

    /// The peers connected now.
    pub fn peers(&self) -> Vec<PeerView> {
        let st = self.lock();
        st.conns.values().map(|c| PeerView { addr: c.listen.unwrap_or(c.remote), info: c.info.clone() }).collect()
    }

    /// Chunk `index`, waiting for the swarm as long as it takes (a reader of the block
    /// device must never get an error for a chunk that is only slow to come).
    pub fn read_chunk(&self, index: u32) -> Result<Arc<Vec<u8>>, String> {
        let mut st = self.lock();
        let since = Instant::now();
        let mut told = Instant::now();
        let mut counted = false;
        loop {
            if let Some(data) = st.store.get(&self.meta, index)? {
                return Ok(data);
            }
            if let Some((_, data)) = st.recent.iter().find(|(i, _)| *i == index) {
                return Ok(data.clone());
            }
            if self.stop.load(Ordering::SeqCst) {
                return Err("stopped".into());
            }
            if !counted {
                counted = true;
                if !self.in_profile(index) {
                    self.counters.profile_misses.fetch_add(1, Ordering::Relaxed);
                }
            }
            st.sched.set_have(index, false);
            st.sched.want(index, Want::Blocked);
            self.changed.notify_all();
            if told.elapsed() >= Duration::from_secs(10) {
                told = Instant::now();
                let holders = st.sched.holders(index);
                if holders == 0 {
                    log::warn!(
                        "V-FIELD: a read waits {:.0?} for chunk {index}: no connected peer holds it; it resumes when a node with the image returns",
                        since.elapsed()
                    );
                } else {
                    log::warn!("V-FIELD: a read waits {:.0?} for chunk {index} ({holders} peers hold it)", since.elapsed());
                }
            }
            st = self.changed.wait_timeout(st, Duration::from_secs(1)).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Chunks wanted and not yet held.
    pub fn missing(&self) -> usize {
        self.lock().sched.missing()
    }

    pub fn held(&self) -> Vec<bool> {
        let st = self.lock();
        st.store.held(&self.meta)
    }

    /// A planned leave: tell the peers, wait (up to `deadline`) until every chunk only this
    /// node holds has another holder, then stop. Returns the chunks left without one.
    pub fn leave(&self, deadline: Duration) -> Vec<u32> {
        self.leaving.store(true, Ordering::SeqCst);
        let until = Instant::now() + deadline;
        self.broadcast_handshake();
        let alone = loop {
            let alone: Vec<u32> = {
                let st = self.lock();
                policy::alone(&self.meta, &st.store, &st.sched)
            };
            if alone.is_empty() || Instant::now() >= until || self.lock().conns.is_empty() {
                break alone;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        self.stop();
        alone
    }

    /// Waits until `bytes` more fit the upload limit (a token bucket of one block's depth).
    fn pace_upload(&self, bytes: u64) {
        let Some(rate) = self.options.upload_limit.filter(|r| *r > 0) else { return };
        let wait = {
            let mut due = self.upload_due.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = (*due).max(now);
            *due = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
            start.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    fn broadcast_handshake(&self) {
        let st = self.lock();
        let payload = wire::extension_handshake(&self.info(&st));
        for conn in st.conns.values() {
            send(&conn.writer, &Message::Extended { id: 0, payload: payload.clone() });
        }
    }

    fn accept_loop(self: Arc<Swarm>, listener: TcpListener) {
        for stream in listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let swarm = self.clone();
            let _ = std::thread::Builder::new().name("vfield-peer".into()).spawn(move || swarm.run_connection(stream, None));
        }
    }

    fn dial(self: &Arc<Swarm>, addr: SocketAddr) {
        let swarm = self.clone();
        let _ = std::thread::Builder::new().name("vfield-dial".into()).spawn(move || {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => swarm.run_connection(stream, Some(addr)),
                Err(e) => log::debug!("V-FIELD: {addr}: {e}"),
            }
            swarm.lock().dialing.remove(&addr);
        });
    }

    /// The scheduler, dialing, peer exchange, keep-alives, fill planning.
    fn drive(self: Arc<Swarm>) {
        let mut last_pex = Instant::now() - PEX_EVERY;
        let mut last_dial = Instant::now() - REDIAL_EVERY;
        let mut last_keepalive = Instant::now();
        let mut last_plan = Instant::now() - Duration::from_secs(1);
        while !self.stop.load(Ordering::SeqCst) {
            let mut st = self.lock();
            if last_plan.elapsed() >= Duration::from_millis(500) {
                last_plan = Instant::now();
                self.plan_fill(&mut st);
            }
            let now = self.started.elapsed();
            let actions = st.sched.tick(now);
            for action in actions {
                match action {
                    Action::Request { peer, index } => {
                        let len = self.meta.chunk_len(index) as u32;
                        if let Some(web) = st.web.get_mut(&peer) {
                            web.queue.push_back(index);
                            // Its fetchers wait on the same condition as everybody.
                            self.changed.notify_all();
                        } else if let Some(conn) = st.conns.get_mut(&peer) {
                            let blocks = len.div_ceil(BLOCK);
                            conn.partial.insert(index, (vec![0u8; len as usize], blocks));
                            let mut w = lock_writer(&conn.writer);
                            for b in 0..blocks {
                                let begin = b * BLOCK;
                                let _ = Message::Request { index, begin, length: BLOCK.min(len - begin) }.write(&mut *w);
                            }
                            let _ = w.flush();
                        }
                    }
                    Action::Cancel { peer, index } => {
                        if let Some(web) = st.web.get_mut(&peer) {
                            web.queue.retain(|&i| i != index);
                        } else if let Some(conn) = st.conns.get_mut(&peer) {
                            let len = self.meta.chunk_len(index) as u32;
                            conn.partial.remove(&index);
                            let mut w = lock_writer(&conn.writer);
                            for b in 0..len.div_ceil(BLOCK) {
                                let begin = b * BLOCK;
                                let _ = Message::Cancel { index, begin, length: BLOCK.min(len - begin) }.write(&mut *w);
                            }
                            let _ = w.flush();
                        }
                    }
                }
            }
            let struck: Vec<PeerKey> = st.conns.keys().copied().filter(|k| st.sched.strikes(*k) >= MAX_STRIKES).collect();
            for key in struck {
                if let Some(conn) = st.conns.get(&key) {
                    log::warn!("V-FIELD: peer {} does not answer requests: dropped", conn.remote);
                    shutdown(&conn.writer);
                }
            }
            if last_keepalive.elapsed() >= KEEPALIVE {
                last_keepalive = Instant::now();
                st.conns.values().for_each(|c| send(&c.writer, &Message::KeepAlive));
            }
            if last_pex.elapsed() >= PEX_EVERY {
                last_pex = Instant::now();
                let listening: Vec<SocketAddr> = st.conns.values().filter_map(|c| c.listen).collect();
                let payload_for = |exclude: Option<SocketAddr>| {
                    let list: Vec<SocketAddr> = listening.iter().copied().filter(|a| Some(*a) != exclude).take(50).collect();
                    wire::pex(&list)
                };
                for conn in st.conns.values() {
                    if conn.ids.pex != 0 {
                        send(&conn.writer, &Message::Extended { id: conn.ids.pex, payload: payload_for(conn.listen) });
                    }
                }
            }
            if last_dial.elapsed() >= REDIAL_EVERY && !self.leaving.load(Ordering::SeqCst) {
                last_dial = Instant::now();
                let connected: HashSet<SocketAddr> = st.conns.values().filter_map(|c| c.listen).collect();
                let me = self.local_addr();
                let room = self.options.max_peers.saturating_sub(st.conns.len() + st.dialing.len());
                let targets: Vec<SocketAddr> = st
                    .known
                    .iter()
                    .copied()
                    .filter(|a| !connected.contains(a) && !st.dialing.contains(a) && !st.banned.contains(a) && Some(*a) != me)
                    .take(room)
                    .collect();
                for addr in targets {
                    st.dialing.insert(addr);
                    self.dial(addr);
                }
            }
            let _ = self.changed.wait_timeout(st, Duration::from_millis(100));
        }
    }

    /// The background fill's wishes ([`policy::plan_fill`]), leaving peers' chunks first.
    fn plan_fill(&self, st: &mut State) {
        if !self.fill.load(Ordering::Relaxed) {
            return;
        }
        let leavers: Vec<PeerKey> = st.conns.iter().filter(|(_, c)| c.info.leaving).map(|(k, _)| *k).collect();
        policy::plan_fill(&self.meta, &st.store, &mut st.sched, self.options.replicas, &leavers);
    }

    /// One connection, from handshake to close.
    fn run_connection(self: &Arc<Swarm>, stream: TcpStream, dialed: Option<SocketAddr>) {
        let remote = match stream.peer_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        if let Err(e) = self.connection(stream, dialed, remote) {
            log::debug!("V-FIELD: {remote}: {e}");
        }
    }

    fn connection(self: &Arc<Swarm>, stream: TcpStream, dialed: Option<SocketAddr>, remote: SocketAddr) -> Result<(), String> {
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
        let writer = Arc::new(Mutex::new(BufWriter::new(stream.try_clone().map_err(|e| e.to_string())?)));
        let mut reader = BufReader::new(stream);
        let ours = Handshake::new(self.meta.wire_hash(), self.peer_id);
        // The dialer speaks first; the answer names the swarm even to an all-zero hash.
        if dialed.is_some() {
            write_raw(&writer, &ours.encode())?;
        }
        let theirs = Handshake::read(&mut reader).map_err(|e| e.to_string())?;
        if theirs.info_hash != ours.info_hash && (dialed.is_some() || theirs.info_hash != [0; 20]) {
            return Err("a different swarm (info hash)".into());
        }
        if theirs.peer_id == self.peer_id {
            return Err("that is this node".into());
        }
        if dialed.is_none() {
            write_raw(&writer, &ours.encode())?;
        }
        if self.lock().conns.len() >= self.options.max_peers + 8 {
            return self.refuse_with_peers(&mut reader, &writer);
        }
        let key = {
            let mut st = self.lock();
            if st.conns.values().any(|c| c.peer_id == theirs.peer_id) {
                return Err("already connected to that peer".into());
            }
            if st.conns.len() >= self.options.max_peers + 8 {
                return Err("too many peers".into());
            }
            let key = st.next_key;
            st.next_key += 1;
            st.sched.add_peer(key, Vec::new());
            st.conns.insert(
                key,
                Conn {
                    listen: dialed,
                    remote,
                    peer_id: theirs.peer_id,
                    writer: writer.clone(),
                    ids: ExtensionIds::default(),
                    info: PeerInfo::default(),
                    partial: HashMap::new(),
                },
            );
            if let Some(addr) = dialed {
                st.known.insert(addr);
            }
            // Hello: what is held (BEP 3: the bitfield comes first), the extension
            // handshake, and no choking (a LAN of
            // cooperating nodes: upload is bounded by requests, not by tit-for-tat).
            let mut w = lock_writer(&writer);
            let _ = Message::Bitfield(wire::bitfield_of(&st.store.held(&self.meta))).write(&mut *w);
            let _ = Message::Extended { id: 0, payload: wire::extension_handshake(&self.info(&st)) }.write(&mut *w);
            let _ = Message::Unchoke.write(&mut *w);
            let _ = Message::Interested.write(&mut *w);
            let _ = w.flush();
            key
        };
        let swarm = self.clone();
        let answers = writer.clone();
        std::thread::Builder::new()
            .name("vfield-serve".into())
            .spawn(move || swarm.serve_loop(key, &answers))
            .map_err(|e| format!("serving thread: {e}"))?;
        let result = self.read_loop(key, &mut reader, &writer);
        let mut st = self.lock();
        st.serve.retain(|r| r.0 != key);
        st.conns.remove(&key);
        st.sched.remove_peer(key);
        self.changed.notify_all();
        result
    }

    /// A peer past the limit: before the connection closes it is given the peers this
    /// node knows (BEP 11 `ut_pex`, after the extension handshakes), so that a joiner whose
    /// only address is a busy seed still finds the swarm.
    fn refuse_with_peers(&self, reader: &mut BufReader<TcpStream>, writer: &Arc<Mutex<BufWriter<TcpStream>>>) -> Result<(), String> {
        let (hello, list) = {
            let st = self.lock();
            let list: Vec<SocketAddr> = st.conns.values().filter_map(|c| c.listen).take(50).collect();
            (wire::extension_handshake(&self.info(&st)), list)
        };
        send(writer, &Message::Extended { id: 0, payload: hello });
        let _ = reader.get_ref().set_read_timeout(Some(Duration::from_secs(3)));
        // Its own hello comes among its first messages (bitfield, unchoke, interested).
        for _ in 0..6 {
            match Message::read(reader) {
                Ok(Message::Extended { id: 0, payload }) => {
                    if let Ok((_, ids)) = wire::parse_extension_handshake(&payload) {
                        if ids.pex != 0 {
                            send(writer, &Message::Extended { id: ids.pex, payload: wire::pex(&list) });
                        }
                    }
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        shutdown(writer);
        Err(format!("too many peers: refused, given {} others to try", list.len()))
    }

    fn read_loop(&self, key: PeerKey, reader: &mut BufReader<TcpStream>, writer: &Arc<Mutex<BufWriter<TcpStream>>>) -> Result<(), String> {
        let count = self.meta.chunk_count();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let message = Message::read(reader).map_err(|e| e.to_string())?;
            match message {
                Message::KeepAlive | Message::Interested | Message::NotInterested => {}
                Message::Choke | Message::Unchoke => {
                    let mut st = self.lock();
                    st.sched.set_choked(key, message == Message::Choke);
                    if message == Message::Choke {
                        if let Some(c) = st.conns.get_mut(&key) {
                            c.partial.clear();
                        }
                    }
                    self.changed.notify_all();
                }
                Message::Bitfield(bits) => {
                    let has = wire::parse_bitfield(&bits, count)?;
                    // A new peer starts choked; BEP 3 puts the bitfield before any unchoke.
                    self.lock().sched.add_peer(key, has);
                    self.changed.notify_all();
                }
                Message::Have(index) => {
                    if index as usize >= count {
                        return Err(format!("have {index}: past the last chunk"));
                    }
                    self.lock().sched.peer_has(key, index, true);
                    self.changed.notify_all();
                }
                Message::Request { index, begin, length } => {
                    if index as usize >= count || length == 0 || length > BLOCK {
                        return Err(format!("request {index}+{begin}/{length}: out of range"));
                    }
                    let chunk_len = self.meta.chunk_len(index) as u64;
                    if begin as u64 + length as u64 > chunk_len {
                        return Err(format!("request {index}+{begin}/{length}: past the chunk's end"));
                    }
                    self.lock().serve.push((key, index, begin, length));
                    self.changed.notify_all();
                }
                Message::Piece { index, begin, data } => self.piece(key, index, begin, data)?,
                Message::Cancel { index, begin, length } => self.lock().serve.retain(|&r| r != (key, index, begin, length)),
                Message::Extended { id: 0, payload } => {
                    let (info, ids) = wire::parse_extension_handshake(&payload)?;
                    let mut st = self.lock();
                    let Some(c) = st.conns.get_mut(&key) else { continue };
                    if c.listen.is_none() && info.listen_port != 0 {
                        // A peer's word for its address is taken only where it cannot point
                        // others at a third host: its own IP, or loopback from loopback.
                        let believable =
                            info.listen_addr.filter(|a| a.ip() == c.remote.ip() || (a.ip().is_loopback() && c.remote.ip().is_loopback()));
                        c.listen = Some(believable.unwrap_or_else(|| SocketAddr::new(c.remote.ip(), info.listen_port)));
                    }
                    if info.leaving && !c.info.leaving {
                        log::info!("V-FIELD: peer {} is leaving", c.remote);
                    }
                    let first = c.ids.pex == 0 && ids.pex != 0;
                    c.ids = ids;
                    c.info = info;
                    let listen = c.listen;
                    if let Some(addr) = listen {
                        st.known.insert(addr);
                    }
                    // The peers this node knows, at once: a joiner (or `status`) should
                    // not wait for the next round of peer exchange.
                    if first {
                        let list: Vec<SocketAddr> =
                            st.conns.values().filter_map(|o| o.listen).filter(|a| Some(*a) != listen).take(50).collect();
                        send(writer, &Message::Extended { id: ids.pex, payload: wire::pex(&list) });
                    }
                    self.changed.notify_all();
                }
                Message::Extended { id: wire::EXT_PEX, payload } => {
                    let peers = wire::parse_pex(&payload)?;
                    let mut st = self.lock();
                    for addr in peers {
                        if !st.banned.contains(&addr) {
                            st.known.insert(addr);
                        }
                    }
                }
                Message::Extended { id: wire::EXT_DONTHAVE, payload } => {
                    let index =
                        <[u8; 4]>::try_from(&payload[..]).map(u32::from_be_bytes).map_err(|_| "lt_donthave: not 4 bytes".to_string())?;
                    self.lock().sched.peer_has(key, index, false);
                }
                Message::Extended { id: wire::EXT_MANIFEST, payload } => {
                    if let ManifestMessage::Request { piece } = ManifestMessage::decode(&payload)? {
                        let st = self.lock();
                        let theirs = st.conns.get(&key).map_or(0, |c| c.ids.manifest);
                        drop(st);
                        let start = piece as usize * wire::MANIFEST_PIECE;
                        let reply = if start < self.meta.text.len() {
                            let end = (start + wire::MANIFEST_PIECE).min(self.meta.text.len());
                            ManifestMessage::Data {
                                piece,
                                total_size: self.meta.text.len() as u64,
                                data: self.meta.text[start..end].to_vec(),
                            }
                        } else {
                            ManifestMessage::Reject { piece }
                        };
                        if theirs != 0 {
                            send(writer, &Message::Extended { id: theirs, payload: reply.encode() });
                        }
                    }
                }
                Message::Extended { .. } => {}
            }
        }
    }

    /// Answers the peer's requests, least sent chunks first across all connections, until
    /// the connection closes.
    fn serve_loop(&self, key: PeerKey, writer: &Arc<Mutex<BufWriter<TcpStream>>>) {
        let mut serving: Option<(u32, Arc<Vec<u8>>)> = None;
        let mut st = self.lock();
        loop {
            if self.stop.load(Ordering::SeqCst) || !st.conns.contains_key(&key) {
                return;
            }
            let queued: Vec<(PeerKey, u32)> = st.serve.iter().map(|r| (r.0, r.1)).collect();
            let times_sent = &st.times_sent;
            let Some(pos) = policy::serve_pick(&queued, key, |i| times_sent.get(i as usize).copied().unwrap_or(0)) else {
                st = self.changed.wait_timeout(st, Duration::from_millis(100)).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
                continue;
            };
            let (_, index, begin, length) = st.serve.remove(pos);
            if serving.as_ref().is_none_or(|(i, _)| *i != index) {
                serving = match st.store.get(&self.meta, index) {
                    Ok(Some(data)) => Some((index, data)),
                    Ok(None) => None,
                    Err(e) => {
                        log::error!("V-FIELD: {e}");
                        None
                    }
                };
            }
            drop(st);
            // Not held (any more): BEP 3 lets a request go unanswered; the requester's
            // timeout moves it elsewhere. lt_donthave says so sooner.
            let answered = serving.as_ref().filter(|(i, _)| *i == index).map(|(_, data)| {
                self.pace_upload(length as u64);
                let block = data[begin as usize..(begin + length) as usize].to_vec();
                send(writer, &Message::Piece { index, begin, data: block });
                self.counters.bytes_sent.fetch_add(length as u64, Ordering::Relaxed);
            });
            st = self.lock();
            if answered.is_some() && (begin + length) as usize == self.meta.chunk_len(index) {
                if let Some(n) = st.times_sent.get_mut(index as usize) {
                    *n += 1;
                }
                self.changed.notify_all();
            }
        }
    }

    /// A block arrived; a complete chunk is verified, kept, announced and handed to readers.
    fn piece(&self, key: PeerKey, index: u32, begin: u32, data: Vec<u8>) -> Result<(), String> {
        let mut st = self.lock();
        let Some(conn) = st.conns.get_mut(&key) else { return Ok(()) };
        let remote = conn.remote;
        let listen = conn.listen;
        let Some((buf, missing)) = conn.partial.get_mut(&index) else {
            // Not asked (or cancelled): dropped, not an offence (cancels cross pieces).
            return Ok(());
        };
        let end = begin as usize + data.len();
        if begin % BLOCK != 0 || end > buf.len() || data.is_empty() {
            return Err(format!("piece {index}+{begin}: not a block of the chunk"));
        }
        buf[begin as usize..end].copy_from_slice(&data);
        self.counters.bytes_received.fetch_add(data.len() as u64, Ordering::Relaxed);
        *missing = missing.saturating_sub(1);
        if *missing > 0 {
            return Ok(());
        }
        let Some((chunk, _)) = conn.partial.remove(&index) else { return Ok(()) };
        if let Err(e) = self.meta.verify(index, &chunk) {
            self.counters.bad_chunks.fetch_add(1, Ordering::Relaxed);
            log::warn!("V-FIELD: peer {remote} sent chunk {index} that fails its check ({e}): dropped and not dialed again");
            st.banned.insert(remote);
            if let Some(addr) = listen {
                st.banned.insert(addr);
                st.known.remove(&addr);
            }
            st.sched.abandoned(key, index);
            return Err("sent a wrong chunk".into());
        }
        self.keep_verified(&mut st, key, index, chunk);
        Ok(())
    }

    /// A verified chunk from `key`: duplicate requests cancelled, kept (or held briefly for
    /// its readers), announced, readers woken.
    fn keep_verified(&self, st: &mut State, key: PeerKey, index: u32, chunk: Vec<u8>) {
        self.counters.chunks_verified.fetch_add(1, Ordering::Relaxed);
        let chunk = Arc::new(chunk);
        let cancels = st.sched.completed(key, index);
        for cancel in cancels {
            if let Action::Cancel { peer, index } = cancel {
                if let Some(c) = st.conns.get_mut(&peer) {
                    c.partial.remove(&index);
                }
                if let Some(web) = st.web.get_mut(&peer) {
                    web.queue.retain(|&i| i != index);
                }
            }
        }
        let state = &mut *st;
        // Read but not kept (`Err`): the reader gets it from `recent`.
        if let Ok(dropped) = policy::keep(&self.meta, &mut state.store, &mut state.sched, index, chunk.clone()) {
            for c in state.conns.values() {
                let mut w = lock_writer(&c.writer);
                let _ = Message::Have(index).write(&mut *w);
                if c.ids.donthave != 0 {
                    for &d in &dropped {
                        let _ = Message::Extended { id: c.ids.donthave, payload: d.to_be_bytes().to_vec() }.write(&mut *w);
                    }
                }
                let _ = w.flush();
            }
        }
        self.note_profile_chunk(state, index);
        state.recent.push_back((index, chunk));
        if state.recent.len() > RECENT {
            state.recent.pop_front();
        }
        self.changed.notify_all();
    }

    /// Is chunk `index` in the manifest's boot profile?
    fn in_profile(&self, index: u32) -> bool {
        self.meta.manifest.profile.as_ref().is_some_and(|p| p.chunks.contains(&index))
    }

    /// Counts a received chunk off the boot profile; says so once the whole profile came.
    fn note_profile_chunk(&self, st: &mut State, index: u32) {
        let Some(slot) = st.profile_left.get_mut(index as usize).filter(|s| **s) else { return };
        *slot = false;
        let before = self.counters.profile_waiting.fetch_sub(1, Ordering::Relaxed);
        if before == 1 {
            log::info!(
                "V-FIELD: boot profile held: {} chunks {:.1?} after the join; {} reads waited for chunks outside it",
                self.meta.manifest.profile.as_ref().map_or(0, |p| p.chunks.len()),
                self.started.elapsed(),
                self.counters.profile_misses.load(Ordering::Relaxed)
            );
        }
    }

    /// One of a web seed's fetchers: takes the chunks the scheduler asked of it, fetches
    /// each with a Range request, checks it and keeps it like a peer's.
    fn web_seed_fetcher(self: Arc<Swarm>, key: PeerKey) {
        while !self.stop.load(Ordering::SeqCst) {
            let job = {
                let mut st = self.lock();
                match st.web.get_mut(&key) {
                    None => return,
                    Some(web) => web.queue.pop_front().map(|index| (index, web.source.clone(), web.url.clone())),
                }
            };
            let Some((index, source, url)) = job else {
                let st = self.lock();
                let _ = self.changed.wait_timeout(st, Duration::from_millis(100));
                continue;
            };
            if self.lock().sched.have(index) {
                continue;
            }
            let fetched = source.fetch_chunk(u64::from(index));
            let mut st = self.lock();
            match fetched {
                Ok(data) => {
                    if let Some(web) = st.web.get_mut(&key) {
                        if web.failing {
                            web.failing = false;
                            log::info!("V-FIELD: web seed {url} answers again");
                        }
                    }
                    if st.sched.have(index) {
                        continue;
                    }
                    let data = Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone());
                    self.counters.bytes_received.fetch_add(data.len() as u64, Ordering::Relaxed);
                    self.counters.web_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    if let Err(e) = self.meta.verify(index, &data) {
                        self.counters.bad_chunks.fetch_add(1, Ordering::Relaxed);
                        log::warn!("V-FIELD: web seed {url} sent chunk {index} that fails its check ({e}): not used");
                        st.sched.abandoned(key, index);
                        continue;
                    }
                    self.keep_verified(&mut st, key, index, data);
                }
                Err(e) => {
                    if let Some(web) = st.web.get_mut(&key) {
                        if !web.failing {
                            web.failing = true;
                            log::warn!("V-FIELD: web seed {url}: chunk {index}: {e}; its requests go to peers meanwhile");
                        }
                    }
                    st.sched.abandoned(key, index);
                    self.changed.notify_all();
                }
            }
        }
    }
}

fn lock_writer(w: &Arc<Mutex<BufWriter<TcpStream>>>) -> MutexGuard<'_, BufWriter<TcpStream>> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

fn send(w: &Arc<Mutex<BufWriter<TcpStream>>>, message: &Message) {
    let mut w = lock_writer(w);
    if message.write(&mut *w).and_then(|_| w.flush()).is_err() {
        let _ = w.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

fn shutdown(w: &Arc<Mutex<BufWriter<TcpStream>>>) {
    let _ = lock_writer(w).get_ref().shutdown(std::net::Shutdown::Both);
}

fn write_raw(w: &Arc<Mutex<BufWriter<TcpStream>>>, bytes: &[u8]) -> Result<(), String> {
    let mut w = lock_writer(w);
    w.write_all(bytes).and_then(|_| w.flush()).map_err(|e| e.to_string())
}

impl crate::nbd::source::BlockSource for Swarm {
    fn size(&self) -> u64 {
        self.meta.manifest.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), crate::nbd::source::SourceError> {
        let end = offset + buf.len() as u64;
        for index in self.meta.layout.covering(offset, end) {
            let (start, stop) = self.meta.layout.range(index);
            let data = self.read_chunk(index as u32).map_err(crate::nbd::source::SourceError::Http)?;
            let from = offset.max(start);
            let to = end.min(stop);
            buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A peer that claims every chunk and answers every request with zeros.
    fn liar(meta: &Meta) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hash = meta.wire_hash();
        let count = meta.chunk_count();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut hello = [0u8; wire::HANDSHAKE_LEN];
                if stream.read_exact(&mut hello).is_err() {
                    continue;
                }
                let _ = stream.write_all(&Handshake::new(hash, *b"-XX0001-liarliarliar").encode());
                let _ = Message::Bitfield(wire::bitfield_of(&vec![true; count])).write(&mut stream);
                let _ = Message::Unchoke.write(&mut stream);
                while let Ok(m) = Message::read(&mut stream) {
                    if let Message::Request { index, begin, length } = m {
                        let _ = Message::Piece { index, begin, data: vec![0; length as usize] }.write(&mut stream);
                    }
                }
            }
        });
        addr
    }

    #[test]
    fn a_peer_sending_wrong_chunks_is_dropped_and_the_file_still_comes_right() {
        let dir = std::env::temp_dir().join(format!("viver-swarm-liar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img.bin");
        let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let meta = Arc::new(Meta::for_file(&path, 256 << 10).unwrap());
        // The seed is slowed so that the joiner surely asks the liar too.
        let options = Options { listen: Some("127.0.0.1:0".parse().unwrap()), upload_limit: Some(4 << 20), ..Default::default() };
        let seed = Swarm::new(meta.clone(), Store::file(&path).unwrap(), options);
        seed.start().unwrap();
        let bootstrap = vec![liar(&meta), seed.local_addr().unwrap()];
        let joiner = Swarm::new(meta.clone(), Store::ram(data.len() as u64), Options { bootstrap, ..Default::default() });
        joiner.start().unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while joiner.missing() > 0 {
            assert!(Instant::now() < until, "{} chunks still missing", joiner.missing());
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut got = Vec::new();
        for i in 0..meta.chunk_count() as u32 {
            got.extend_from_slice(&joiner.read_chunk(i).unwrap());
        }
        assert!(got == data, "the joiner's copy differs");
        assert!(joiner.counters.bad_chunks.load(Ordering::Relaxed) >= 1, "the liar was never asked");
        assert!(joiner.lock().banned.contains(&joiner.options.bootstrap[0]), "the liar is not banned");
        joiner.stop();
        seed.stop();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_joiner_prefetches_its_boot_profile_and_nothing_else_before_the_fill() {
        let dir = std::env::temp_dir().join(format!("viver-swarm-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img.bin");
        let data: Vec<u8> = (0..(2u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut meta = Meta::for_file(&path, 64 << 10).unwrap();
        let profile = vec![30, 2, 17, 5];
        meta.manifest.profile = Some(crate::image::profile::Profile { seconds: 10, chunks: profile.clone() });
        let meta = Arc::new(meta);
        let seed = Swarm::new(
            meta.clone(),
            Store::file(&path).unwrap(),
            Options { listen: Some("127.0.0.1:0".parse().unwrap()), ..Default::default() },
        );
        seed.start().unwrap();
        // As a netbooted node joins: no fill until told.
        let options = Options { bootstrap: vec![seed.local_addr().unwrap()], fill: false, ..Default::default() };
        let joiner = Swarm::new(meta.clone(), Store::ram(data.len() as u64), options);
        assert_eq!(joiner.counters.profile_waiting.load(Ordering::Relaxed), 4);
        joiner.start().unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while joiner.counters.profile_waiting.load(Ordering::Relaxed) > 0 {
            assert!(Instant::now() < until, "the profile did not arrive without a read");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        let held: Vec<u32> = joiner.held().iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| i as u32).collect();
        let mut want = profile.clone();
        want.sort();
        assert_eq!(held, want, "held before the fill: exactly the profile");
        assert_eq!(*joiner.read_chunk(17).unwrap(), data[17 << 16..18 << 16]);
        // A read the profile did not predict is counted as a miss.
        assert_eq!(*joiner.read_chunk(9).unwrap(), data[9 << 16..10 << 16]);
        assert_eq!(joiner.counters.profile_misses.load(Ordering::Relaxed), 1);
        joiner.stop();
        seed.stop();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_seed_refuses_a_joiner_but_gives_it_peers_and_it_completes_from_them() {
        let dir = std::env::temp_dir().join(format!("viver-swarm-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img.bin");
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let meta = Arc::new(Meta::for_file(&path, 64 << 10).unwrap());
        // max_peers 0: the seed accepts 8 connections, the ninth is refused.
        let listen = Some("127.0.0.1:0".parse().unwrap());
        let seed = Swarm::new(meta.clone(), Store::file(&path).unwrap(), Options { listen, max_peers: 0, ..Default::default() });
        seed.start().unwrap();
        let bootstrap = vec![seed.local_addr().unwrap()];
        let mut first = Vec::new();
        for _ in 0..8 {
            let j = Swarm::new(
                meta.clone(),
                Store::ram(data.len() as u64),
                Options { listen, bootstrap: bootstrap.clone(), ..Default::default() },
            );
            j.start().unwrap();
            first.push(j);
        }
        let until = Instant::now() + Duration::from_secs(30);
        while first.iter().any(|j| j.missing() > 0) || seed.peers().len() < 8 {
            assert!(Instant::now() < until, "the first joiners did not complete");
            std::thread::sleep(Duration::from_millis(20));
        }
        let late = Swarm::new(meta.clone(), Store::ram(data.len() as u64), Options { listen, bootstrap, ..Default::default() });
        late.start().unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while late.missing() > 0 {
            assert!(Instant::now() < until, "the refused joiner found no other peer");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!late.peers().iter().any(|p| Some(p.addr) == seed.local_addr()), "the full seed took the late joiner");
        late.stop();
        first.iter().for_each(|j| j.stop());
        seed.stop();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

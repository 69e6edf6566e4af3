//! `viver vfield ...`, the original VIVER's command line on any Linux:
//! - `viver vfield --file IMG [--listen ADDR:PORT]`: seed a kit image (manifest beside
//!   it) or any file (hashes computed at start);
//! - `viver vfield --bootstrap ADDR:PORT --store MB [--listen ADDR:PORT]`: join and hold
//!   up to MB;
//! - `viver vfield fetch --bootstrap ADDR:PORT -o FILE`: the whole image, verified;
//! - `viver vfield status --bootstrap ADDR:PORT [--json]`: the swarm.
//! - `viver vfield simulate [--nodes N ...] [--json]`: the swarm at scale, simulated.
//!
//! `--web-seed http://…/IMG` (joiners and `fetch`) adds a plain HTTP server holding the
//! image as a seed; with no `--bootstrap`, the manifest comes from `--manifest` or from
//! beside the image on that server (`IMG` with `.toml` for its extension).
//!
//! With no address at all, a joiner, `fetch` and `status` ask the LAN segment (BEP 14
//! Local Service Discovery, see [`super::lsd`]); `--lan` makes a seed or joiner announce
//! itself there, and netbooted nodes always do.
//!
//! Ctrl-C (SIGINT) or SIGTERM on a seed or joiner is a planned leave.

use super::meta::Meta;
use super::probe;
use super::store::Store;
use super::swarm::{Options, Swarm};
use super::wire::{self, BootRole};
use crate::image::trust::TrustedKeys;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct VfieldArgs {
    #[command(subcommand)]
    pub command: Option<VfieldCommand>,
    #[command(flatten)]
    pub peer: PeerArgs,
}

#[derive(Args, Debug)]
pub struct PeerArgs {
    /// Seed this file: a kit image (its manifest IMG.toml beside it) or any file.
    #[arg(long, conflicts_with = "bootstrap")]
    pub file: Option<PathBuf>,
    /// A peer of the swarm to join through (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<SocketAddr>,
    /// An HTTP server holding the image file (Range requests) to use as a seed (repeatable).
    #[arg(long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// The manifest (a file or an http:// URL) when no bootstrap peer gives it.
    #[arg(long)]
    pub manifest: Option<String>,
    /// MiB of chunks this node holds for the swarm (RAM).
    /// (256 in RAM; with --store-disk, the whole disk unless given.)
    #[arg(long)]
    pub store: Option<u64>,
    /// Hold the chunks on this disk, partition or file instead of RAM (kept across
    /// restarts). Used only if it is a V-FIELD store already or its first MiB is blank.
    #[arg(long, value_name = "PATH")]
    pub store_disk: Option<PathBuf>,
    /// Accept peers here (default: 0.0.0.0:6881 for a seed, any free port of the
    /// bootstrap's family for a joiner).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Nodes each chunk should be held on, budgets allowing.
    #[arg(long, default_value_t = 2)]
    pub replicas: u32,
    /// Chunk size in KiB for a file without manifest.
    #[arg(long, default_value_t = 256)]
    pub chunk: u64,
    /// Public keys (`viver-kit keygen`) whose signature a joiner requires on the manifest.
    #[arg(long)]
    pub trust: Vec<PathBuf>,
    /// Upload at most this many MiB/s (all peers together).
    #[arg(long)]
    pub upload_limit: Option<f64>,
    /// Write the swarm's BitTorrent v2 `.torrent` here (for standard clients) and go on.
    #[arg(long)]
    pub torrent: Option<PathBuf>,
    /// Announce the swarm on the LAN segment and dial the peers heard there (BEP 14 Local
    /// Service Discovery). Implied for a joiner given no --bootstrap or --web-seed: it
    /// asks the segment.
    #[arg(long)]
    pub lan: bool,
    /// With several swarms on the LAN: the manifest id of the one to join.
    #[arg(long)]
    pub image: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum VfieldCommand {
    /// Download the whole image from the swarm, every chunk verified.
    Fetch {
        /// A peer to start from (none and no --web-seed: ask the LAN).
        #[arg(long)]
        bootstrap: Vec<SocketAddr>,
        /// With several swarms on the LAN: the manifest id of the one to fetch.
        #[arg(long)]
        image: Option<String>,
        #[arg(long = "web-seed", value_name = "URL")]
        web_seeds: Vec<String>,
        #[arg(long)]
        manifest: Option<String>,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long)]
        trust: Vec<PathBuf>,
        /// Give up after this many seconds without completing.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// The swarm as the bootstrap and the peers it knows see it.
    Status {
        /// A peer to ask (none: ask the LAN).
        #[arg(long)]
        bootstrap: Vec<SocketAddr>,
        #[arg(long)]
        image: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Simulate N nodes booting at once from one first node (simulated time, no network).
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Joining nodes per scenario (repeatable; default 1, 10, 100 and 1000).
    #[arg(long)]
    pub nodes: Vec<usize>,
    /// Image size, MiB.
    #[arg(long, default_value_t = 64)]
    pub image: u64,
    /// Chunk size, KiB (the kit's default).
    #[arg(long, default_value_t = crate::image::chunks::DEFAULT_CHUNK >> 10)]
    pub chunk: u64,
    /// Each joiner's store as a share of the image (0.25: a quarter).
    #[arg(long, default_value_t = 0.25)]
    pub store_share: f64,
    /// Nodes each chunk should be held on, budgets allowing (as `--replicas` of a node).
    #[arg(long, default_value_t = 2)]
    pub replicas: u32,
    /// Share of the image's chunks the boot reads (the boot profile).
    #[arg(long, default_value_t = 0.15)]
    pub profile: f64,
    /// Every node's uplink and downlink, Mbit/s.
    #[arg(long, default_value_t = 1000.0)]
    pub mbits: f64,
    /// One-way latency of every link, milliseconds.
    #[arg(long, default_value_t = 0.2)]
    pub latency_ms: f64,
    /// Peers a node dials up to (the first node accepts 8 more).
    #[arg(long, default_value_t = 40)]
    pub max_peers: usize,
    /// Skip the survival scenario (the first node, then a third, leaving).
    #[arg(long)]
    pub no_survival: bool,
    /// The pseudo-random seed (profile, connections, who is killed): same seed, same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// One JSON report per scenario instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: VfieldArgs) -> i32 {
    let result = match args.command {
        Some(VfieldCommand::Fetch { bootstrap, image, web_seeds, manifest, output, trust, timeout }) => {
            let bootstrap = if bootstrap.is_empty() && web_seeds.is_empty() { lan_bootstrap(image.as_deref()) } else { Ok(bootstrap) };
            bootstrap.and_then(|bootstrap| {
                let sources = Sources { bootstrap, web_seeds, manifest };
                fetch(&sources, &output, &trust, Duration::from_secs(timeout))
            })
        }
        Some(VfieldCommand::Status { bootstrap, image, json }) => {
            let bootstrap = if bootstrap.is_empty() { lan_bootstrap(image.as_deref()) } else { Ok(bootstrap) };
            bootstrap.and_then(|bootstrap| status(&bootstrap, json))
        }
        Some(VfieldCommand::Simulate(args)) => simulate(&args),
        None => peer(args.peer),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("viver vfield: {e}");
            1
        }
    }
}

/// The keys named with `--trust`; a key file that cannot be used is an error here (a
/// person named it), not a key quietly left out.
fn trusted(paths: &[PathBuf]) -> Result<TrustedKeys, String> {
    let keys = TrustedKeys::from_files(paths);
    match keys.problems.first() {
        Some(problem) => Err(problem.clone()),
        None => Ok(keys),
    }
}

/// Where a joiner gets the swarm from: peers, web seeds, and where the manifest is.
struct Sources {
    bootstrap: Vec<SocketAddr>,
    web_seeds: Vec<String>,
    manifest: Option<String>,
}

impl Sources {
    /// Listen on the bootstrap's address family (IPv4 when only web seeds are known).
    fn any_port(&self) -> SocketAddr {
        match self.bootstrap.first() {
            Some(SocketAddr::V6(_)) => SocketAddr::from(([0u16; 8], 0)),
            _ => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}

/// How long a node with no address listens to the LAN's answers.
const LAN_SEARCH: Duration = Duration::from_secs(3);

/// The peers of one swarm on the LAN (the one with manifest id `image`, or the only one
/// heard), for a node given no address.
fn lan_bootstrap(image: Option<&str>) -> Result<Vec<SocketAddr>, String> {
    let heard = super::lan::search(LAN_SEARCH)?;
    let mut swarms: std::collections::BTreeMap<[u8; 20], (Option<String>, Vec<SocketAddr>)> = Default::default();
    for h in heard {
        if image.is_none_or(|want| h.image.as_deref() == Some(want)) {
            let entry = swarms.entry(h.infohash).or_insert((h.image.clone(), Vec::new()));
            entry.1.push(h.addr);
        }
    }
    let wanted = image.map_or(String::new(), |id| format!(" with image {id}"));
    match swarms.len() {
        0 => Err(format!("no V-FIELD node{wanted} answered on the LAN within {LAN_SEARCH:?}; give --bootstrap ADDR:PORT")),
        1 => {
            let (_, (id, peers)) = swarms.into_iter().next().ok_or("no swarm")?;
            log::info!("LAN: image {} at {peers:?}", id.as_deref().unwrap_or("(not a VIVER node)"));
            Ok(peers)
        }
        _ => {
            let list: Vec<String> =
                swarms.values().map(|(id, peers)| format!("{} ({} nodes)", id.as_deref().unwrap_or("unnamed"), peers.len())).collect();
            Err(format!("several swarms on the LAN: {}; say --image ID", list.join(", ")))
        }
    }
}

/// The manifest from `--manifest`, else the first bootstrap that gives one, else from
/// beside the first web seed's image; checked against the keys.
fn join_meta(sources: &Sources, keys: &TrustedKeys) -> Result<Meta, String> {
    let accept = |meta: Meta| -> Result<Meta, String> {
        let decision = meta.check_trust(keys)?;
        log::info!("swarm {} ({}): {:?}", meta.manifest.id, meta.manifest.image, decision);
        Ok(meta)
    };
    let from_place = |place: &str| -> Result<Meta, String> {
        let text = if place.starts_with("http://") {
            crate::nbd::source::http::get_file(place, wire::MAX_MANIFEST as u64, Duration::from_secs(20))?
        } else {
            std::fs::read(place).map_err(|e| format!("{place}: {e}"))?
        };
        Meta::from_text(text, place)
    };
    if let Some(place) = &sources.manifest {
        return accept(from_place(place)?);
    }
    let mut problems = Vec::new();
    for &addr in &sources.bootstrap {
        match probe::fetch_meta(addr, Duration::from_secs(10)) {
            Ok(meta) => return accept(meta),
            Err(e) => problems.push(e),
        }
    }
    for url in &sources.web_seeds {
        match from_place(&crate::image::manifest::beside(url)) {
            Ok(meta) => return accept(meta),
            Err(e) => problems.push(e),
        }
    }
    Err(format!("no bootstrap peer or web seed gave a manifest: {}", problems.join("; ")))
}

/// A joiner's store: `--store-disk` (at most `--store` MiB of it) or `--store` MiB of RAM.
fn joiner_store(args: &PeerArgs, meta: &Meta) -> Result<Store, String> {
    match &args.store_disk {
        Some(path) => Store::disk(path, meta, args.store.map(|mib| mib << 20)),
        None => Ok(Store::ram(args.store.unwrap_or(256) << 20)),
    }
}

fn peer(args: PeerArgs) -> Result<(), String> {
    // Before any thread starts, so that every thread inherits the mask.
    let signals = crate::sys::stop_signals::StopSignals::block()?;
    let mut lan_bootstrapped = Vec::new();
    let (meta, store, listen) = match &args.file {
        Some(file) => {
            let meta = Meta::for_file(file, args.chunk << 10)?;
            let store = Store::file(file)?;
            (meta, store, args.listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 6881))))
        }
        None if !args.bootstrap.is_empty() || !args.web_seeds.is_empty() => {
            let sources = Sources { bootstrap: args.bootstrap.clone(), web_seeds: args.web_seeds.clone(), manifest: args.manifest.clone() };
            let meta = join_meta(&sources, &trusted(&args.trust)?)?;
            let store = joiner_store(&args, &meta)?;
            (meta, store, args.listen.unwrap_or_else(|| sources.any_port()))
        }
        None => {
            let bootstrap = lan_bootstrap(args.image.as_deref())?;
            let sources = Sources { bootstrap: bootstrap.clone(), web_seeds: Vec::new(), manifest: args.manifest.clone() };
            let meta = join_meta(&sources, &trusted(&args.trust)?)?;
            lan_bootstrapped = bootstrap;
            let store = joiner_store(&args, &meta)?;
            (meta, store, args.listen.unwrap_or_else(|| sources.any_port()))
        }
    };
    if let Some(path) = &args.torrent {
        std::fs::write(path, meta.torrent()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let options = Options {
        listen: Some(listen),
        lan: args.lan || !lan_bootstrapped.is_empty(),
        bootstrap: [args.bootstrap.clone(), lan_bootstrapped].concat(),
        web_seeds: if args.file.is_some() { Vec::new() } else { args.web_seeds.clone() },
        replicas: args.replicas.max(1),
        upload_limit: args.upload_limit.map(|m| (m * (1 << 20) as f64) as u64),
        ..Default::default()
    };
    let swarm = Swarm::new(Arc::new(meta), store, options);
    swarm.start()?;
    let local = swarm.local_addr().map(|a| a.to_string()).unwrap_or_default();
    println!(
        "vfield: {} {} ({} bytes, {} chunks, info hash {}) on {local}",
        if args.file.is_some() { "seeding" } else { "joined" },
        swarm.meta.manifest.image,
        swarm.meta.manifest.size,
        swarm.meta.chunk_count(),
        crate::image::chunks::hex(&swarm.meta.info_hash)
    );
    let mut complete_told = false;
    loop {
        if let Some(sig) = signals.wait(Duration::from_secs(1)) {
            println!("vfield: signal {sig}: leaving (handing over what only this node holds)");
            let alone = swarm.leave(Duration::from_secs(30));
            if alone.is_empty() {
                println!("vfield: left; every chunk this node held has another holder");
            } else {
                println!("vfield: left; {} chunks had no other holder: {:?}", alone.len(), &alone[..alone.len().min(20)]);
            }
            return Ok(());
        }
        if !complete_told && args.file.is_none() && swarm.missing() == 0 {
            complete_told = true;
            let held = swarm.held().iter().filter(|h| **h).count();
            println!("vfield: store settled: {held} of {} chunks held", swarm.meta.chunk_count());
        }
    }
}

fn fetch(sources: &Sources, output: &std::path::Path, trust: &[PathBuf], timeout: Duration) -> Result<(), String> {
    let meta = join_meta(sources, &trusted(trust)?)?;
    let size = meta.manifest.size;
    let options = Options {
        listen: Some(sources.any_port()),
        bootstrap: sources.bootstrap.clone(),
        web_seeds: sources.web_seeds.clone(),
        ..Default::default()
    };
    let swarm = Swarm::new(Arc::new(meta), Store::ram(size), options);
    swarm.start()?;
    let started = Instant::now();
    while swarm.missing() > 0 {
        if started.elapsed() > timeout {
            swarm.stop();
            return Err(format!("{} of {} chunks still missing after {timeout:?}", swarm.missing(), swarm.meta.chunk_count()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Written through a temporary name: a file under its final name is complete and verified.
    let temp = output.with_extension("part");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&temp).map_err(|e| format!("{}: {e}", temp.display()))?);
        for index in 0..swarm.meta.chunk_count() as u32 {
            let data = swarm.read_chunk(index)?;
            file.write_all(&data).map_err(|e| format!("{}: {e}", temp.display()))?;
        }
        file.into_inner().map_err(|e| e.to_string())?.sync_all().map_err(|e| e.to_string())?;
    }
    std::fs::rename(&temp, output).map_err(|e| format!("{}: {e}", output.display()))?;
    let received = swarm.counters.bytes_received.load(std::sync::atomic::Ordering::Relaxed);
    let web = swarm.counters.web_bytes.load(std::sync::atomic::Ordering::Relaxed);
    println!("vfield: {} ({size} bytes) in {:.1?}, {received} bytes received ({web} from web seeds)", output.display(), started.elapsed());
    swarm.leave(Duration::from_secs(5));
    Ok(())
}

#[derive(serde::Serialize)]
struct StatusPeer {
    addr: String,
    store_bytes: u64,
    held_bytes: u64,
    bytes_sent: u64,
    bytes_received: u64,
    client: String,
    leaving: bool,
    /// Its part in booting the LAN: `none`, `standby`, `serving`.
    boot: BootRole,
}

#[derive(serde::Serialize)]
struct Status {
    info_hash: String,
    image: String,
    chunks: usize,
    holders: Vec<u32>,
    peers: Vec<StatusPeer>,
}

fn status(bootstrap: &[SocketAddr], json: bool) -> Result<(), String> {
    let first = bootstrap
        .iter()
        .find_map(|&a| probe::probe(a, None, true, true, Duration::from_secs(5)).ok())
        .ok_or("no bootstrap peer answered")?;
    let meta = Meta::from_text(first.manifest.clone().unwrap_or_default(), &format!("the manifest from {}", first.addr))?;
    let count = meta.chunk_count();
    let mut seen: std::collections::BTreeMap<SocketAddr, probe::Probe> = std::collections::BTreeMap::new();
    let mut queue: Vec<SocketAddr> = first.peers.clone();
    seen.insert(first.addr, first);
    while let Some(addr) = queue.pop() {
        if seen.contains_key(&addr) || seen.len() >= 1000 {
            continue;
        }
        if let Ok(p) = probe::probe(addr, Some(meta.wire_hash()), false, true, Duration::from_secs(4)) {
            queue.extend(p.peers.iter().copied());
            seen.insert(addr, p);
        }
    }
    let mut holders = vec![0u32; count];
    for p in seen.values() {
        for (i, h) in p.held(count).iter().enumerate() {
            holders[i] += *h as u32;
        }
    }
    let status = Status {
        info_hash: crate::image::chunks::hex(&meta.info_hash),
        image: meta.manifest.image.clone(),
        chunks: count,
        holders,
        peers: seen
            .values()
            .map(|p| StatusPeer {
                addr: p.addr.to_string(),
                store_bytes: p.info.store_bytes,
                held_bytes: p.info.held_bytes,
                bytes_sent: p.info.bytes_sent,
                bytes_received: p.info.bytes_received,
                client: p.info.client.clone(),
                leaving: p.info.leaving,
                boot: p.info.boot,
            })
            .collect(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let min = status.holders.iter().min().copied().unwrap_or(0);
    let unheld = status.holders.iter().filter(|h| **h == 0).count();
    println!("swarm {} ({}): {} chunks, {} peers", &status.info_hash[..16], status.image, count, status.peers.len());
    println!(
        "every chunk held at least {min} times{}",
        if unheld > 0 { format!("; {unheld} chunks held by nobody") } else { String::new() }
    );
    println!("{:<22} {:>10} {:>10} {:>12} {:>12}  boot", "peer", "store MiB", "held MiB", "sent MiB", "received MiB");
    let mib = |b: u64| format!("{:.1}", b as f64 / (1 << 20) as f64);
    for p in &status.peers {
        println!(
            "{:<22} {:>10} {:>10} {:>12} {:>12}  {}",
            p.addr,
            mib(p.store_bytes),
            mib(p.held_bytes),
            mib(p.bytes_sent),
            mib(p.bytes_received),
            match p.boot {
                BootRole::None => "-",
                BootRole::Standby => "standby",
                BootRole::Serving => "serving",
            }
        );
    }
    Ok(())
}

fn simulate(args: &SimulateArgs) -> Result<(), String> {
    if !(args.mbits > 0.0 && args.latency_ms >= 0.0 && args.store_share > 0.0 && args.profile > 0.0) {
        return Err("--mbits, --store-share and --profile must be above 0, --latency-ms at least 0".into());
    }
    let image = args.image << 20;
    let chunk = args.chunk << 10;
    let store = ((image as f64 * args.store_share) as u64 / chunk) * chunk;
    let nodes = if args.nodes.is_empty() { vec![1, 10, 100, 1000] } else { args.nodes.clone() };
    let bps = args.mbits * 1e6 / 8.0;
    let mut reports = Vec::new();
    if !args.json {
        println!(
            "V-FIELD simulated: image {} MiB in {} KiB chunks, store {} MiB per joiner, replicas {}, profile {:.0}% of the chunks, \
             links {} Mbit/s up and down, {} ms one way, up to {} peers",
            args.image,
            args.chunk,
            store >> 20,
            args.replicas,
            args.profile * 100.0,
            args.mbits,
            args.latency_ms,
            args.max_peers
        );
        println!(
            "{:>6} {:>12} {:>12} {:>10} {:>10} {:>10} {:>9} {:>7} {:>6} {:>6} {:>12} {:>9}",
            "nodes", "seed up", "seed up", "profile", "profile", "profile", "filled", "min", "killed", "lost", "blocked", "wall"
        );
        println!(
            "{:>6} {:>12} {:>12} {:>10} {:>10} {:>10} {:>9} {:>7} {:>6} {:>6} {:>12} {:>9}",
            "", "(profiles)", "(filled)", "median s", "p99 s", "max s", "s", "holders", "", "chunks", "p99/max ms", "s"
        );
    }
    for n in nodes {
        let config = super::sim::Config {
            nodes: n,
            image_bytes: image,
            chunk_bytes: chunk,
            store_bytes: store,
            replicas: args.replicas,
            profile_share: args.profile,
            upload_bps: bps,
            download_bps: bps,
            latency_ns: (args.latency_ms * 1e6) as u64,
            max_peers: args.max_peers,
            survival: !args.no_survival,
            rng_seed: args.seed,
            ..Default::default()
        };
        let started = Instant::now();
        let report = super::sim::simulate(config)?;
        let wall = started.elapsed().as_secs_f64();
        if !args.json {
            let (killed, lost, blocked) = match &report.survival {
                Some(s) => {
                    (s.killed.to_string(), s.lost_chunks.to_string(), format!("{:.1}/{:.1}", s.p99_blocked_s * 1e3, s.max_blocked_s * 1e3))
                }
                None => ("-".into(), "-".into(), "-".into()),
            };
            println!(
                "{:>6} {:>12.2} {:>12.2} {:>10.3} {:>10.3} {:>10.3} {:>9} {:>7} {:>6} {:>6} {:>12} {:>9.1}",
                n,
                report.seed_upload_at_profile,
                report.seed_upload,
                report.profile_median_s,
                report.profile_p99_s,
                report.profile_max_s,
                report.filled_s.map_or("never".into(), |f| format!("{f:.2}")),
                report.min_holders,
                killed,
                lost,
                blocked,
                wall
            );
        }
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?);
    } else if let Some(r) = reports.first() {
        println!("(one chunk over one idle link: {:.2} ms; seed upload in image sizes; times simulated)", r.one_chunk_s * 1e3);
    }
    Ok(())
}

//! `viver vfield ...`, the original VIVER's command line on any Linux:
//! - `viver vfield --file IMG [--listen ADDR:PORT]`: seed a kit image (manifest beside
//!   it) or any file (hashes computed at start);
//! - `viver vfield --bootstrap ADDR:PORT --store MB [--listen ADDR:PORT]`: join and hold
//!   up to MB;
//! - `viver vfield fetch --bootstrap ADDR:PORT -o FILE`: the whole image, verified;
//! - `viver vfield status --bootstrap ADDR:PORT [--json]`: the swarm.
//!
//! `--web-seed http://…/IMG` (joiners and `fetch`) adds a plain HTTP server holding the
//! image as a seed; with no `--bootstrap`, the manifest comes from `--manifest` or from
//! beside the image on that server (`IMG` with `.toml` for its extension).
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
    #[arg(long, default_value_t = 256)]
    pub store: u64,
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
}

#[derive(Subcommand, Debug)]
pub enum VfieldCommand {
    /// Download the whole image from the swarm, every chunk verified.
    Fetch {
        #[arg(long, required_unless_present = "web_seeds")]
        bootstrap: Vec<SocketAddr>,
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
        #[arg(long, required = true)]
        bootstrap: Vec<SocketAddr>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: VfieldArgs) -> i32 {
    let result = match args.command {
        Some(VfieldCommand::Fetch { bootstrap, web_seeds, manifest, output, trust, timeout }) => {
            let sources = Sources { bootstrap, web_seeds, manifest };
            fetch(&sources, &output, &trust, Duration::from_secs(timeout))
        }
        Some(VfieldCommand::Status { bootstrap, json }) => status(&bootstrap, json),
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

/// The manifest beside an image on an HTTP server: the file name's extension replaced
/// by `.toml`, as the kit and `viver serve` lay them out.
pub fn manifest_url_beside(image_url: &str) -> String {
    let (dir, name) = image_url.rsplit_once('/').unwrap_or(("", image_url));
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    format!("{dir}/{stem}.toml")
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
        match from_place(&manifest_url_beside(url)) {
            Ok(meta) => return accept(meta),
            Err(e) => problems.push(e),
        }
    }
    Err(format!("no bootstrap peer or web seed gave a manifest: {}", problems.join("; ")))
}

fn peer(args: PeerArgs) -> Result<(), String> {
    // Before any thread starts, so that every thread inherits the mask.
    let signals = crate::sys::stop_signals::StopSignals::block()?;
    let (meta, store, listen) = match &args.file {
        Some(file) => {
            let meta = Meta::for_file(file, args.chunk << 10)?;
            let store = Store::file(file)?;
            (meta, store, args.listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 6881))))
        }
        None if !args.bootstrap.is_empty() || !args.web_seeds.is_empty() => {
            let sources = Sources { bootstrap: args.bootstrap.clone(), web_seeds: args.web_seeds.clone(), manifest: args.manifest.clone() };
            let meta = join_meta(&sources, &trusted(&args.trust)?)?;
            (meta, Store::ram(args.store << 20), args.listen.unwrap_or_else(|| sources.any_port()))
        }
        None => return Err("say --file IMG to seed, or --bootstrap ADDR:PORT (or --web-seed URL) to join".into()),
    };
    if let Some(path) = &args.torrent {
        std::fs::write(path, meta.torrent()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let options = Options {
        listen: Some(listen),
        bootstrap: args.bootstrap.clone(),
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

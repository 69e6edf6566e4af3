//! A netbooted node as a standby boot server: when the node that booted the LAN is
//! gone, one standby takes its place, so the LAN keeps booting.
//!
//! - Before it is needed, a standby fetches what a boot server hands out and the image
//!   does not hold (kernel, initrd, iPXE binaries) from the boot server, keeps them in
//!   the daemon's locked memory, and tells its V-FIELD peers it is a standby. Not every
//!   node: that would double what the boot server sends each client. A node waits a
//!   while after its boot (its boot's reads go first; the wait differs from node to
//!   node), then becomes a standby only if fewer than [`STANDBYS`] of its peers are, and
//!   looks again whenever one leaves.
//! - It watches the boot server (its HTTP port, every [`WATCH_EVERY`]) and the peers: a
//!   peer that says it serves is the boot server from then on.
//! - When the boot server has not answered for [`GONE_AFTER`] and no peer serves, the
//!   standbys elect one: the lowest IPv4 address among the connected standbys and
//!   itself. Each computes the same answer from what it sees; two standbys with
//!   different views would both start, and then the DHCP safety rules of every boot
//!   server apply between them (a server that sees another PXE server answer goes
//!   silent).
//! - The successor serves exactly what the first did: the same script words, DHCP
//!   mode, kernel and initrd; the image over HTTP from V-FIELD (every byte verified),
//!   and its own V-FIELD address in the clients' command line.

use crate::nbd::source::http::get_file;
use crate::serve::dhcp::probe::Setting;
use crate::serve::files::{Blocks, Input, Ipxe, Served, Source, INITRD_PATH, IPXE_BINARIES, KERNEL_PATH};
use crate::serve::{ServeConfig, Stop};
use crate::vfield::swarm::Swarm;
use crate::vfield::wire::BootRole;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the boot server is checked.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);
/// The boot server is gone when it has not answered for this long.
pub const GONE_AFTER: Duration = Duration::from_secs(10);
/// Largest kernel or initrd taken (they live in locked memory).
const MAX_BOOT_FILE: u64 = 256 << 20;
/// How long fetching the boot files may take before the node gives up being a standby.
const FETCH_WAIT: Duration = Duration::from_secs(120);
/// Standbys a LAN keeps (each holds the boot files: about 17 MiB for Debian's).
pub const STANDBYS: usize = 2;
/// The wait after the boot before a node considers standing by: at least the first,
/// plus up to the second, spread by the node's address.
const SETTLE: Duration = Duration::from_secs(5);
const SPREAD: Duration = Duration::from_secs(20);

/// What a standby needs to know of the boot it came from.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The boot interface and this node's address on it.
    pub interface: String,
    pub address: Ipv4Addr,
    /// The boot server's HTTP address (`10.77.0.1:80`).
    pub server: SocketAddr,
    /// The image's name in the server's URLs.
    pub image_name: String,
    /// The words of the command line the boot server gave its clients, less those it sets
    /// per client or per server (`initrd=`, `BOOTIF=`, `viver.net=`, `viver.vfield=`).
    pub cmdline: String,
    pub dhcp: Setting,
    /// The port this node's V-FIELD peer listens on.
    pub vfield_port: u16,
}

/// The words a successor passes on: the command line less what each server or client
/// sets for itself.
pub fn inherited_words(cmdline: &str) -> String {
    let own = |w: &str| ["initrd=", "BOOTIF=", "viver.net=", "viver.vfield="].iter().any(|p| w.starts_with(p));
    cmdline.split_whitespace().filter(|w| !own(w)).collect::<Vec<_>>().join(" ")
}

/// The standby elected among `standbys` (the connected peers that are standbys, and this
/// node): the lowest address.
pub fn elect(me: Ipv4Addr, standbys: &[Ipv4Addr]) -> Ipv4Addr {
    standbys.iter().copied().chain(std::iter::once(me)).min().unwrap_or(me)
}

/// Starts the standby's thread.
pub fn start(swarm: Arc<Swarm>, plan: Plan) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new().name("viver-standby".into()).spawn(move || run(swarm, plan)).map_err(|e| e.to_string())
}

/// How long this node waits before it considers standing by: a spread by its address,
/// so that nodes booted together do not all fetch the boot files at once.
pub fn settle_wait(address: Ipv4Addr) -> Duration {
    let h = u32::from(address).wrapping_mul(0x9e37_79b9) >> 8;
    SETTLE + SPREAD.mul_f64(f64::from(h % 1000) / 1000.0)
}

/// Peers that stand by or serve.
fn standing(swarm: &Swarm) -> usize {
    swarm.peers().iter().filter(|p| p.info.boot != BootRole::None).count()
}

fn run(swarm: Arc<Swarm>, plan: Plan) {
    std::thread::sleep(settle_wait(plan.address));
    let mut told = false;
    while standing(&swarm) >= STANDBYS {
        if !told {
            log::info!("standby: {STANDBYS} peers stand by already; this node does not (it looks again if one leaves)");
            told = true;
        }
        std::thread::sleep(WATCH_EVERY);
    }
    let files = match fetch_boot_files(&plan) {
        Ok(files) => files,
        Err(e) => {
            log::warn!("standby: {e}; this node will not take over the boot server");
            return;
        }
    };
    swarm.set_boot_role(BootRole::Standby);
    log::info!(
        "standby: kernel {} KiB, initrd {} KiB, {} iPXE binaries held; takes over if {} is gone for {:?}",
        files.kernel.len() >> 10,
        files.initrd.len() >> 10,
        files.ipxe.len(),
        plan.server,
        GONE_AFTER
    );
    let mut server = plan.server;
    let mut last_seen = Instant::now();
    let mut told_winner = None;
    loop {
        std::thread::sleep(WATCH_EVERY);
        let peers = swarm.peers();
        if let Some(serving) = peers.iter().find(|p| p.info.boot == BootRole::Serving) {
            let now_serving = SocketAddr::new(serving.addr.ip(), plan.server.port());
            if now_serving != server {
                log::info!("standby: {} serves the LAN's boot now", serving.addr.ip());
                server = now_serving;
            }
            last_seen = Instant::now();
            continue;
        }
        if TcpStream::connect_timeout(&server, Duration::from_secs(1)).is_ok() {
            last_seen = Instant::now();
            continue;
        }
        if last_seen.elapsed() < GONE_AFTER {
            continue;
        }
        let standbys: Vec<Ipv4Addr> = peers
            .iter()
            .filter(|p| p.info.boot == BootRole::Standby)
            .filter_map(|p| match p.addr.ip() {
                IpAddr::V4(ip) => Some(ip),
                IpAddr::V6(_) => None,
            })
            .collect();
        let winner = elect(plan.address, &standbys);
        if winner != plan.address {
            if told_winner != Some(winner) {
                log::info!("standby: the boot server {} is gone; {winner} is elected among {} standbys", server.ip(), standbys.len() + 1);
                told_winner = Some(winner);
            }
            continue;
        }
        log::warn!(
            "standby: the boot server {} has not answered for {:.0?}; this node ({}) is elected among {} standbys and takes over",
            server.ip(),
            last_seen.elapsed(),
            plan.address,
            standbys.len() + 1
        );
        match take_over(&swarm, &plan, files) {
            Ok(running) => {
                swarm.set_boot_role(BootRole::Serving);
                log::info!("standby: serving the LAN's boot on {} ({})", plan.interface, plan.address);
                running.wait();
            }
            Err(e) => log::error!("standby: cannot serve the LAN's boot: {e}"),
        }
        return;
    }
}

struct BootFiles {
    kernel: Vec<u8>,
    initrd: Vec<u8>,
    ipxe: BTreeMap<String, Arc<Vec<u8>>>,
    missing: Vec<String>,
}

fn fetch_boot_files(plan: &Plan) -> Result<BootFiles, String> {
    let base = format!("http://{}", plan.server);
    let get = |path: &str| get_file(&format!("{base}{path}"), MAX_BOOT_FILE, FETCH_WAIT);
    let kernel = get(KERNEL_PATH)?;
    let initrd = get(INITRD_PATH)?;
    let mut ipxe = BTreeMap::new();
    let mut missing = Vec::new();
    for binary in IPXE_BINARIES {
        match get_file(&format!("{base}/ipxe/{binary}"), MAX_BOOT_FILE, Duration::from_secs(10)) {
            Ok(bytes) => {
                ipxe.insert(binary.to_string(), Arc::new(bytes));
            }
            Err(_) => missing.push(binary.to_string()),
        }
    }
    Ok(BootFiles { kernel, initrd, ipxe, missing })
}

fn take_over(swarm: &Arc<Swarm>, plan: &Plan, files: BootFiles) -> Result<crate::serve::Running, String> {
    let image = Input { source: Source::Blocks(Blocks(swarm.clone())), label: format!("{} through V-FIELD", plan.image_name) };
    let cmdline = format!("viver.vfield={}:{} {}", plan.address, plan.vfield_port, plan.cmdline).trim().to_string();
    let served = Served {
        image,
        image_name: plan.image_name.clone(),
        kernel: Input::bytes(files.kernel, format!("kernel from {}", plan.server.ip())),
        initrd: Input::bytes(files.initrd, format!("initrd from {}", plan.server.ip())),
        // The manifest the node booted with, as the swarm holds it (signature and all).
        manifest: Some(Input::bytes(swarm.meta.text.clone(), format!("manifest from {}", plan.server.ip()))),
        ipxe: Ipxe::Loaded { files: files.ipxe, missing: files.missing },
        cmdline,
    };
    let config = ServeConfig {
        served,
        interface: Some(plan.interface.clone()),
        address: Some(plan.address),
        auto_address: false,
        address_wait: Duration::from_secs(5),
        dhcp: plan.dhcp,
        range: None,
        router: None,
        lease_secs: 3600,
        // The daemon's working directory (`/run/viver/serve`, set before the hand-over).
        state_dir: PathBuf::from("."),
        http_port: plan.server.port(),
        tftp_port: 69,
        survey_wait: Duration::from_secs(2),
        survey_interval: Duration::from_secs(60),
        http_limits: Default::default(),
        vfield_port: None,
    };
    crate::serve::start(config, Stop::new()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_address_among_the_standbys_is_elected_whoever_counts() {
        let a: Ipv4Addr = "10.77.0.128".parse().unwrap();
        let b: Ipv4Addr = "10.77.0.129".parse().unwrap();
        let c: Ipv4Addr = "10.77.0.13".parse().unwrap();
        // Every node sees the others (not itself) and reaches the same answer.
        assert_eq!(elect(a, &[b, c]), c);
        assert_eq!(elect(b, &[a, c]), c);
        assert_eq!(elect(c, &[a, b]), c);
        assert_eq!(elect(a, &[]), a);
    }

    #[test]
    fn nodes_booted_together_wait_different_times_before_standing_by() {
        let waits: Vec<Duration> = (2..=21u8).map(|n| settle_wait(Ipv4Addr::new(10, 77, 0, n))).collect();
        assert!(waits.iter().all(|w| *w >= SETTLE && *w <= SETTLE + SPREAD), "{waits:?}");
        let mut sorted = waits.clone();
        sorted.sort();
        sorted.dedup();
        assert!(sorted.len() >= 18, "20 neighbours should mostly differ: {waits:?}");
        assert!(sorted[sorted.len() - 1] - sorted[0] >= SPREAD / 2, "spread over the window: {waits:?}");
    }

    #[test]
    fn a_successor_passes_on_the_servers_words_not_the_per_client_ones() {
        let cmdline = "initrd=initrd.img viver.net=http://10.77.0.1:80/image/lan.squashfs BOOTIF=01-52-54-00-77-00-01 \
                       viver.vfield=10.77.0.1:6881 console=ttyS0 panic=-1 viver.panic=halt";
        assert_eq!(inherited_words(cmdline), "console=ttyS0 panic=-1 viver.panic=halt");
    }
}

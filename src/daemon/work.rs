//! What the daemon does on `/init`'s commands, and keeps doing after the hand-over.

use super::control::{Command, Reply, VfieldJoin};
use crate::image::manifest::Manifest;
use crate::image::profile::{Recorded, RECORDED_FILE};
use crate::nbd::attach::{self, Attached};
use crate::nbd::source::record::Recorder;
use crate::nbd::source::{BlockSource, HttpSource, HttpSourceOptions, ManifestChunks};
use crate::serve::dhcp::probe::Setting;
use crate::vfield::{meta::Meta, store::Store, swarm, swarm::Swarm};
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Reads the kernel may have in flight on one device.
const NBD_WORKERS: usize = 4;

/// How long after the attach a netbooted node starts filling its V-FIELD store.
const FILL_AFTER: Duration = Duration::from_secs(15);

/// A standby boot server's state directory (the working directory of its daemon).
const STANDBY_STATE: &str = "/run/viver/serve";

/// Longest wait for the device of `viver.vfield.disk` to appear.
const DISK_WAIT: Duration = Duration::from_secs(10);

/// Where the boot's reports go; a recorded boot profile too.
const REPORT_DIR: &str = "/run/viver";

#[derive(Default)]
pub struct Work {
    devices: Vec<Device>,
    servers: Vec<std::thread::JoinHandle<()>>,
    standing_by: bool,
}

struct Device {
    attached: Attached,
    source: Source,
    url: String,
}

/// Where a device's chunks come from.
enum Source {
    /// The one HTTP server.
    Http(Arc<HttpSource>),
    /// V-FIELD's peers, the HTTP server a web seed among them.
    Vfield(Arc<Swarm>),
}

impl Source {
    fn stop(&self) {
        match self {
            Source::Http(http) => http.stop(),
            // A planned leave: what only this node holds goes to a peer first.
            Source::Vfield(swarm) => {
                swarm.leave(Duration::from_secs(5));
            }
        }
    }

    fn block_source(&self) -> Arc<dyn BlockSource> {
        match self {
            Source::Http(http) => http.clone(),
            Source::Vfield(swarm) => swarm.clone(),
        }
    }
}

impl Work {
    pub fn handle(&mut self, command: Command, _fds: Vec<OwnedFd>) -> Reply {
        match command {
            Command::AttachNbd { url, manifest, index, fill, vfield, record } => {
                match self.attach_nbd(&url, &manifest, index, fill, vfield, record) {
                    Ok(reply) => reply,
                    Err(message) => {
                        log::error!("nbd{index}: {message}");
                        Reply::Error { message }
                    }
                }
            }
            Command::Serve { image, manifest, medium, cmdline, state_dir, interface, dhcp, range } => {
                match super::boot_server::start(
                    &image,
                    manifest.as_deref(),
                    medium.as_deref(),
                    &cmdline,
                    &state_dir,
                    interface,
                    &dhcp,
                    range.as_deref(),
                ) {
                    Ok((thread, kernel, initrd)) => {
                        self.servers.push(thread);
                        Reply::Serving { kernel, initrd }
                    }
                    Err(message) => {
                        log::error!("boot server: {message}");
                        Reply::Error { message }
                    }
                }
            }
            Command::Standby { interface, address, server, image_name, cmdline, dhcp, vfield_port } => {
                match self.stand_by(interface, &address, &server, image_name, &cmdline, &dhcp, vfield_port) {
                    Ok(()) => Reply::StandingBy,
                    Err(message) => {
                        log::warn!("standby: {message}");
                        Reply::Error { message }
                    }
                }
            }
            Command::DetachNbd { index } => match self.devices.iter().position(|d| d.attached.index == index) {
                Some(at) => {
                    let device = self.devices.remove(at);
                    device.source.stop();
                    match device.attached.detach() {
                        Ok(_) => {
                            log::info!("/dev/nbd{index} disconnected");
                            Reply::Detached
                        }
                        Err(e) => Reply::Error { message: format!("/dev/nbd{index}: {e}") },
                    }
                }
                None => Reply::Error { message: format!("/dev/nbd{index} is not served here") },
            },
            Command::Stats => {
                let (mut fetched, mut chunks, mut requests, mut failures, mut from_peers) = (0, 0, 0, 0, 0);
                for d in &self.devices {
                    match &d.source {
                        Source::Http(http) => {
                            fetched += http.stats.bytes_fetched.load(Ordering::Relaxed);
                            chunks += http.stats.chunks_ready.load(Ordering::Relaxed);
                            requests += http.stats.requests.load(Ordering::Relaxed);
                            failures += http.stats.verify_failures.load(Ordering::Relaxed);
                        }
                        Source::Vfield(swarm) => {
                            let c = &swarm.counters;
                            let received = c.bytes_received.load(Ordering::Relaxed);
                            fetched += received;
                            from_peers += received.saturating_sub(c.web_bytes.load(Ordering::Relaxed));
                            chunks += c.chunks_verified.load(Ordering::Relaxed);
                            failures += c.bad_chunks.load(Ordering::Relaxed);
                        }
                    }
                }
                Reply::Stats { bytes_fetched: fetched, chunks_verified: chunks, requests, verify_failures: failures, from_peers }
            }
        }
    }

    fn attach_nbd(
        &mut self,
        url: &str,
        manifest_path: &str,
        index: u32,
        fill: bool,
        vfield: Option<VfieldJoin>,
        record: Option<u64>,
    ) -> Result<Reply, String> {
        let (source, manifest) = match vfield {
            None => {
                let manifest = Manifest::load(std::path::Path::new(manifest_path)).map_err(|e| e.to_string())?;
                let verifier = ManifestChunks::from_manifest(&manifest)?;
                let options = HttpSourceOptions { verifier: Some(Arc::new(verifier)), size: Some(manifest.size), ..Default::default() };
                let http = Arc::new(HttpSource::open(url, options).map_err(|e| format!("{url}: {e}"))?);
                (Source::Http(http), manifest)
            }
            Some(join) => {
                let swarm = join_swarm(url, manifest_path, &join)?;
                let manifest = swarm.meta.manifest.clone();
                (Source::Vfield(swarm), manifest)
            }
        };
        let manifest_id = &manifest.id;
        let mut block_source = source.block_source();
        if let Some(seconds) = record {
            block_source = record_profile(block_source, &manifest, Duration::from_secs(seconds))?;
        }
        let size = block_source.size();
        let attached = attach::attach(
            Some(index),
            block_source.clone(),
            |c| {
                // No request timeout: a cut link stalls reads until it is back (the
                // source retries for ever), it never fails them.
                c.timeout = 0;
                c.dead_conn_timeout = 3600;
            },
            NBD_WORKERS,
        )
        .map_err(|e| format!("/dev/nbd{index}: {e}"))?;
        let through = if matches!(source, Source::Vfield(_)) { " through V-FIELD" } else { "" };
        log::info!("/dev/nbd{} serves {url}{through} ({size} bytes, every chunk checked against {manifest_id})", attached.index);
        if let (true, Source::Http(http)) = (fill, &source) {
            let http = http.clone();
            std::thread::spawn(move || match http.fill() {
                Ok(()) => log::info!("the whole image is in RAM"),
                Err(e) => log::warn!("background fill stopped: {e}"),
            });
        }
        let device = format!("/dev/nbd{}", attached.index);
        self.devices.push(Device { attached, source, url: url.to_string() });
        Ok(Reply::Attached { device, size })
    }

    #[allow(clippy::too_many_arguments)]
    fn stand_by(
        &mut self,
        interface: String,
        address: &str,
        server: &str,
        image_name: String,
        cmdline: &str,
        dhcp: &str,
        vfield_port: u16,
    ) -> Result<(), String> {
        let swarm = self
            .devices
            .iter()
            .find_map(|d| match &d.source {
                Source::Vfield(swarm) => Some(swarm.clone()),
                Source::Http(_) => None,
            })
            .ok_or("no device is served through V-FIELD")?;
        let plan = super::standby::Plan {
            interface,
            address: address.parse().map_err(|_| format!("{address:?} is not an IPv4 address"))?,
            server: server.parse().map_err(|_| format!("{server:?} is not ADDRESS:PORT"))?,
            image_name,
            cmdline: super::standby::inherited_words(cmdline),
            dhcp: Setting::from_word(dhcp).ok_or_else(|| format!("DHCP mode {dhcp:?} is not auto, force, full, proxy or off"))?,
            vfield_port,
        };
        // Leases and serve.json go to the real /run after the hand-over (it is moved, not
        // copied): the working directory is set now, while the path still resolves.
        std::fs::create_dir_all(STANDBY_STATE).map_err(|e| format!("{STANDBY_STATE}: {e}"))?;
        std::env::set_current_dir(STANDBY_STATE).map_err(|e| format!("{STANDBY_STATE}: {e}"))?;
        self.servers.push(super::standby::start(swarm, plan)?);
        self.standing_by = true;
        Ok(())
    }

    pub fn describe_after_hand_over(&self) -> String {
        let mut list: Vec<String> = self
            .devices
            .iter()
            .map(|d| match &d.source {
                Source::Http(_) => format!("/dev/nbd{} from {}", d.attached.index, d.url),
                Source::Vfield(swarm) => format!(
                    "/dev/nbd{} through V-FIELD (port {}, web seed {})",
                    d.attached.index,
                    swarm.local_addr().map_or(0, |a| a.port()),
                    d.url
                ),
            })
            .collect();
        if self.standing_by {
            list.push("standing by as the LAN's next boot server".into());
        } else if !self.servers.is_empty() {
            list.push("the LAN as its boot server".into());
        }
        if list.is_empty() {
            return "hand-over: nothing to serve".into();
        }
        format!("hand-over done; serving {}", list.join(", "))
    }

    /// Serves until every device was disconnected (by `viver nbd detach`, or never: the
    /// kernel powers off with the root still served).
    pub fn serve_for_ever(self) -> i32 {
        loop {
            let devices_done = self.devices.iter().all(|d| d.attached.finished());
            let servers_done = self.servers.iter().all(|t| t.is_finished());
            if devices_done && servers_done {
                if !self.devices.is_empty() {
                    log::info!("every device was disconnected; exiting");
                }
                return 0;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Joins the swarm for a netbooted root: the manifest `/init` fetched and accepted, the
/// peers the boot server named, the image's URL as a web seed (so the boot never depends
/// on a peer answering), chunks held in RAM (the daemon's memory is locked).
fn join_swarm(url: &str, manifest_path: &str, join: &VfieldJoin) -> Result<Arc<Swarm>, String> {
    let text = std::fs::read(manifest_path).map_err(|e| format!("{manifest_path}: {e}"))?;
    let meta = Meta::from_text(text, manifest_path)?;
    let store_bytes = join.store.unwrap_or_else(|| default_store(meta.manifest.size));
    let mut bootstrap = Vec::new();
    for peer in &join.peers {
        bootstrap.push(peer.parse::<std::net::SocketAddr>().map_err(|_| format!("V-FIELD peer {peer:?} is not ADDRESS:PORT"))?);
    }
    let mut web_seeds = vec![url.to_string()];
    web_seeds.extend(join.web_seeds.iter().cloned());
    let options = swarm::Options {
        // The store fills after FILL_AFTER: until then the boot's reads have every
        // request slot.
        fill: false,
        listen: Some(std::net::SocketAddr::from(([0, 0, 0, 0], join.port))),
        bootstrap,
        replicas: join.replicas.max(1),
        web_seeds,
        // Nodes on the segment find each other without the boot server.
        lan: true,
        ..Default::default()
    };
    log::info!(
        "V-FIELD: joining {} at {:?}, holding up to {} KiB, {} replicas",
        meta.manifest.id,
        join.peers,
        store_bytes >> 10,
        options.replicas
    );
    let store = match &join.disk {
        Some(disk) => disk_store(disk, &meta, join.store).unwrap_or_else(|e| {
            log::warn!("V-FIELD: {e}; holding up to {} KiB in RAM instead", store_bytes >> 10);
            Store::ram(store_bytes)
        }),
        None => Store::ram(store_bytes),
    };
    let swarm = Swarm::new(Arc::new(meta), store, options);
    swarm.start()?;
    let filler = swarm.clone();
    std::thread::Builder::new()
        .name("vfield-fill-later".into())
        .spawn(move || {
            std::thread::sleep(FILL_AFTER);
            filler.start_fill();
        })
        .map_err(|e| e.to_string())?;
    Ok(swarm)
}

/// Puts a [`Recorder`] in front of `source`; the recording goes to `/run/viver` through a
/// directory descriptor opened now, so it still lands in the booted system's `/run`
/// after the hand-over moved that mount (the daemon's own root stays the old one).
fn record_profile(source: Arc<dyn BlockSource>, manifest: &Manifest, window: Duration) -> Result<Arc<dyn BlockSource>, String> {
    use nix::fcntl::{openat, renameat, OFlag};
    use nix::sys::stat::Mode;
    let chunks = manifest.chunks.as_ref().ok_or("the manifest has no chunks to record a profile in")?;
    std::fs::create_dir_all(REPORT_DIR).map_err(|e| format!("{REPORT_DIR}: {e}"))?;
    let dir = std::fs::File::open(REPORT_DIR).map_err(|e| format!("{REPORT_DIR}: {e}"))?;
    let save = move |recorded: &Recorded| -> Result<(), String> {
        let temp = format!(".{RECORDED_FILE}.new");
        let failed = |e: nix::Error| format!("{REPORT_DIR}/{temp}: {e}");
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC;
        let fd = openat(&dir, temp.as_str(), flags, Mode::from_bits_truncate(0o644)).map_err(failed)?;
        let mut file = std::fs::File::from(fd);
        std::io::Write::write_all(&mut file, recorded.to_toml().as_bytes()).map_err(|e| format!("{REPORT_DIR}/{temp}: {e}"))?;
        drop(file);
        renameat(&dir, temp.as_str(), &dir, RECORDED_FILE).map_err(|e| format!("{REPORT_DIR}/{RECORDED_FILE}: {e}"))
    };
    log::info!("boot profile: recording the first {} s of reads into {REPORT_DIR}/{RECORDED_FILE}", window.as_secs());
    let recorder = Recorder::start(source, chunks.layout(manifest.size), &manifest.id, window, save)?;
    Ok(recorder)
}

/// The store on the disk the user named, once its driver made the device (10 s at most).
fn disk_store(disk: &str, meta: &Meta, budget: Option<u64>) -> Result<Store, String> {
    let path = std::path::Path::new(disk);
    let deadline = std::time::Instant::now() + DISK_WAIT;
    while !path.exists() {
        if std::time::Instant::now() >= deadline {
            return Err(format!("viver.vfield.disk={disk}: no such device after {DISK_WAIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Store::disk(path, meta, budget).map_err(|e| format!("viver.vfield.disk={disk}: {e}"))
}

/// A quarter of the RAM, at most the whole image: a diskless node's RAM also holds its
/// copy-on-write layer and its programs.
fn default_store(image_size: u64) -> u64 {
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(256 << 20, |kib| kib << 10);
    (ram / 4).min(image_size)
}

//! `viver serve`: the boot server of a LAN (DHCP/proxyDHCP + TFTP + HTTP in one
//! program, std threads and blocking sockets, logs through `log`).
//!
//! - [`dhcp`]: who answers DHCP on the segment, and what VIVER answers (full, proxy,
//!   silent), with leases kept in the state directory.
//! - [`tftp`]: read-only TFTP of the iPXE binaries for PXE firmware.
//! - [`http`]: kernel, initrd, image, manifest, iPXE script and binaries.
//! - [`files`]: the catalogue of what is served and the iPXE script.
//! - [`boot_files`]: what a boot-server node serves (kernel and initrd from its medium
//!   or its image, iPXE binaries), all opened before the hand-over.
//! - [`address`]: the server's own address (the interface's, the LAN's DHCP lease, or
//!   self-assigned from the served range on a bare interface).
//! - [`vfield_seed`]: the image seeded into V-FIELD, the clients told to join.
//! - [`cli`]: the command's options.
//!
//! Library entry points: [`start`] (returns a [`Running`] server) and [`run`] (serves
//! until a [`Stop`] is triggered); `viver serve` and the boot-server daemon both build a
//! [`ServeConfig`].
//!
//! The boot report (`serve.json` in the state directory) says what is served, where,
//! and in which DHCP mode for which reason; it is rewritten when the mode changes.

pub mod address;
pub mod boot_files;
pub mod cli;
pub mod dhcp;
pub mod files;
pub mod http;
pub mod tftp;
pub mod vfield_seed;

use crate::net::iface::{self as net, Interface};
use dhcp::policy::BootPlan;
use dhcp::probe::Setting;
use dhcp::server::{DhcpConfig, DhcpState, DhcpStatus};
use files::Served;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{what} {path}: {source}")]
    Input { what: String, path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {what}: {source}")]
    Bind { what: String, source: std::io::Error },
    #[error("cannot start a thread: {source}")]
    Thread { source: std::io::Error },
    #[error("{0}")]
    Interface(String),
    #[error("state directory {path}: {source}")]
    State { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Missing(String),
}

/// Tells a running server to stop (its threads check it at least twice a second).
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub served: Served,
    pub interface: Option<String>,
    /// The address to serve on (default: the interface's first IPv4 address).
    pub address: Option<Ipv4Addr>,
    /// Get an address even if the interface has one (`--address auto`); a named
    /// interface without an IPv4 address always gets one (see [`address`]).
    pub auto_address: bool,
    /// How long VIVER's DHCP client waits for the LAN's DHCP server on a bare interface.
    pub address_wait: Duration,
    pub dhcp: Setting,
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub router: Option<Ipv4Addr>,
    pub lease_secs: u32,
    pub state_dir: PathBuf,
    pub http_port: u16,
    pub tftp_port: u16,
    pub survey_wait: Duration,
    pub survey_interval: Duration,
    pub http_limits: http::server::Limits,
    /// Seed the image into V-FIELD on this port, and have clients read through it.
    pub vfield_port: Option<u16>,
}

/// The interface to serve on: the one named, the one holding `address`, or the first
/// non-loopback interface with an IPv4 address.
pub fn pick_interface(name: Option<&str>, address: Option<Ipv4Addr>) -> Result<Interface, ServeError> {
    let all = net::interfaces().map_err(|e| ServeError::Interface(format!("cannot list interfaces: {e}")))?;
    let listed = || all.iter().map(|i| format!("{} {}", i.name, i.address)).collect::<Vec<_>>().join(", ");
    let found = match (name, address) {
        (Some(name), _) => all
            .iter()
            .find(|i| i.name == name)
            .cloned()
            .ok_or_else(|| ServeError::Interface(format!("interface {name} has no IPv4 address (interfaces: {})", listed())))?,
        (None, Some(address)) => all
            .iter()
            .find(|i| i.address == address)
            .cloned()
            .ok_or_else(|| ServeError::Interface(format!("no interface holds {address} (interfaces: {})", listed())))?,
        (None, None) => all.iter().find(|i| !i.address.is_loopback()).cloned().ok_or_else(|| {
            ServeError::Interface(format!(
                "no interface with an IPv4 address besides loopback (interfaces: {}); --interface IF serves on a bare interface",
                listed()
            ))
        })?,
    };
    Ok(match address {
        Some(address) => Interface { address, ..found },
        None => found,
    })
}

/// The static part of the boot report.
#[derive(Clone, Debug, serde::Serialize)]
struct Report {
    interface: String,
    address: Ipv4Addr,
    prefix_len: u8,
    /// interface, given, dhcp or self-assigned.
    address_source: address::Origin,
    address_reason: String,
    mac: Option<String>,
    http: String,
    tftp: String,
    image: String,
    files: Vec<ReportFile>,
    tftp_files: Vec<String>,
    missing_ipxe: Vec<String>,
    script: String,
    /// Where the V-FIELD seed listens (`ADDRESS:PORT`), when seeding.
    vfield: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
struct ReportFile {
    url: String,
    source: String,
}

fn write_report(dir: &Path, report: &Report, dhcp: &DhcpState) {
    let mut value = match serde_json::to_value(report) {
        Ok(v) => v,
        Err(e) => return log::warn!("serve: report: {e}"),
    };
    if let (Some(map), Ok(d)) = (value.as_object_mut(), serde_json::to_value(dhcp)) {
        map.insert("dhcp".into(), d);
    }
    let path = dir.join("serve.json");
    let tmp = dir.join("serve.json.tmp");
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    if let Err(e) = std::fs::write(&tmp, text + "\n").and_then(|_| std::fs::rename(&tmp, &path)) {
        log::warn!("serve: cannot write {}: {e}", path.display());
    }
}

/// The server's interface and address (see [`address`]).
fn settle_address(config: &ServeConfig) -> Result<address::Acquired, ServeError> {
    let bare = |name: &str| {
        address::acquire_bare(&address::Bare { name, range: config.range, wait: config.address_wait, state_dir: &config.state_dir })
    };
    if config.auto_address {
        let name = config.interface.as_deref().ok_or_else(|| ServeError::Config("--address auto needs --interface".into()))?;
        return bare(name);
    }
    match pick_interface(config.interface.as_deref(), config.address) {
        Ok(interface) => Ok(address::existing(interface, config.address.is_some(), config.range, &config.state_dir)),
        Err(e) => match (config.interface.as_deref(), config.address) {
            // A named interface without IPv4: a boot-server node before any address.
            (Some(name), None) if crate::net::link::index_of(name).is_ok() => bare(name),
            _ => Err(e),
        },
    }
}

/// A started server: its threads and how to stop them.
pub struct Running {
    threads: Vec<JoinHandle<()>>,
    stop: Stop,
    http: Option<SocketAddr>,
    /// The report's path (`STATE/serve.json`).
    pub report: PathBuf,
    pub address: Ipv4Addr,
    /// The V-FIELD seed, when seeding.
    pub vfield: Option<Arc<crate::vfield::swarm::Swarm>>,
}

impl Running {
    /// Stops every thread and waits for them.
    pub fn stop(self) {
        self.stop.stop();
        if let Some(swarm) = &self.vfield {
            swarm.stop();
        }
        self.wait();
    }

    /// Waits for the threads (they end when the [`Stop`] given to [`start`] triggers).
    pub fn wait(self) {
        let http = self.http;
        let stop = self.stop.clone();
        let waker = std::thread::spawn(move || {
            // The accept loop sleeps in accept(): a connection wakes it up to see the stop.
            while !stop.is_stopped() {
                std::thread::sleep(Duration::from_millis(200));
            }
            if let Some(addr) = http {
                let _ = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            }
        });
        for thread in self.threads {
            let _ = thread.join();
        }
        let _ = waker.join();
    }
}

/// Serves until `stop` is triggered.
pub fn run(config: ServeConfig, stop: Stop) -> Result<(), ServeError> {
    start(config, stop)?.wait();
    Ok(())
}

/// Settles the address, starts HTTP, TFTP and DHCP, writes the report, and returns.
pub fn start(config: ServeConfig, stop: Stop) -> Result<Running, ServeError> {
    let acquired = settle_address(&config)?;
    let interface = acquired.interface.clone();
    if interface.address.is_loopback() && config.dhcp != Setting::Off {
        return Err(ServeError::Config(format!(
            "{} is a loopback address: DHCP needs a LAN interface (--interface), or --dhcp off",
            interface.address
        )));
    }
    std::fs::create_dir_all(&config.state_dir).map_err(|source| ServeError::State { path: config.state_dir.clone(), source })?;
    let base = format!("http://{}:{}", interface.address, config.http_port);
    let mut served = config.served.clone();
    let vfield = match config.vfield_port {
        None => None,
        Some(port) => match vfield_seed::start(&served, SocketAddr::from((interface.address, port))) {
            Ok(swarm) => {
                let at = swarm.local_addr().unwrap_or_else(|| SocketAddr::from((interface.address, port)));
                served.cmdline = format!("viver.vfield={at} {}", served.cmdline).trim().to_string();
                Some(swarm)
            }
            Err(e) => {
                log::warn!("serve: not seeding V-FIELD ({e}); clients read the image over HTTP alone");
                None
            }
        },
    };
    let built = files::build(&served, &base);

    let http = http::server::HttpServer::bind(
        SocketAddr::from((interface.address, config.http_port)),
        Arc::new(built.catalogue.clone()),
        config.http_limits.clone(),
    )?;
    let http_addr = http.local_addr();
    let tftp = tftp::server::TftpServer::bind(SocketAddr::from((interface.address, config.tftp_port)), Arc::new(built.tftp.clone()))?;
    let tftp_addr = tftp.local_addr().map(|a| a.to_string()).unwrap_or_default();

    let report = Report {
        interface: interface.name.clone(),
        address: interface.address,
        prefix_len: interface.prefix_len,
        address_source: acquired.origin,
        address_reason: acquired.reason.clone(),
        mac: interface.mac.as_ref().map(crate::net::dhcp::wire::mac_text),
        http: base.clone(),
        tftp: tftp_addr.clone(),
        image: built.name.clone(),
        files: built.catalogue.paths().map(|(url, r)| ReportFile { url: format!("{base}{url}"), source: r.describe() }).collect(),
        tftp_files: built.tftp.keys().cloned().collect(),
        missing_ipxe: built.missing.clone(),
        script: built.script.clone(),
        vfield: vfield.as_ref().and_then(|s| s.local_addr()).map(|a| a.to_string()),
    };
    log::info!(
        "serve: on {} {}/{} ({:?}: {}): HTTP {base}, TFTP {tftp_addr}; image {} ({})",
        interface.name,
        interface.address,
        interface.prefix_len,
        acquired.origin,
        acquired.reason,
        built.name,
        config.served.image.label
    );
    for file in &report.files {
        log::info!("serve: {} <- {}", file.url, file.source);
    }
    if let Some(at) = &report.vfield {
        log::info!("serve: V-FIELD seed on {at}");
    }

    let mut threads = Vec::new();
    let s = stop.clone();
    threads.push(
        std::thread::Builder::new()
            .name("viver-http-accept".into())
            .spawn(move || http.run(&s))
            .map_err(|source| ServeError::Thread { source })?,
    );
    let s = stop.clone();
    threads.push(
        std::thread::Builder::new()
            .name("viver-tftp-listen".into())
            .spawn(move || tftp.run(&s))
            .map_err(|source| ServeError::Thread { source })?,
    );

    let state_dir = config.state_dir.clone();
    let report_for_status = report.clone();
    let status = Arc::new(DhcpStatus::new(config.dhcp, Box::new(move |state| write_report(&state_dir, &report_for_status, state))));
    let plan = BootPlan {
        server: interface.address,
        http_base: base.clone(),
        bios_file: built.tftp.contains_key("undionly.kpxe").then(|| "undionly.kpxe".to_string()),
        efi_file: ["ipxe.efi", "snponly.efi"].iter().find(|f| built.tftp.contains_key(**f)).map(|f| f.to_string()),
        efi_http_path: ["ipxe.efi", "snponly.efi"].iter().find(|f| built.tftp.contains_key(**f)).map(|f| format!("/ipxe/{f}")),
        script_path: files::SCRIPT_PATH.to_string(),
    };
    let dhcp_config = DhcpConfig {
        setting: config.dhcp,
        interface: interface.clone(),
        plan,
        range: acquired.range,
        router: config.router,
        lease_secs: config.lease_secs,
        state_dir: Some(config.state_dir.clone()),
        survey_wait: config.survey_wait,
        survey_interval: config.survey_interval,
        server_port: 67,
        client_port: 68,
        pxe_port: 4011,
    };
    threads.extend(dhcp::server::start(dhcp_config, status.clone(), stop.clone())?);
    if let (address::Origin::Dhcp, Some(secs), Some(mac)) = (acquired.origin, acquired.lease_secs, interface.mac) {
        let (name, addr, s) = (interface.name.clone(), interface.address, stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("viver-dhcp-renew".into())
                .spawn(move || address::renew(name, mac, addr, secs, s))
                .map_err(|source| ServeError::Thread { source })?,
        );
    }
    log::info!("serve: ready (report {})", config.state_dir.join("serve.json").display());
    Ok(Running { threads, stop, http: http_addr, report: config.state_dir.join("serve.json"), address: interface.address, vfield })
}

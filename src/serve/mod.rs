//! `viver serve`: the boot server of a LAN (DHCP/proxyDHCP + TFTP + HTTP in one
//! program, std threads and blocking sockets, logs through `log`).
//!
//! - [`dhcp`]: who answers DHCP on the segment, and what VIVER answers (full, proxy,
//!   silent), with leases kept in the state directory.
//! - [`tftp`]: read-only TFTP of the iPXE binaries for PXE firmware.
//! - [`http`]: kernel, initrd, image, manifest, iPXE script and binaries.
//! - [`files`]: the catalogue of what is served and the iPXE script.
//! - [`cli`]: the command's options.
//!
//! The boot report (`serve.json` in the state directory) says what is served, where,
//! and in which DHCP mode for which reason; it is rewritten when the mode changes.

pub mod cli;
pub mod dhcp;
pub mod files;
pub mod http;
pub mod tftp;

use crate::net::iface::{self as net, Interface};
use dhcp::policy::BootPlan;
use dhcp::probe::Setting;
use dhcp::server::{DhcpConfig, DhcpState, DhcpStatus};
use files::Served;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
}

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub served: Served,
    pub interface: Option<String>,
    /// The address to serve on (default: the interface's first IPv4 address).
    pub address: Option<Ipv4Addr>,
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
            ServeError::Interface(format!("no interface with an IPv4 address besides loopback (interfaces: {})", listed()))
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
    mac: Option<String>,
    http: String,
    tftp: String,
    image: String,
    files: Vec<ReportFile>,
    tftp_files: Vec<String>,
    missing_ipxe: Vec<String>,
    script: String,
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

/// Starts everything and serves until the process ends.
pub fn run(config: ServeConfig) -> Result<(), ServeError> {
    let interface = pick_interface(config.interface.as_deref(), config.address)?;
    if interface.address.is_loopback() && config.dhcp != Setting::Off {
        return Err(ServeError::Config(format!(
            "{} is a loopback address: DHCP needs a LAN interface (--interface), or --dhcp off",
            interface.address
        )));
    }
    std::fs::create_dir_all(&config.state_dir).map_err(|source| ServeError::State { path: config.state_dir.clone(), source })?;
    let base = format!("http://{}:{}", interface.address, config.http_port);
    let built = files::build(&config.served, &base)?;

    let http = http::server::HttpServer::bind(
        SocketAddr::from((interface.address, config.http_port)),
        Arc::new(built.catalogue.clone()),
        config.http_limits.clone(),
    )?;
    let tftp = tftp::server::TftpServer::bind(SocketAddr::from((interface.address, config.tftp_port)), Arc::new(built.tftp.clone()))?;
    let tftp_addr = tftp.local_addr().map(|a| a.to_string()).unwrap_or_default();

    let report = Report {
        interface: interface.name.clone(),
        address: interface.address,
        mac: interface.mac.as_ref().map(crate::net::dhcp::wire::mac_text),
        http: base.clone(),
        tftp: tftp_addr.clone(),
        image: built.name.clone(),
        files: built.catalogue.paths().map(|(url, r)| ReportFile { url: format!("{base}{url}"), source: r.describe() }).collect(),
        tftp_files: built.tftp.keys().cloned().collect(),
        missing_ipxe: built.missing.clone(),
        script: built.script.clone(),
    };
    log::info!(
        "serve: on {} {}/{}: HTTP {base}, TFTP {tftp_addr}; image {} ({})",
        interface.name,
        interface.address,
        interface.prefix_len,
        built.name,
        config.served.image.display()
    );
    for file in &report.files {
        log::info!("serve: {} <- {}", file.url, file.source);
    }

    let mut threads = Vec::new();
    threads.push(
        std::thread::Builder::new()
            .name("viver-http-accept".into())
            .spawn(move || http.run())
            .map_err(|source| ServeError::Thread { source })?,
    );
    threads.push(
        std::thread::Builder::new()
            .name("viver-tftp-listen".into())
            .spawn(move || tftp.run())
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
        range: config.range,
        router: config.router,
        lease_secs: config.lease_secs,
        state_dir: Some(config.state_dir.clone()),
        survey_wait: config.survey_wait,
        survey_interval: config.survey_interval,
        server_port: 67,
        client_port: 68,
        pxe_port: 4011,
    };
    threads.extend(dhcp::server::start(dhcp_config, status.clone())?);
    log::info!("serve: ready (report {})", config.state_dir.join("serve.json").display());
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

//! `viver serve ...`: options and start.

use super::dhcp::probe::Setting;
use super::files::{image_name, Input, Ipxe, Served};
use super::http::server::Limits;
use super::ServeConfig;
use clap::{Args, ValueEnum};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DhcpArg {
    /// Survey the segment: proxyDHCP if a DHCP server answers, addresses if none does,
    /// silence if another PXE server answers.
    Auto,
    /// Like auto, but answer PXE clients even when another PXE server does.
    Force,
    /// Give addresses (from --range or the interface's private subnet).
    Full,
    /// Boot information only, never addresses.
    Proxy,
    /// No DHCP: TFTP and HTTP only.
    Off,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The SquashFS image the clients boot.
    #[arg(long)]
    pub image: PathBuf,
    /// The kernel the clients start (e.g. /boot/vmlinuz-RELEASE). Without --kernel and
    /// --initrd they are looked for on --medium, then in the image's /boot.
    #[arg(long, requires = "initrd")]
    pub kernel: Option<PathBuf>,
    /// VIVER's initrd (`viver kit initrd`).
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// A mounted VIVER boot medium: kernel and initrd from its /boot, iPXE binaries from
    /// its /viver/ipxe (before --ipxe-dir).
    #[arg(long)]
    pub medium: Option<PathBuf>,
    /// The image's manifest (served beside it).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// The LAN interface (default: the first with an IPv4 address besides loopback).
    #[arg(long)]
    pub interface: Option<String>,
    /// Serve on this address of the interface (default: its first IPv4 address), or
    /// `auto`: ask the LAN's DHCP server for one, else take one from the range after an
    /// ARP check (what a named interface without IPv4 address gets anyway).
    #[arg(long, value_parser = parse_address)]
    pub address: Option<AddressArg>,
    /// Seconds to wait for the LAN's DHCP server when getting an address.
    #[arg(long, default_value_t = 5.0)]
    pub address_wait: f64,
    #[arg(long, value_enum, default_value = "auto")]
    pub dhcp: DhcpArg,
    /// Addresses to give in full mode, FIRST-LAST (default: up to 100 addresses in the
    /// upper half of the interface's private subnet; on a bare interface that no DHCP
    /// server answers: 10.77.0.1-10.77.0.254, the server taking the first free one).
    #[arg(long, value_parser = parse_range)]
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Router (option 3) to hand out in full mode (default: none).
    #[arg(long)]
    pub router: Option<Ipv4Addr>,
    /// Lease time in seconds (full mode).
    #[arg(long, default_value_t = 3600)]
    pub lease_time: u32,
    /// Where leases.json and the report serve.json are kept.
    #[arg(long, default_value = "/var/lib/viver/serve")]
    pub state_dir: PathBuf,
    /// Extra words for the clients' kernel command line.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub cmdline: String,
    /// Where undionly.kpxe, ipxe.efi and snponly.efi are (Debian's `ipxe` package).
    #[arg(long, default_value = super::boot_files::SYSTEM_IPXE_DIR)]
    pub ipxe_dir: PathBuf,
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    #[arg(long, default_value_t = 69)]
    pub tftp_port: u16,
    /// Seed the image into V-FIELD on this port and have clients read through it
    /// (`viver.vfield=` in their command line); 0: clients read over HTTP alone.
    #[arg(long, default_value_t = 6881)]
    pub vfield: u16,
    /// Seconds to listen for other DHCP servers at start and at each survey.
    #[arg(long, default_value_t = 2.0)]
    pub survey_wait: f64,
    /// Seconds between surveys of the segment.
    #[arg(long, default_value_t = 60.0)]
    pub survey_interval: f64,
    /// Seconds a client has to send a whole HTTP request head.
    #[arg(long, default_value_t = 10.0)]
    pub http_timeout: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressArg {
    Auto,
    Ip(Ipv4Addr),
}

fn parse_address(text: &str) -> Result<AddressArg, String> {
    if text == "auto" {
        return Ok(AddressArg::Auto);
    }
    text.parse().map(AddressArg::Ip).map_err(|e| format!("{text}: {e} (an IPv4 address or `auto`)"))
}

pub fn parse_range(text: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let (a, b) = text.split_once('-').ok_or("expected FIRST-LAST, e.g. 10.0.0.100-10.0.0.199")?;
    let a: Ipv4Addr = a.trim().parse().map_err(|e| format!("{a}: {e}"))?;
    let b: Ipv4Addr = b.trim().parse().map_err(|e| format!("{b}: {e}"))?;
    if u32::from(a) > u32::from(b) {
        return Err(format!("{a} comes after {b}"));
    }
    Ok((a, b))
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() && s > 0.0 { s.min(86400.0) } else { 0.1 })
}

/// What to serve, opened now.
fn served(args: &ServeArgs) -> Result<Served, super::ServeError> {
    let image = Input::open("image", &args.image)?;
    let manifest = args.manifest.as_ref().map(|m| Input::open("manifest", m)).transpose()?;
    let mut dirs = super::boot_files::ipxe_dirs(args.medium.as_deref());
    dirs.pop(); // the system directory: --ipxe-dir replaces it
    dirs.push(args.ipxe_dir.clone());
    let (kernel, initrd) = match (&args.kernel, &args.initrd) {
        (Some(kernel), Some(initrd)) => (Input::open("kernel", kernel)?, Input::open("initrd", initrd)?),
        _ => {
            let super::files::Source::Open(file) = &image.source else {
                return Err(super::ServeError::Config("the image is not an open file".into()));
            };
            let found = super::boot_files::find(args.medium.as_deref(), file, &image.label)?;
            (found.kernel, found.initrd)
        }
    };
    Ok(Served {
        image,
        image_name: image_name(&args.image),
        kernel,
        initrd,
        manifest,
        ipxe: Ipxe::load(&dirs),
        cmdline: args.cmdline.clone(),
    })
}

pub fn run(args: ServeArgs) -> i32 {
    let setting = match args.dhcp {
        DhcpArg::Auto => Setting::Auto,
        DhcpArg::Force => Setting::Force,
        DhcpArg::Full => Setting::Full,
        DhcpArg::Proxy => Setting::Proxy,
        DhcpArg::Off => Setting::Off,
    };
    let fail = |e: super::ServeError| {
        log::error!("serve: {e}");
        eprintln!("viver serve: {e}");
        1
    };
    let served = match served(&args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let config = ServeConfig {
        served,
        interface: args.interface,
        address: match args.address {
            Some(AddressArg::Ip(ip)) => Some(ip),
            _ => None,
        },
        auto_address: args.address == Some(AddressArg::Auto),
        address_wait: seconds(args.address_wait),
        dhcp: setting,
        range: args.range,
        router: args.router,
        lease_secs: args.lease_time.max(60),
        state_dir: args.state_dir,
        http_port: args.http_port,
        tftp_port: args.tftp_port,
        survey_wait: seconds(args.survey_wait),
        survey_interval: seconds(args.survey_interval),
        http_limits: Limits { head_timeout: seconds(args.http_timeout), ..Limits::default() },
        vfield_port: (args.vfield != 0).then_some(args.vfield),
    };
    match super::run(config, super::Stop::new()) {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges() {
        assert!(super::parse_range("10.0.0.5-10.0.0.9").is_ok());
        assert!(super::parse_range("10.0.0.9-10.0.0.5").is_err());
        assert!(super::parse_range("10.0.0.9").is_err());
    }
}

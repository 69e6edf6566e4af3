//! The boot server inside the daemon (role `boot-server`): what `viver serve` does, on
//! files opened before the hand-over and in a state directory that is the daemon's
//! working directory (a path opened after the hand-over would resolve in the initramfs,
//! which is gone; the working directory stays the real `/run/viver/serve`).

use crate::net::iface::physical_ethernet;
use crate::serve::dhcp::probe::Setting;
use crate::serve::files::Input;
use crate::serve::{boot_files, ServeConfig, Stop};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for a network interface to appear before the boot server gives up.
pub const INTERFACE_WAIT: Duration = Duration::from_secs(300);

/// Opens and reads everything, moves into `state_dir`, and starts the thread that waits
/// for an interface and serves. Returns the thread and where the kernel and initrd come
/// from.
#[allow(clippy::too_many_arguments)]
pub fn start(
    image: &str,
    manifest: Option<&str>,
    medium: Option<&str>,
    cmdline: &str,
    state_dir: &str,
    interface: Option<String>,
    dhcp: &str,
    range: Option<&str>,
) -> Result<(std::thread::JoinHandle<()>, String, String), String> {
    let setting = Setting::from_word(dhcp).ok_or_else(|| format!("DHCP mode {dhcp:?} is not auto, force, full, proxy or off"))?;
    let range = range.map(crate::serve::cli::parse_range).transpose()?;
    let manifest = manifest.map(|m| Input::open("manifest", Path::new(m))).transpose().map_err(|e| e.to_string())?;
    let image_file = std::fs::File::open(image).map_err(|e| format!("{image}: {e}"))?;
    let served = boot_files::for_node(medium.map(Path::new), Arc::new(image_file), Path::new(image), manifest, cmdline.to_string())
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(state_dir).map_err(|e| format!("state directory {state_dir}: {e}"))?;
    std::env::set_current_dir(state_dir).map_err(|e| format!("state directory {state_dir}: {e}"))?;
    let (kernel_label, initrd_label) = (served.kernel.label.clone(), served.initrd.label.clone());
    let config = ServeConfig {
        served,
        interface,
        address: None,
        auto_address: true,
        address_wait: Duration::from_secs(5),
        dhcp: setting,
        range,
        router: None,
        lease_secs: 3600,
        state_dir: PathBuf::from("."),
        http_port: 80,
        tftp_port: 69,
        survey_wait: Duration::from_secs(2),
        survey_interval: Duration::from_secs(60),
        http_limits: Default::default(),
        vfield_port: Some(crate::boot::network_image::VFIELD_PORT),
    };
    log::info!("boot server: image {image}, kernel {kernel_label}, initrd {initrd_label}");
    let thread = std::thread::Builder::new()
        .name("viver-boot-server".into())
        .spawn(move || serve_when_linked(config))
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok((thread, kernel_label, initrd_label))
}

/// Waits for a physical Ethernet interface (the drivers may load after the hand-over),
/// then serves on it until the machine stops.
fn serve_when_linked(mut config: ServeConfig) {
    let started = Instant::now();
    let name = loop {
        if let Some(name) = &config.interface {
            if Path::new("/sys/class/net").join(name).exists() {
                break name.clone();
            }
        } else if let Some(first) = physical_ethernet(Path::new("/sys/class/net")).into_iter().next() {
            break first.name;
        }
        if started.elapsed() >= INTERFACE_WAIT {
            log::error!("boot server: no network interface appeared within {:?}; not serving", INTERFACE_WAIT);
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    config.interface = Some(name.clone());
    log::info!("boot server: serving on {name}");
    if let Err(e) = crate::serve::run(config, Stop::new()) {
        log::error!("boot server on {name}: {e}");
    }
}

//! What the daemon does on `/init`'s commands, and keeps doing after the hand-over.

use super::control::{Command, Reply};
use crate::image::manifest::Manifest;
use crate::nbd::attach::{self, Attached};
use crate::nbd::source::{BlockSource, HttpSource, HttpSourceOptions, ManifestChunks};
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Reads the kernel may have in flight on one device.
const NBD_WORKERS: usize = 4;

/// Longest wait for a network interface to appear before the boot server gives up.
pub const INTERFACE_WAIT: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Work {
    devices: Vec<Device>,
    servers: Vec<std::thread::JoinHandle<()>>,
}

struct Device {
    attached: Attached,
    source: Arc<HttpSource>,
    url: String,
}

impl Work {
    pub fn handle(&mut self, command: Command, _fds: Vec<OwnedFd>) -> Reply {
        match command {
            Command::AttachNbd { url, manifest, index, fill } => match self.attach_nbd(&url, &manifest, index, fill) {
                Ok(reply) => reply,
                Err(message) => {
                    log::error!("nbd{index}: {message}");
                    Reply::Error { message }
                }
            },
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
                let (mut fetched, mut chunks, mut requests, mut failures) = (0, 0, 0, 0);
                for d in &self.devices {
                    fetched += d.source.stats.bytes_fetched.load(Ordering::Relaxed);
                    chunks += d.source.stats.chunks_ready.load(Ordering::Relaxed);
                    requests += d.source.stats.requests.load(Ordering::Relaxed);
                    failures += d.source.stats.verify_failures.load(Ordering::Relaxed);
                }
                Reply::Stats { bytes_fetched: fetched, chunks_verified: chunks, requests, verify_failures: failures }
            }
        }
    }

    fn attach_nbd(&mut self, url: &str, manifest_path: &str, index: u32, fill: bool) -> Result<Reply, String> {
        let manifest = Manifest::load(std::path::Path::new(manifest_path)).map_err(|e| e.to_string())?;
        let verifier = ManifestChunks::from_manifest(&manifest)?;
        let options = HttpSourceOptions { verifier: Some(Arc::new(verifier)), size: Some(manifest.size), ..Default::default() };
        let source = Arc::new(HttpSource::open(url, options).map_err(|e| format!("{url}: {e}"))?);
        let size = source.size();
        let attached = attach::attach(
            Some(index),
            source.clone() as Arc<dyn BlockSource>,
            |c| {
                // No request timeout: a cut link stalls reads until it is back (the
                // source retries for ever), it never fails them.
                c.timeout = 0;
                c.dead_conn_timeout = 3600;
            },
            NBD_WORKERS,
        )
        .map_err(|e| format!("/dev/nbd{index}: {e}"))?;
        log::info!("/dev/nbd{} serves {url} ({size} bytes, every chunk checked against {})", attached.index, manifest.id);
        if fill {
            let source = source.clone();
            std::thread::spawn(move || match source.fill() {
                Ok(()) => log::info!("the whole image is in RAM"),
                Err(e) => log::warn!("background fill stopped: {e}"),
            });
        }
        let device = format!("/dev/nbd{}", attached.index);
        self.devices.push(Device { attached, source, url: url.to_string() });
        Ok(Reply::Attached { device, size })
    }

    pub fn describe_after_hand_over(&self) -> String {
        let mut list: Vec<String> = self.devices.iter().map(|d| format!("/dev/nbd{} from {}", d.attached.index, d.url)).collect();
        if !self.servers.is_empty() {
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

//! Stage `network` (only with `viver.net=`): the boot interface (the one `BOOTIF=` names,
//! else every Ethernet interface with a link), its address from VIVER's DHCP client, and
//! the image's manifest from the boot server. The image stage then reaches the image
//! itself through the daemon's `/dev/nbd0` (or copies it to RAM with `viver.toram`).

use super::report::{Failure, NetworkReport, TrustReport};
use super::stage::Stage;
use super::Boot;
use crate::hardware::detect::Detector;
use crate::image::manifest::Manifest;
use crate::image::trust::{self, Decision};
use crate::net::iface::{physical_ethernet, Ethernet};
use crate::net::{dhcp::client as dhcp_client, link};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the accepted manifest is kept (the daemon reads it from there, people too).
pub(super) const NET_DIR: &str = "/run/viver/net";
/// Longest wait for a link's carrier once the interface is up.
const CARRIER_WAIT: Duration = Duration::from_secs(5);
/// The largest manifest accepted (a 64 GiB image in 256 KiB chunks lists 256 Ki hashes: 17 MiB).
const MAX_MANIFEST: u64 = 32 << 20;

/// What the network stage hands to the image stage.
pub(crate) struct NetBoot {
    pub url: String,
    /// Whether a trusted key signed the manifest (the image stage completes the report).
    pub trust: TrustReport,
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
}

fn has_carrier(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/carrier")).map(|s| s.trim() == "1").unwrap_or(false)
}

fn mac_bytes(mac: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = mac.split(':').map(|p| u8::from_str_radix(p, 16)).collect::<Result<_, _>>().ok()?;
    parts.try_into().ok()
}

/// `http://S:P/image/NAME.squashfs` -> `http://S:P/image/NAME.toml`.
pub fn manifest_url(image_url: &str) -> Result<String, String> {
    match image_url.strip_suffix(".squashfs") {
        Some(stem) if stem.contains("://") && !stem.ends_with('/') => Ok(crate::image::manifest::beside(image_url)),
        _ => Err(format!("{image_url:?} does not name a .squashfs image (viver.net=http://SERVER:PORT/image/NAME.squashfs)")),
    }
}

impl Boot {
    pub(super) fn network(&mut self, detector: &Detector) -> Result<NetBoot, Failure> {
        let url = self.settings.net.clone().unwrap_or_default();
        let failure = |message: String, details: Vec<String>| Failure { stage: Stage::Network, message, details };
        let manifest_url = manifest_url(&url).map_err(|e| failure(e, vec![]))?;
        let started = Instant::now();
        let deadline = started + self.settings.net_timeout;
        let mut report = NetworkReport {
            image_url: url.clone(),
            vfield_peers: self.settings.vfield.iter().flatten().map(|p| p.to_string()).collect(),
            ..NetworkReport::default()
        };

        // 1. The interface: the driver may still be loading.
        let wanted = self.settings.bootif.clone();
        let mut seen;
        let mut generation = detector.generation();
        let candidates = loop {
            seen = physical_ethernet(Path::new("/sys/class/net"));
            let matching: Vec<Ethernet> = match &wanted {
                Some(mac) => seen.iter().filter(|i| &i.mac == mac).cloned().collect(),
                None => seen.clone(),
            };
            // Without BOOTIF, give the other NICs' drivers until the hardware is quiet.
            let settled = wanted.is_some() || detector.idle_for().is_some_and(|idle| idle >= self.settings.settle);
            if !matching.is_empty() && settled {
                break matching;
            }
            if Instant::now() >= deadline {
                let listed = if seen.is_empty() {
                    "none: no driver for the network card was loaded (is its module in the initrd?)".to_string()
                } else {
                    seen.iter().map(|i| format!("{} {}", i.name, i.mac)).collect::<Vec<_>>().join(", ")
                };
                let what = match &wanted {
                    Some(mac) => format!("No network interface with the MAC address {mac} (BOOTIF=) appeared"),
                    None => "No Ethernet interface appeared".to_string(),
                };
                return Err(failure(
                    format!("{what} within {:.0} s (viver.net.timeout).", self.settings.net_timeout.as_secs_f64()),
                    vec![format!("interfaces found: {listed}")],
                ));
            }
            generation = detector.wait_for_change(generation, Duration::from_millis(100));
        };

        // 2. Links up; carrier on at least one.
        let mut rtnl = link::Rtnl::open().map_err(|e| failure(format!("rtnetlink: {e}"), vec![]))?;
        for interface in &candidates {
            match link::index_of(&interface.name).and_then(|index| rtnl.link_up(index)) {
                Ok(()) => {}
                Err(e) => ::log::warn!("{}: cannot bring the link up: {e}", interface.name),
            }
        }
        let carrier_until = (Instant::now() + CARRIER_WAIT).min(deadline);
        let with_link = loop {
            let up: Vec<Ethernet> = candidates.iter().filter(|i| has_carrier(&i.name)).cloned().collect();
            if !up.is_empty() || Instant::now() >= carrier_until {
                break up;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // No carrier seen: some drivers report it late; ask DHCP on every candidate anyway.
        let asking = if with_link.is_empty() { candidates.clone() } else { with_link };
        report.link_ms = started.elapsed().as_secs_f64() * 1000.0;

        // 3. DHCP on each, in parallel; the first lease wins.
        let dhcp_started = Instant::now();
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
        ::log::info!(
            "DHCP on {} (up to {:.0} s)",
            asking.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
            left.as_secs_f64()
        );
        let (tx, rx) = std::sync::mpsc::channel();
        for interface in asking.clone() {
            let tx = tx.clone();
            let Some(mac) = mac_bytes(&interface.mac) else { continue };
            std::thread::spawn(move || {
                let result = dhcp_client::run(&interface.name, mac, left);
                let _ = tx.send((interface, result));
            });
        }
        drop(tx);
        let mut errors = Vec::new();
        let (interface, lease) = loop {
            match rx.recv() {
                Ok((interface, Ok(lease))) => break (interface, lease),
                Ok((interface, Err(e))) => errors.push(format!("{}: {e}", interface.name)),
                Err(_) => {
                    let mut details = errors;
                    details.push(format!(
                        "interfaces asked: {}",
                        asking.iter().map(|i| format!("{} {}", i.name, i.mac)).collect::<Vec<_>>().join(", ")
                    ));
                    details.push(format!("all interfaces: {}", seen.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")));
                    return Err(failure("No DHCP server gave this machine an address.".into(), details));
                }
            }
        };
        report.dhcp_ms = dhcp_started.elapsed().as_secs_f64() * 1000.0;
        link::configure(&interface.name, lease.address, lease.netmask, lease.router)
            .map_err(|e| failure(format!("{}: cannot set the address {}: {e}", interface.name, lease.address), vec![]))?;
        ::log::info!(
            "{} ({}): {}/{} from DHCP server {}{}",
            interface.name,
            interface.mac,
            lease.address,
            link::prefix_len(lease.netmask),
            lease.server_id,
            lease.router.map(|r| format!(", router {r}")).unwrap_or_default()
        );
        report.interface = interface.name.clone();
        report.mac = interface.mac.clone();
        report.address = format!("{}/{}", lease.address, link::prefix_len(lease.netmask));
        report.router = lease.router.map(|r| r.to_string());
        report.dhcp_server = lease.server_id.to_string();

        // 4. The manifest: what every byte of the image will be checked against.
        let manifest_started = Instant::now();
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
        let bytes = crate::nbd::source::http::get_file(&manifest_url, MAX_MANIFEST, left)
            .map_err(|e| failure(format!("The boot server did not give the image's manifest: {e}"), vec![format!("image: {url}")]))?;
        let text = String::from_utf8(bytes).map_err(|_| failure(format!("{manifest_url}: the manifest is not UTF-8 text"), vec![]))?;
        let manifest = Manifest::parse(&text, &manifest_url).map_err(|e| failure(format!("{e}"), vec![format!("image: {url}")]))?;
        report.manifest_ms = manifest_started.elapsed().as_secs_f64() * 1000.0;
        report.profile_chunks = manifest.profile.as_ref().map_or(0, |p| p.chunks.len());
        report.recording_seconds = self.settings.vfield_record;
        // With trusted keys in the initrd, only a manifest one of them signed: its chunk
        // hashes are then what every byte of the image is checked against.
        let trusted = self.trusted_keys();
        let decision = trust::check(&trusted, Some(&manifest))
            .map_err(|e| failure(format!("The image's manifest from {manifest_url} is refused: {e}"), vec![format!("image: {url}")]))?;
        let mut before = Vec::new();
        let key_id = match &decision {
            Decision::Signed(id) => {
                ::log::info!("manifest of {} signed by trusted key {id}", manifest.name);
                before.push(format!("manifest signature by trusted key {id}"));
                Some(id.to_string())
            }
            Decision::NotRequired => None,
        };
        before.push("SquashFS superblock and image size against the manifest".to_string());
        let trust = TrustReport {
            authenticated: key_id.is_some(),
            key_id,
            trusted_keys: trusted.ids(),
            verity: None,
            checked_before_hand_over: before,
            checked_after_hand_over:
                "every chunk the daemon fetches, against the manifest's chunk hashes, before the kernel gets a byte of it".into(),
        };
        let manifest_path = Path::new(NET_DIR).join(format!("{}.toml", manifest.id));
        std::fs::create_dir_all(NET_DIR)
            .and_then(|_| std::fs::write(&manifest_path, &text))
            .map_err(|e| failure(format!("cannot keep the manifest in {NET_DIR}: {e}"), vec![]))?;
        report.server = crate::nbd::source::http::Url::parse(&url).map(|u| format!("{}:{}", u.host, u.port)).unwrap_or_default();
        report.wait_ms = started.elapsed().as_secs_f64() * 1000.0;
        ::log::info!("manifest of {} ({}, {} MiB) from {}", manifest.name, manifest.id, manifest.size >> 20, report.server);
        self.report.network = Some(report);
        Ok(NetBoot { url, trust, manifest, manifest_path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_beside_the_image() {
        assert_eq!(manifest_url("http://10.77.0.1:8080/image/deb.squashfs").unwrap(), "http://10.77.0.1:8080/image/deb.toml");
        assert!(manifest_url("http://10.77.0.1/image/deb.img").is_err());
        assert!(manifest_url(".squashfs").is_err());
    }

    #[test]
    fn macs_in_bytes() {
        assert_eq!(mac_bytes("52:54:00:aa:00:01"), Some([0x52, 0x54, 0, 0xaa, 0, 1]));
        assert_eq!(mac_bytes("52:54:00:aa:00"), None);
    }
}

//! Stage `image` on a network boot: the daemon serves the image as `/dev/nbd0`, each
//! chunk fetched from the boot server when first read and checked against the manifest
//! the network stage accepted; the SquashFS is mounted from it. With `viver.toram` the
//! whole image is read once through the same checks into RAM, the device is let go, and
//! the system needs no network afterwards.

use super::network::NetBoot;
use super::report::{ChosenImage, Failure};
use super::stage::Stage;
use super::{Boot, MountedImage, IMAGE_MOUNT, RAM_DIR};
use crate::daemon::control::{Command, Reply, VfieldJoin};
use crate::hardware::detect::Detector;
use crate::image::{cow, loopdev, verify};
use std::path::Path;
use std::time::Duration;

/// The NBD device of the root.
const NBD_INDEX: u32 = 0;
/// The port a netbooted node serves its V-FIELD chunks on (BitTorrent's usual one).
pub const VFIELD_PORT: u16 = 6881;
/// Longest wait for the daemon to connect the device (no image byte is needed for it).
const ATTACH_WAIT: Duration = Duration::from_secs(30);

impl Boot {
    pub(super) fn network_image(&mut self, net: &NetBoot, detector: &Detector) -> Result<MountedImage, Failure> {
        let failure = |message: String, details: Vec<String>| Failure { stage: Stage::Image, message, details };
        let image_line = format!("image: {} ({}, {} bytes)", net.url, net.manifest.id, net.manifest.size);
        detector
            .load_module("nbd")
            .map_err(|e| failure(format!("the kernel's NBD driver (nbd) cannot be loaded: {e}"), vec![image_line.clone()]))?;
        let daemon = crate::daemon::spawn(Path::new("/proc/self/exe"), self.settings.debug)
            .map_err(|e| failure(e.to_string(), vec![image_line.clone()]))?;
        let vfield = self.settings.vfield.as_ref().map(|peers| VfieldJoin {
            peers: peers.iter().map(|p| p.to_string()).collect(),
            web_seeds: self.settings.vfield_seeds.clone(),
            store: self.settings.vfield_store.map(|mib| mib << 20),
            replicas: self.settings.vfield_replicas,
            port: VFIELD_PORT,
            disk: self.settings.vfield_disk.clone(),
        });
        let command = Command::AttachNbd {
            url: net.url.clone(),
            manifest: net.manifest_path.display().to_string(),
            index: NBD_INDEX,
            fill: false,
            vfield,
            record: self.settings.vfield_record,
        };
        let device = match daemon.request(&command, &[], ATTACH_WAIT) {
            Ok(Reply::Attached { device, .. }) => device,
            Ok(Reply::Error { message }) => {
                return Err(failure(format!("The daemon could not serve the image: {message}"), vec![image_line]))
            }
            Ok(other) => return Err(failure(format!("The daemon answered {other:?} to attach"), vec![image_line])),
            Err(e) => return Err(failure(format!("The daemon did not attach the image: {e}"), vec![image_line])),
        };
        if let Some(report) = self.report.network.as_mut() {
            report.daemon_pid = Some(daemon.pid);
        }
        if !crate::nbd::netlink::wait_connected(NBD_INDEX, Duration::from_secs(10)) {
            return Err(failure(format!("{device} did not come up after the daemon connected it"), vec![image_line]));
        }
        let device_path = Path::new(&device);
        // Reads the superblock through the device, i.e. through the chunk checks.
        let info = verify::quick(device_path, Some(&net.manifest)).map_err(|e| failure(e.to_string(), vec![image_line.clone()]))?;
        let chunk_size = net.manifest.chunks.as_ref().map(|c| c.size).unwrap_or(0);
        let mut verification = verify::ChunkReport {
            level: "network".into(),
            complete: false,
            chunk_size,
            chunks_total: net.manifest.size.div_ceil(chunk_size.max(1)),
            image_bytes: net.manifest.size,
            notes: vec!["every chunk is checked against the manifest when it is fetched, before the kernel gets a byte of it".into()],
            ..verify::ChunkReport::default()
        };
        let mut chosen_device = device.clone();
        if self.settings.toram {
            ::log::info!("copying {} from the network to RAM", net.manifest.name);
            let (copy, digest) = super::image::copy_to_ram_logged(device_path).map_err(|e| failure(e, vec![image_line.clone()]))?;
            verify::check_digest(&net.url, &digest, &net.manifest).map_err(|e| {
                let _ = nix::mount::umount2(RAM_DIR, nix::mount::MntFlags::MNT_DETACH);
                failure(e.to_string(), vec![image_line.clone()])
            })?;
            match daemon.request(&Command::DetachNbd { index: NBD_INDEX }, &[], Duration::from_secs(10)) {
                Ok(Reply::Detached) => {}
                other => ::log::warn!("{device}: the daemon did not let it go ({other:?}); it stays unused"),
            }
            let attached = loopdev::attach(&copy, Path::new("/dev"), true).map_err(|e| failure(e.to_string(), vec![]))?;
            cow::mount_image(&attached.path, Path::new(IMAGE_MOUNT)).map_err(|e| failure(e.to_string(), vec![]))?;
            drop(attached);
            chosen_device = copy.display().to_string();
            verification.level = "full".into();
            verification.complete = true;
            verification.bytes_verified = net.manifest.size;
            verification.notes.push("copied to RAM: the whole image's SHA-256 was checked too".into());
        } else {
            cow::mount_image(device_path, Path::new(IMAGE_MOUNT)).map_err(|e| failure(e.to_string(), vec![image_line.clone()]))?;
            if self.settings.vfield.is_some() && self.settings.vfield_standby {
                self.stand_by(&daemon, &net.url);
            }
            self.daemon = Some(daemon);
        }
        Ok(MountedImage {
            file: None,
            medium_root: None,
            manifest_file: None,
            id: net.manifest.id.clone(),
            chosen: ChosenImage {
                name: net.manifest.name.clone(),
                id: net.manifest.id.clone(),
                path: net.url.clone(),
                device: chosen_device,
                media: "network".into(),
                toram: self.settings.toram,
                compressor: Some(info.compressor.to_string()),
                size_bytes: info.bytes_used,
                verification: Some(verification),
                trust: net.trust.clone(),
            },
        })
    }

    /// Asks the daemon to stand by as the LAN's next boot server. Not being a standby
    /// costs the boot nothing: a refusal is logged and the boot goes on.
    fn stand_by(&self, daemon: &crate::daemon::DaemonHandle, url: &str) {
        let Some(network) = &self.report.network else { return };
        let Ok(parsed) = crate::nbd::source::http::Url::parse(url) else { return };
        let image_name = parsed.path.rsplit('/').next().unwrap_or_default().trim_end_matches(".squashfs").to_string();
        let command = Command::Standby {
            interface: network.interface.clone(),
            address: network.address.split('/').next().unwrap_or_default().to_string(),
            server: format!("{}:{}", parsed.host, parsed.port),
            image_name,
            cmdline: self.report.cmdline.clone(),
            dhcp: self.settings.dhcp.clone(),
            vfield_port: VFIELD_PORT,
        };
        match daemon.request(&command, &[], Duration::from_secs(5)) {
            Ok(Reply::StandingBy) => ::log::info!("the daemon stands by as the LAN's next boot server"),
            other => ::log::warn!("the daemon does not stand by as the next boot server: {other:?}"),
        }
    }

    /// The bytes the boot fetched from the server, for the report (asked of the daemon
    /// just before the hand-over).
    pub(super) fn note_network_bytes(&mut self, image: &mut MountedImage) {
        let Some(daemon) = &self.daemon else { return };
        if let Ok(Reply::Stats { bytes_fetched, chunks_verified, from_peers, .. }) =
            daemon.request(&Command::Stats, &[], Duration::from_secs(2))
        {
            if let Some(report) = self.report.network.as_mut() {
                report.bytes_fetched = bytes_fetched;
                report.bytes_from_peers = from_peers;
            }
            // Every chunk fetched so far was checked before it was used.
            if let Some(v) = image.chosen.verification.as_mut() {
                v.chunks_verified = chunks_verified;
                v.bytes_verified = bytes_fetched;
            }
            if self.settings.vfield.is_some() {
                ::log::info!(
                    "the boot fetched {} KiB of the image: {} KiB from V-FIELD peers, the rest from HTTP",
                    bytes_fetched >> 10,
                    from_peers >> 10
                );
            } else {
                ::log::info!("the boot fetched {} KiB of the image from the server", bytes_fetched >> 10);
            }
        }
    }
}

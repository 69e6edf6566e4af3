//! `/run/viver/boot.json`: what the boot found, chose, rejected and how long each stage
//! took, for people (`jq . /run/viver/boot.json`) and for the test harness.

use super::settings::Settings;
use super::stage::Stage;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct StageTiming {
    pub stage: Stage,
    /// Seconds since the kernel started, when the stage began.
    pub start: f64,
    pub duration_ms: f64,
}

/// One block device as the disk stage saw it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DeviceReport {
    pub device: String,
    pub media: String,
    pub size_bytes: u64,
    pub removable: bool,
    pub rotational: bool,
    pub filesystem: Option<String>,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub mounted_at: Option<String>,
    /// Why nothing was used from it (no filesystem, mount error, ...).
    pub note: Option<String>,
}

/// One image candidate and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateReport {
    pub name: String,
    pub id: String,
    pub path: String,
    pub device: String,
    pub media: String,
    /// Its place in the order of trial, from 1; absent when it was not in the running.
    pub rank: Option<usize>,
    /// "chosen", "rejected", "excluded" or "not tried".
    pub verdict: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChosenImage {
    pub name: String,
    pub id: String,
    /// Path of the image on its medium (`/viver/debian.squashfs`), or the device.
    pub path: String,
    /// The device that holds it: `/dev/sda1`.
    pub device: String,
    /// Its media class: `usb`, `virtio`, `cd`, ...
    pub media: String,
    pub toram: bool,
    pub compressor: Option<String>,
    pub size_bytes: u64,
    /// What of it was checked against its manifest before it was used (`complete: false`:
    /// only the chunks listed in `verified_chunks`).
    pub verification: Option<crate::image::verify::ChunkReport>,
    /// Whose image it is and what guards its blocks after the hand-over.
    pub trust: TrustReport,
}

/// The trust decision for the chosen copy.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TrustReport {
    /// Signed by a key the initrd trusts. False: the initrd trusts no key, so any image
    /// was accepted.
    pub authenticated: bool,
    /// The trusted key that signed the manifest.
    pub key_id: Option<String>,
    /// The keys the initrd trusts.
    pub trusted_keys: Vec<String>,
    /// The dm-verity device the image is mounted from, when its manifest has a tree.
    pub verity: Option<VerityReport>,
    /// What was checked before the hand-over, one item each.
    pub checked_before_hand_over: Vec<String>,
    /// What guards the image's blocks after it.
    pub checked_after_hand_over: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerityReport {
    pub root_hash: String,
    /// `/dev/dm-N`, over the loop device (or the device) that holds the image.
    pub device: String,
    pub data_blocks: u64,
    pub hash_offset: u64,
    /// The cheap check of the tree's superblock and top block against the root hash.
    pub tree_checked: bool,
}

/// A network boot: the interface, its lease, the server, and what the network cost.
#[derive(Debug, Clone, Serialize, Default)]
pub struct NetworkReport {
    pub interface: String,
    pub mac: String,
    /// `10.77.0.100/24`.
    pub address: String,
    pub router: Option<String>,
    pub dhcp_server: String,
    /// The boot server the image comes from (`10.77.0.1:80`).
    pub server: String,
    pub image_url: String,
    /// Time from the stage's start to a link with carrier, to the lease, to the manifest.
    pub link_ms: f64,
    pub dhcp_ms: f64,
    pub manifest_ms: f64,
    /// The whole wait for the network before the image could be read.
    pub wait_ms: f64,
    /// Image bytes fetched up to the hand-over (what the boot read, and with V-FIELD what
    /// its fill fetched for the swarm meanwhile).
    pub bytes_fetched: u64,
    /// Of those, the bytes V-FIELD peers sent (`viver.vfield`); the rest came over HTTP.
    pub bytes_from_peers: u64,
    /// `viver.vfield`: the peers the node joined through.
    pub vfield_peers: Vec<String>,
    /// Chunks in the manifest's boot profile (`viver-kit profile`), fetched ahead of the
    /// boot's reads; 0 without one.
    pub profile_chunks: usize,
    /// `viver.vfield.record`: seconds of this boot's reads recorded into
    /// `/run/viver/vfield-profile.toml`.
    pub recording_seconds: Option<u64>,
    /// The daemon serving `/dev/nbd0` after the hand-over.
    pub daemon_pid: Option<u32>,
}

/// Role `boot-server`: what the daemon was given to serve (its own report, with the
/// interface, address and DHCP mode, is `state_dir/serve.json`).
#[derive(Debug, Clone, Serialize, Default)]
pub struct BootServerReport {
    pub started: bool,
    pub state_dir: String,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub daemon_pid: Option<u32>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub stage: Stage,
    pub message: String,
    /// What was tried and found, one line each.
    pub details: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct BootReport {
    pub viver_version: &'static str,
    pub kernel: String,
    pub cmdline: String,
    pub settings: Option<Settings>,
    pub stages: Vec<StageTiming>,
    pub hardware: Option<serde_json::Value>,
    pub devices: Vec<DeviceReport>,
    pub candidates: Vec<CandidateReport>,
    pub network: Option<NetworkReport>,
    pub boot_server: Option<BootServerReport>,
    pub image: Option<ChosenImage>,
    pub cow: Option<String>,
    pub init: Option<String>,
    pub problems: Vec<String>,
    pub failure: Option<Failure>,
}

impl BootReport {
    pub fn new() -> BootReport {
        BootReport { viver_version: env!("CARGO_PKG_VERSION"), ..BootReport::default() }
    }

    /// Writes the report (and the log beside it) atomically: a reader never sees half.
    pub fn write(&self, dir: &Path, log_lines: &[String]) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = dir.join(".boot.json.tmp");
        std::fs::write(&tmp, json + "\n")?;
        std::fs::rename(&tmp, dir.join("boot.json"))?;
        std::fs::write(dir.join("boot.log"), log_lines.join("\n") + "\n")
    }
}

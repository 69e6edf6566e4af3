//! Stage `image`: the candidates in the order of the policy, each checked until one
//! passes; the chosen copy is attached to a loop device (or copied to RAM) and mounted,
//! through dm-verity when its manifest has a hash tree.
//!
//! With trusted keys in the initrd a copy must first be signed by one of them
//! ([`Boot::authenticate`]); the verity device is set up by [`Boot::open_verity`].

use super::disks::search::MediaSearch;
use super::report::{CandidateReport, ChosenImage, Failure, TrustReport, VerityReport};
use super::settings::Verify;
use super::stage::Stage;
use super::{Boot, MountedImage, IMAGE_MOUNT, RAM_DIR};
use crate::disks::rank;
use crate::hardware::detect::Detector;
use crate::image::candidate::Candidate;
use crate::image::trust::{self, Decision, TrustedKeys};
use crate::image::{choose, cow, loopdev, verify, verity};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Names of verity devices: one per copy tried, so a device a failed attempt could not
/// remove never blocks the next.
static VERITY_DEVICES: AtomicUsize = AtomicUsize::new(0);

/// A verity device set up over a candidate.
struct VerityDevice {
    node: PathBuf,
    name: String,
    report: VerityReport,
}

impl Boot {
    /// One entry per copy (device and path) in the report: a search that resumed after
    /// every copy on the fastest media was rejected lists each copy once, with its
    /// latest verdict.
    fn record_candidate(&mut self, entry: CandidateReport) {
        let same = |c: &CandidateReport| c.device == entry.device && c.path == entry.path;
        match self.report.candidates.iter_mut().find(|c| same(c)) {
            // A rejection stays: the copy is not tried again.
            Some(existing) if existing.verdict == "rejected" => {}
            Some(existing) => *existing = entry,
            None => self.report.candidates.push(entry),
        }
    }

    pub(super) fn image(&mut self, search: &mut MediaSearch, detector: &Detector) -> Result<MountedImage, Failure> {
        let trusted = self.trusted_keys();
        let selector = match self.settings.media.as_deref().map(rank::parse_media) {
            Some(Ok(selector)) => Some(selector),
            Some(Err(e)) => {
                ::log::warn!("viver.media: {e}; using the default order");
                self.report.problems.push(format!("viver.media: {e}"));
                None
            }
            None => None,
        };
        let untried: Vec<Candidate> =
            search.candidates.iter().filter(|c| !search.tried.contains(&(c.device.name.clone(), c.medium_path.clone()))).cloned().collect();
        let plan = choose::plan(untried, self.settings.image.as_deref(), selector.as_ref());
        for note in &plan.notes {
            ::log::warn!("{note}");
        }
        let mut order = plan.order;
        break_speed_tie(&mut order);
        for (candidate, reason) in &plan.excluded {
            self.record_candidate(candidate_report(candidate, None, "excluded", Some(reason.clone())));
        }
        let mut chosen = None;
        for (index, candidate) in order.iter().enumerate() {
            if chosen.is_some() {
                self.record_candidate(candidate_report(candidate, Some(index + 1), "not tried", None));
                continue;
            }
            match self.try_candidate(candidate, &trusted, detector) {
                Ok(image) => {
                    self.record_candidate(candidate_report(candidate, Some(index + 1), "chosen", None));
                    chosen = Some(image);
                }
                Err(reason) => {
                    search.tried.push((candidate.device.name.clone(), candidate.medium_path.clone()));
                    ::log::warn!("rejected {} on {}: {reason}", candidate.medium_path, candidate.device.dev_path.display());
                    search.rejections.push(format!("{} on {}: {reason}", candidate.medium_path, candidate.device.dev_path.display()));
                    self.record_candidate(candidate_report(candidate, Some(index + 1), "rejected", Some(reason)));
                }
            }
        }
        match chosen {
            Some(image) => Ok(image),
            None => {
                let mut details = search.rejections.clone();
                details.extend(plan.excluded.iter().map(|(c, why)| format!("{} on {}: {why}", c.medium_path, c.device.dev_path.display())));
                details.extend(search.rejected.iter().cloned());
                Err(Failure {
                    stage: Stage::Image,
                    message: match &self.settings.image {
                        Some(name) if order.is_empty() => format!("No image named {name:?} was found (viver.image=)."),
                        _ => "Every image found was rejected.".into(),
                    },
                    details,
                })
            }
        }
    }

    /// The keys of the initrd; unreadable key files are reported once.
    pub(super) fn trusted_keys(&mut self) -> TrustedKeys {
        let keys = TrustedKeys::load(Path::new(trust::TRUSTED_DIR));
        for problem in &keys.problems {
            if !self.report.problems.contains(problem) {
                ::log::warn!("{problem}");
                self.report.problems.push(problem.clone());
            }
        }
        keys
    }

    /// With trusted keys, a copy is used only when a trusted key signed its manifest.
    fn authenticate(&self, candidate: &Candidate, trusted: &TrustedKeys) -> Result<Decision, String> {
        let decision = trust::check(trusted, candidate.manifest.as_ref()).map_err(|e| e.to_string())?;
        if let Decision::Signed(id) = &decision {
            ::log::info!("{} on {}: manifest signed by trusted key {id}", candidate.medium_path, candidate.device.dev_path.display());
        }
        Ok(decision)
    }

    /// dm-verity over `device` when the manifest has a hash tree: its superblock and top
    /// block are checked against the root hash in `image` (8 KiB of reads), dm_verity is
    /// loaded, the device set up. A copy whose tree does not match is rejected; a kernel
    /// without dm-verity rejects it too when signatures are required, else the image is
    /// mounted without it and the report says so.
    fn open_verity(
        &mut self,
        candidate: &Candidate,
        image: &Path,
        device: &Path,
        required: bool,
        detector: &Detector,
    ) -> Result<Option<VerityDevice>, String> {
        let Some(params) = candidate.manifest.as_ref().and_then(|m| m.verity.as_ref()) else { return Ok(None) };
        let shown = image.display().to_string();
        let mut file = std::fs::File::open(image).map_err(|e| format!("cannot read {shown}: {e}"))?;
        params.check_tree(&mut file, &shown).map_err(|e| e.to_string())?;
        let name = format!("viver-image-{}", VERITY_DEVICES.fetch_add(1, Ordering::Relaxed));
        let clock = std::time::Instant::now();
        let opened = detector
            .load_module("dm_verity")
            .map_err(|e| format!("dm-verity is not available ({e})"))
            .and_then(|()| verity::open(device, params, &name).map_err(|e| e.to_string()));
        match opened {
            Ok(node) => {
                ::log::info!(
                    "dm-verity {name} ({}) over {} in {:.0} ms, root hash {}",
                    node.display(),
                    device.display(),
                    clock.elapsed().as_secs_f64() * 1000.0,
                    params.root
                );
                let report = VerityReport {
                    root_hash: params.root.clone(),
                    device: node.display().to_string(),
                    data_blocks: params.data_blocks,
                    hash_offset: params.hash_offset,
                    tree_checked: true,
                };
                Ok(Some(VerityDevice { node, name, report }))
            }
            Err(e) if required => Err(e),
            Err(e) => {
                let note = format!("{e}: {} is mounted without block-level checks", candidate.medium_path);
                ::log::warn!("{note}");
                self.report.problems.push(note);
                Ok(None)
            }
        }
    }

    /// Checks one candidate and mounts it at IMAGE_MOUNT; the error is the reason to reject it.
    fn try_candidate(&mut self, candidate: &Candidate, trusted: &TrustedKeys, detector: &Detector) -> Result<MountedImage, String> {
        let decision = self.authenticate(candidate, trusted)?;
        let info = verify::quick(&candidate.image_path, candidate.manifest.as_ref()).map_err(|e| e.to_string())?;
        let shown = candidate.image_path.display().to_string();
        let mut source = candidate.image_path.clone();
        let verification;
        if self.settings.toram {
            ::log::info!("copying {} ({} MiB) to RAM", candidate.medium_path, info.bytes_used >> 20);
            let (copy, digest) = copy_to_ram_logged(&candidate.image_path)?;
            if let Some(manifest) = &candidate.manifest {
                if let Err(e) = verify::check_digest(&shown, &digest, manifest) {
                    let _ = nix::mount::umount2(RAM_DIR, nix::mount::MntFlags::MNT_DETACH);
                    return Err(e.to_string());
                }
            }
            source = copy;
            verification = candidate.manifest.as_ref().map(|m| verify::ChunkReport {
                level: "full".into(),
                complete: true,
                bytes_verified: m.size,
                image_bytes: m.size,
                notes: vec!["copied to RAM: the whole image's SHA-256 was checked".into()],
                ..verify::ChunkReport::default()
            });
        } else {
            let level = match self.settings.verify {
                Verify::Quick => verify::Level::Quick,
                Verify::Boot => verify::Level::Boot,
                Verify::Full => verify::Level::Full,
            };
            if level == verify::Level::Full {
                let size = candidate.manifest.as_ref().map(|m| m.size).unwrap_or(0);
                ::log::info!("checking all of {} ({} MiB) against its manifest", candidate.medium_path, size >> 20);
            }
            let inits: Vec<String> = match &self.settings.init {
                Some(init) => vec![init.display().to_string()],
                None => super::switch_root::DEFAULT_INITS.iter().map(|s| s.to_string()).collect(),
            };
            let clock = std::time::Instant::now();
            let report = verify::chunks(&candidate.image_path, candidate.manifest.as_ref(), level, &inits).map_err(|e| e.to_string())?;
            ::log::info!(
                "checked {} of {} chunks ({} KiB of {} KiB{}) of {} in {:.0} ms",
                report.chunks_verified,
                report.chunks_total,
                report.bytes_verified >> 10,
                report.image_bytes >> 10,
                if report.files.is_empty() { String::new() } else { format!("; metadata and {}", report.files.join(", ")) },
                candidate.medium_path,
                clock.elapsed().as_secs_f64() * 1000.0
            );
            for note in &report.notes {
                ::log::info!("  {note}");
            }
            verification = Some(report);
        }
        unguarded_signed(candidate, trusted, verification.as_ref())?;
        let is_device = std::fs::metadata(&source).map(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_block_device()
        });
        // Held until the mount below has the device (see LoopDevice).
        let mut loop_device = None;
        let device = if is_device.unwrap_or(false) {
            source.clone()
        } else {
            let attached = loopdev::attach(&source, Path::new("/dev"), true).map_err(|e| e.to_string())?;
            let path = attached.path.clone();
            loop_device = Some(attached);
            path
        };
        let verity_device = self.open_verity(candidate, &source, &device, trusted.required, detector)?;
        let mounted = cow::mount_image(verity_device.as_ref().map(|v| v.node.as_path()).unwrap_or(&device), Path::new(IMAGE_MOUNT));
        if let Err(e) = mounted {
            if let Some(v) = &verity_device {
                verity::close(&v.name);
                return Err(format!("{e} (through dm-verity: a block that does not match its hash reads as an I/O error)"));
            }
            return Err(e.to_string());
        }
        drop(loop_device);
        let image_file = &candidate.image_path;
        let medium_root = image_file.to_str().and_then(|p| p.strip_suffix(candidate.medium_path.as_str())).map(std::path::PathBuf::from);
        let trust = trust_report(&decision, trusted, verity_device.map(|v| v.report), verification.as_ref());
        Ok(MountedImage {
            file: Some(source.clone()),
            medium_root,
            manifest_file: Some(image_file.with_extension("toml")).filter(|p| p.is_file()),
            id: candidate.id.clone(),
            chosen: ChosenImage {
                name: candidate.name.clone(),
                id: candidate.id.clone(),
                path: candidate.medium_path.clone(),
                device: candidate.device.dev_path.display().to_string(),
                media: candidate.device.class.to_string(),
                toram: self.settings.toram,
                compressor: Some(info.compressor.to_string()),
                size_bytes: info.bytes_used,
                verification,
                trust,
            },
        })
    }
}

/// A signature vouches for the bytes the boot ties to the manifest: with no verity tree,
/// only the chunks checked before the hand-over. With trusted keys, such a copy is used
/// only when every chunk was checked (`viver.verify=full`, or copied to RAM).
fn unguarded_signed(candidate: &Candidate, trusted: &TrustedKeys, checked: Option<&verify::ChunkReport>) -> Result<(), String> {
    let without_tree = candidate.manifest.as_ref().is_some_and(|m| m.verity.is_none());
    if trusted.required && without_tree && !checked.is_some_and(|c| c.complete) {
        return Err("signed, but its manifest has no dm-verity tree and not every chunk was checked: the unchecked blocks could \
                    differ from what was signed (boot with viver.verify=full, or rebuild the image with the kit's verity tree)"
            .into());
    }
    Ok(())
}

/// boot.json's `image.trust`: the decision, and what was checked before and after the hand-over.
fn trust_report(
    decision: &Decision,
    trusted: &TrustedKeys,
    verity: Option<VerityReport>,
    chunks: Option<&verify::ChunkReport>,
) -> TrustReport {
    let mut before = Vec::new();
    let key_id = match decision {
        Decision::Signed(id) => {
            before.push(format!("manifest signature by trusted key {id}"));
            Some(id.to_string())
        }
        Decision::NotRequired => None,
    };
    before.push("SquashFS superblock and image size against the manifest".to_string());
    match chunks {
        Some(c) if c.complete => before.push(format!("all {} bytes against the manifest (viver.verify={})", c.image_bytes, c.level)),
        Some(c) => before.push(format!(
            "{} of {} chunks against the manifest (viver.verify={}: {} of {} bytes)",
            c.chunks_verified, c.chunks_total, c.level, c.bytes_verified, c.image_bytes
        )),
        None => {}
    }
    let after = match &verity {
        Some(v) => {
            before.push(format!("dm-verity superblock and top hash block against root hash {}", v.root_hash));
            format!("every block read, by dm-verity ({}) against root hash {}: a changed block is an I/O error", v.device, v.root_hash)
        }
        None => "nothing: no dm-verity (the manifest has no hash tree, or the kernel has no dm-verity)".to_string(),
    };
    TrustReport {
        authenticated: key_id.is_some(),
        key_id,
        trusted_keys: trusted.ids(),
        verity,
        checked_before_hand_over: before,
        checked_after_hand_over: after,
    }
}

/// The image (a file or a device) copied into a tmpfs at RAM_DIR, with its SHA-256 and a
/// progress line every 10%; on failure nothing is left mounted.
pub(super) fn copy_to_ram_logged(image: &Path) -> Result<(std::path::PathBuf, String), String> {
    let mut last_percent = 0;
    cow::copy_to_ram(image, Path::new(RAM_DIR), |done, total| {
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        if percent >= last_percent + 10 || percent == 100 {
            last_percent = percent;
            ::log::info!("  {percent}% ({} of {} MiB)", done >> 20, total >> 20);
        }
    })
    .map_err(|e| {
        let _ = nix::mount::umount2(RAM_DIR, nix::mount::MntFlags::MNT_DETACH);
        e.to_string()
    })
}

/// Same image, same class of medium: a short read decides which copy is faster.
fn break_speed_tie(order: &mut [Candidate]) {
    if order.len() < 2 {
        return;
    }
    let (a, b) = (&order[0], &order[1]);
    if a.id != b.id
        || rank::class_rank(a.device.class, a.device.rotational) != rank::class_rank(b.device.class, b.device.rotational)
        || a.device.name == b.device.name
    {
        return;
    }
    let speed = |c: &Candidate| rank::measure_read_mbps(&c.device.dev_path, 4 << 20).unwrap_or(0.0);
    let (speed_a, speed_b) = (speed(a), speed(b));
    ::log::info!(
        "{} and {} hold the same image on the same kind of medium: {speed_a:.0} vs {speed_b:.0} MB/s",
        a.device.dev_path.display(),
        b.device.dev_path.display()
    );
    if speed_b > speed_a * 1.1 {
        order.swap(0, 1);
    }
}

fn candidate_report(c: &Candidate, rank: Option<usize>, verdict: &str, reason: Option<String>) -> CandidateReport {
    CandidateReport {
        name: c.name.clone(),
        id: c.id.clone(),
        path: c.medium_path.clone(),
        device: c.device.dev_path.display().to_string(),
        media: c.device.class.to_string(),
        rank,
        verdict: verdict.to_string(),
        reason,
    }
}

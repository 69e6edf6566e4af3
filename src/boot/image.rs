//! Stage `image`: the candidates in the order of the policy, each checked until one
//! passes; the chosen copy is attached to a loop device (or copied to RAM) and mounted.

use super::disks::search::MediaSearch;
use super::report::{CandidateReport, ChosenImage, Failure};
use super::settings::Verify;
use super::stage::Stage;
use super::{Boot, MountedImage, IMAGE_MOUNT, RAM_DIR};
use crate::disks::rank;
use crate::image::candidate::Candidate;
use crate::image::{choose, cow, loopdev, verify};
use std::path::Path;

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

    pub(super) fn image(&mut self, search: &mut MediaSearch) -> Result<MountedImage, Failure> {
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
            match self.try_candidate(candidate) {
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

    /// Checks one candidate and mounts it at IMAGE_MOUNT; the error is the reason to reject it.
    fn try_candidate(&mut self, candidate: &Candidate) -> Result<MountedImage, String> {
        let info = verify::quick(&candidate.image_path, candidate.manifest.as_ref()).map_err(|e| e.to_string())?;
        let shown = candidate.image_path.display().to_string();
        let mut source = candidate.image_path.clone();
        let verification;
        if self.settings.toram {
            ::log::info!("copying {} ({} MiB) to RAM", candidate.medium_path, info.bytes_used >> 20);
            let mut last_percent = 0;
            let (copy, digest) = cow::copy_to_ram(&candidate.image_path, Path::new(RAM_DIR), |done, total| {
                let percent = (done * 100).checked_div(total).unwrap_or(100);
                if percent >= last_percent + 10 || percent == 100 {
                    last_percent = percent;
                    ::log::info!("  {percent}% ({} of {} MiB)", done >> 20, total >> 20);
                }
            })
            .map_err(|e| {
                let _ = nix::mount::umount2(RAM_DIR, nix::mount::MntFlags::MNT_DETACH);
                e.to_string()
            })?;
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
        cow::mount_image(&device, Path::new(IMAGE_MOUNT)).map_err(|e| e.to_string())?;
        drop(loop_device);
        let image_file = &candidate.image_path;
        let medium_root = image_file.to_str().and_then(|p| p.strip_suffix(candidate.medium_path.as_str())).map(std::path::PathBuf::from);
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
            },
        })
    }
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

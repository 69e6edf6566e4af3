//! Stage `disks`: every block device is probed as it appears, beside the hardware
//! detection, until the best medium this machine can show is known.
//!
//! - [`search`]: the media found so far (superblocks, mounts, candidates, `viver.conf`);
//! - [`late`]: media that are slow to appear (USB, SD) and worth waiting for.

pub mod late;
pub mod search;

use self::search::MediaSearch;
use super::report::Failure;
use super::stage::Stage;
use super::Boot;
use crate::disks::rank;
use crate::hardware::detect::{Detector, Settled};
use crate::image::verify;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the fast storage's drivers must have been idle before the drivers held back
/// for it are loaded: long enough for its disks to show up in sysfs and be probed on a
/// slow (emulated) machine; lost only when the fast storage holds no image.
const FAST_STORAGE_GRACE: Duration = Duration::from_millis(300);
/// Shortest time between two scans of the block devices.
const SCAN_INTERVAL: Duration = Duration::from_millis(10);

impl Boot {
    pub(super) fn disks(&mut self, detector: &Detector) -> Result<MediaSearch, Failure> {
        let hardware_started = Instant::now();
        let mut search = MediaSearch::default();
        let settled = self.search_media(detector, &mut search, true);
        match settled {
            Some((outcome, at)) => {
                let duration_ms = at.duration_since(hardware_started).as_secs_f64() * 1000.0;
                if let Some(timing) = self.report.stages.iter_mut().find(|t| t.stage == Stage::Hardware) {
                    timing.duration_ms += duration_ms;
                }
                ::log::info!("hardware settled after {duration_ms:.0} ms");
                if matches!(outcome, Settled::Capped) {
                    ::log::warn!("devices were still appearing after {} s; going on", self.settings.timeout.as_secs());
                }
            }
            None => ::log::info!("the best medium possible on this machine was found before the hardware settled"),
        }
        if let Ok(value) = serde_json::to_value(detector.report()) {
            self.report.hardware = Some(value);
        }
        self.report.devices = search.reports();
        ::log::info!("{} device(s), {} image candidate(s)", search.media.len(), search.candidates.len());
        if search.candidates.is_empty() {
            let mut details = search.describe();
            details.extend(search.rejected.iter().cloned());
            if details.is_empty() {
                details.push("no block device appeared at all".into());
            }
            details.extend(self.hardware_notes.iter().cloned());
            let unmatched = detector.report().unmatched;
            if !unmatched.is_empty() {
                details.push(format!("devices with no driver in this initrd: {}", unmatched.join(" ")));
            }
            return Err(Failure {
                stage: Stage::Disks,
                message: format!(
                    "No disk image (/viver/<name>.squashfs) was found on any medium after waiting {} s.",
                    self.settings.timeout.as_secs()
                ),
                details,
            });
        }
        Ok(search)
    }

    /// Probes the disks as they appear, beside the hardware detection (the boot medium's
    /// filesystem driver loads and its superblock is read while other drivers load),
    /// until the hardware has settled and the best medium is known, or the timeout
    /// passes. Returns the search and when (and how) the hardware settled; None when it
    /// stopped earlier because no medium this machine could still show would beat the one
    /// found.
    fn search_media(&mut self, detector: &Detector, search: &mut MediaSearch, may_stop_early: bool) -> Option<(Settled, Instant)> {
        let started = Instant::now();
        let mut deadline = started + self.settings.timeout;
        let controllers = late::controller_classes(Path::new("/sys"));
        let late_present = late::late_classes(&controllers);
        let mut settled: Option<(Settled, Instant)> = None;
        let mut generation = detector.generation();
        let mut waiting_said = false;
        let mut last_scan = Instant::now() - Duration::from_secs(1);
        loop {
            // Every uevent wakes this loop; a burst of them must not become a busy loop
            // that takes the CPU from the drivers being loaded.
            let since = last_scan.elapsed();
            if since < SCAN_INTERVAL {
                std::thread::sleep(SCAN_INTERVAL - since);
            }
            last_scan = Instant::now();
            let known_before = search.media.len();
            let more_to_probe = match search.scan(detector, Path::new("/sys"), Path::new("/dev")) {
                Ok(more) => more,
                Err(e) => {
                    ::log::warn!("{e}");
                    false
                }
            };
            let found_new = search.media.len() != known_before;
            if search.confs.len() != self.media_confs_applied || search.conf_problems.len() != self.conf_problems_seen {
                // A medium's viver.conf counts from the moment it is read: its timeout,
                // settle and media_wait for the rest of this search, its modules at once.
                self.apply_media_confs(detector, search);
                deadline = started + self.settings.timeout;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if settled.is_none() {
                // Every device listed so far must be probed, and the drivers not held back
                // must be done (a second disk may still be on its way): a second copy on
                // the same class of medium is a tie that a measured read decides.
                if may_stop_early
                    && !more_to_probe
                    && !found_new
                    && detector.idle_for_ignoring_held().is_some()
                    && self.unbeatable(search, &controllers)
                {
                    search.stopped_early = true;
                    break;
                }
                // The fast storage is loaded and probed and did not settle it: load the rest.
                if detector.holding() && detector.idle_for_ignoring_held().is_some_and(|idle| idle >= FAST_STORAGE_GRACE) {
                    detector.open_gate();
                }
                if detector.idle_for().is_some_and(|quiet| quiet >= self.settings.settle) {
                    // One last walk of /sys for uevents that were lost; returns at once.
                    settled = Some((detector.wait_settled(), Instant::now()));
                }
            }
            // More to probe, or something new just appeared (its siblings may follow at
            // once): look again after the short scan interval, not after a wake-up.
            if more_to_probe || found_new {
                continue;
            }
            let Some((_, settled_at)) = settled else {
                generation = detector.wait_for_change(generation, Duration::from_millis(50));
                continue;
            };
            let late_deadline = settled_at + self.settings.media_wait;
            let seen: Vec<_> = search.media.values().map(|m| m.device.class).collect();
            // Candidates that can still win: not rejected already, and sound at a glance.
            let best_usable = search
                .candidates
                .iter()
                .filter(|c| !search.tried.contains(&(c.device.name.clone(), c.medium_path.clone())))
                .filter(|c| verify::quick(&c.image_path, c.manifest.as_ref()).is_ok())
                .map(|c| rank::class_rank(c.device.class, c.device.rotational))
                .min();
            let awaited = if best_usable.is_none() && search.candidates.is_empty() {
                None
            } else {
                // Something was found (if only broken copies): late media that could
                // beat it get a little longer, nothing else does.
                let late = late::worth_waiting_for(&late_present, &seen, best_usable);
                if late.is_empty() || now >= late_deadline {
                    break;
                }
                Some(late)
            };
            if !waiting_said {
                match &awaited {
                    None => ::log::info!(
                        "no image on {} device(s) yet; waiting up to {} s for more",
                        search.media.len(),
                        (deadline - now).as_secs()
                    ),
                    Some(late) => ::log::info!(
                        "waiting up to {:.1} s for {} media, which come late and could beat what was found",
                        late_deadline.saturating_duration_since(now).as_secs_f64(),
                        late.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" and ")
                    ),
                }
                waiting_said = true;
            }
            let until = if awaited.is_some() { late_deadline.min(deadline) } else { deadline };
            generation = detector.wait_for_change(generation, until.saturating_duration_since(now).min(Duration::from_millis(500)));
        }
        if settled.is_none() && Instant::now() >= deadline {
            settled = Some((Settled::Capped, Instant::now()));
        }
        settled
    }

    /// Folds the media's `viver.conf` files read so far into the settings and starts the
    /// modules they name.
    fn apply_media_confs(&mut self, detector: &Detector, search: &MediaSearch) {
        for problem in &search.conf_problems[self.conf_problems_seen..] {
            ::log::warn!("{problem}");
            self.report.problems.push(problem.clone());
        }
        self.conf_problems_seen = search.conf_problems.len();
        let modules_before = self.settings.modules.clone();
        let confs = search.confs.clone();
        self.resolve_settings(&confs);
        self.media_confs_applied = confs.len();
        for module in self.settings.modules.iter().filter(|m| !modules_before.contains(m)) {
            let origin = self.settings.origins.get("modules").cloned().unwrap_or_else(|| "viver.conf".into());
            if !detector.request(module, &origin) {
                let problem = format!("{origin}: modules names {module}, which no module or alias of this initrd matches");
                ::log::warn!("{problem}");
                self.report.problems.push(problem);
            }
        }
    }

    /// Goes on with a search that stopped early: every driver, every medium, until the
    /// hardware settles.
    pub(super) fn resume_disks(&mut self, detector: &Detector, search: &mut MediaSearch) {
        search.stopped_early = false;
        detector.open_gate();
        self.search_media(detector, search, false);
        self.report.devices = search.reports();
        ::log::info!("{} device(s), {} image candidate(s)", search.media.len(), search.candidates.len());
    }

    /// Can the search stop before the hardware settles? Only when the user did not name
    /// the media, the best candidate (of the named image, if one is named) passes its
    /// quick check, and no storage controller on this machine could bring a faster class
    /// of medium than it.
    fn unbeatable(&self, search: &MediaSearch, controllers: &[crate::disks::class::MediaClass]) -> bool {
        // Loads still under way are not waited for here: they finish before the hand-over
        // (Detector::finish), and drivers for the rest of the hardware are the real
        // system's business, as with any initrd.
        // Named media may be anywhere, in any order: only the whole search can tell.
        if self.settings.media.is_some() {
            return false;
        }
        // A named image (the kit's media name theirs): its fastest copy, others do not count.
        let wanted = self.settings.image.as_deref();
        let Some(best) = search
            .candidates
            .iter()
            .filter(|c| wanted.is_none_or(|name| c.matches(name)))
            .min_by_key(|c| rank::class_rank(c.device.class, c.device.rotational))
        else {
            return false;
        };
        let best_rank = rank::class_rank(best.device.class, best.device.rotational);
        controllers.iter().all(|class| rank::class_rank(*class, false) >= best_rank)
            && verify::quick(&best.image_path, best.manifest.as_ref()).is_ok()
    }
}

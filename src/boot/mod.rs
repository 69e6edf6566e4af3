//! PID 1: the boot, stage by stage (see [`stage::Stage`]).
//!
//! Each stage is a function that either moves the boot forward or returns a
//! [`report::Failure`] saying what it tried and found; [`run_as_pid1`] turns a failure
//! (or, as a last resort, a panic) into a readable report and the `viver.panic=` policy.

pub mod cmdline;
pub mod early;
pub mod failure;
pub mod late_media;
pub mod log;
pub mod media;
pub mod report;
pub mod settings;
pub mod stage;
pub mod switch_root;

use self::cmdline::Cmdline;
use self::log::BootLogger;
use self::media::MediaSearch;
use self::report::{BootReport, CandidateReport, ChosenImage, Failure, StageTiming};
use self::settings::{ConfFile, CowSpec, Settings, Verify};
use self::stage::Stage;
use crate::disks::rank;
use crate::hardware::detect::{DetectOptions, Detector, Settled};
use crate::image::candidate::Candidate;
use crate::image::{choose, cow, loopdev, verify};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NEW_ROOT: &str = "/newroot";
const IMAGE_MOUNT: &str = "/run/viver/image";
const COW_DIR: &str = "/run/viver/cow";
const COW_FILE_MOUNT: &str = "/run/viver/cow-file";
const RAM_DIR: &str = "/run/viver/ram";
const REPORT_DIR: &str = "/run/viver";
/// The initrd's own configuration, written by the kit.
const INITRD_CONF: &str = "/etc/viver.conf";
/// Modules every boot needs whatever the hardware: started with the device drivers so
/// they are ready when the image is found.
const ALWAYS_LOAD: &[&str] = &["loop", "squashfs", "overlay"];
/// How long the fast storage's drivers must have been idle before the drivers held back
/// for it are loaded: long enough for its disks to show up in sysfs and be probed on a
/// slow (emulated) machine; lost only when the fast storage holds no image.
const FAST_STORAGE_GRACE: Duration = Duration::from_millis(300);
/// Shortest time between two scans of the block devices.
const SCAN_INTERVAL: Duration = Duration::from_millis(10);

/// State carried from stage to stage.
struct Boot {
    report: BootReport,
    cmdline: Cmdline,
    initrd_confs: Vec<ConfFile>,
    settings: Settings,
    started_realtime: Duration,
    started_monotonic: Duration,
    kmsg_ratelimit: Option<String>,
}

/// What the image stage hands to the cow stage.
struct MountedImage {
    chosen: ChosenImage,
    id: String,
}

/// Never returns: either the real init replaces this process, or the failure policy runs.
pub fn run_as_pid1() -> ! {
    let started_realtime = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let started_monotonic = Duration::from_secs_f64(self::log::uptime());
    // A panic must not become a kernel panic ("Attempted to kill init"): it becomes a
    // failure report like any other.
    std::panic::set_hook(Box::new(|info| {
        let text = format!("internal error (a bug in VIVER, please report it): {info}");
        match BootLogger::get() {
            Some(logger) => logger.console_always(&text),
            None => eprintln!("{text}"),
        }
    }));
    let mut boot = Boot {
        report: BootReport::new(),
        cmdline: Cmdline::default(),
        initrd_confs: Vec::new(),
        settings: Settings::default(),
        started_realtime,
        started_monotonic,
        kmsg_ratelimit: None,
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| boot.run()));
    let failure = match outcome {
        Ok(failure) => failure,
        Err(_) => Failure {
            stage: boot.report.stages.last().map(|s| s.stage).unwrap_or(Stage::Early),
            message: "VIVER hit an internal error (see the message above).".into(),
            details: Vec::new(),
        },
    };
    self::log::restore_kmsg_ratelimit(boot.kmsg_ratelimit.take());
    failure::fail(&mut boot.report, failure, boot.settings.panic, boot.settings.panic_wait)
}

impl Boot {
    /// Runs every stage; returns only with the failure that stopped the boot.
    fn run(&mut self) -> Failure {
        match self.run_stages() {
            Ok(never) => match never {},
            Err(failure) => failure,
        }
    }

    fn run_stages(&mut self) -> Result<std::convert::Infallible, Failure> {
        self.timed(Stage::Early, |boot| boot.early())?;
        self.timed(Stage::Config, |boot| boot.config())?;
        let detector = self.timed(Stage::Hardware, |boot| boot.hardware())?;
        let mut search = self.timed(Stage::Disks, |boot| boot.disks(&detector))?;
        let image = match self.timed(Stage::Image, |boot| boot.image(&mut search)) {
            Ok(image) => image,
            // The search stopped at the fastest medium and every image there was
            // rejected: look at the other media too before giving up.
            Err(_) if search.stopped_early => {
                ::log::warn!("every image on the fastest media was rejected; looking at the other media");
                self.timed(Stage::Disks, |boot| {
                    boot.resume_disks(&detector, &mut search);
                    Ok(())
                })?;
                self.timed(Stage::Image, |boot| boot.image(&mut search))?
            }
            Err(failure) => return Err(failure),
        };
        self.timed(Stage::Cow, |boot| boot.cow(&image, &search, &detector))?;
        // No driver load may be cut short by the exec that starts the real init.
        detector.finish();
        self.report.hardware = serde_json::to_value(detector.report()).ok();
        self.report.devices = search.reports();
        self.timed(Stage::SwitchRoot, |boot| boot.switch_root(&image))
    }

    /// Runs one stage: the `viver.break=` shell before it, a log line after it, its timing
    /// in the report.
    fn timed<T>(&mut self, stage: Stage, run: impl FnOnce(&mut Boot) -> Result<T, Failure>) -> Result<T, Failure> {
        if self.settings.break_before == Some(stage) {
            ::log::warn!("viver.break={stage}: starting a shell before the {stage} stage; 'exit' goes on with the boot");
            failure::run_shell(failure::RESCUE_SHELLS.iter().find(|s| Path::new(s).exists()).copied().unwrap_or("/bin/sh"));
        }
        let start = self::log::uptime();
        let clock = Instant::now();
        let result = run(self);
        let duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
        self.report.stages.push(StageTiming { stage, start, duration_ms });
        if result.is_ok() {
            ::log::info!("stage {stage} done in {duration_ms:.0} ms");
        }
        result
    }

    fn early(&mut self) -> Result<(), Failure> {
        let problems = early::mount_api_filesystems();
        early::attach_console();
        early::set_environment();
        BootLogger::install();
        self.kmsg_ratelimit = self::log::lift_kmsg_ratelimit();
        early::start_reaper();
        for problem in problems {
            ::log::warn!("{problem}");
            self.report.problems.push(problem);
        }
        self.report.kernel = early::kernel_release();
        ::log::info!("VIVER {} on Linux {}", env!("CARGO_PKG_VERSION"), self.report.kernel);
        Ok(())
    }

    fn config(&mut self) -> Result<(), Failure> {
        let line = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        self.report.cmdline = line.trim().to_string();
        self.cmdline = Cmdline::parse(&line);
        if let Ok(text) = std::fs::read_to_string(INITRD_CONF) {
            self.initrd_confs.push(ConfFile { origin: format!("initrd:{INITRD_CONF}"), text });
        }
        self.resolve_settings(&[]);
        Ok(())
    }

    /// Folds the initrd's conf, the media's confs and the command line into settings.
    fn resolve_settings(&mut self, media_confs: &[ConfFile]) {
        let mut confs = self.initrd_confs.clone();
        confs.extend_from_slice(media_confs);
        let settings = Settings::resolve(&self.cmdline, &confs);
        for problem in &settings.problems {
            if !self.settings.problems.contains(problem) || media_confs.is_empty() {
                ::log::warn!("{problem}");
            }
        }
        if let Some(logger) = BootLogger::get() {
            logger.set_verbosity(settings.quiet, settings.debug);
        }
        self.report.problems.retain(|p| !self.settings.problems.contains(p));
        self.report.problems.extend(settings.problems.iter().cloned());
        self.settings = settings;
        self.report.settings = Some(self.settings.clone());
    }

    fn hardware(&mut self) -> Result<Detector, Failure> {
        let release = &self.report.kernel;
        let mut force_load: Vec<String> = ALWAYS_LOAD.iter().map(|m| m.to_string()).collect();
        force_load.extend(self.settings.modules.iter().cloned());
        let mut params = self.settings.module_params.clone();
        // usb-storage waits a second before scanning a new stick "for slow devices";
        // settling would end inside that second and miss the stick. Our own quiet period
        // already waits, so no delay unless the user asks for one.
        params.entry("usb_storage".into()).or_insert_with(|| "delay_use=0".into());
        let options = DetectOptions {
            modules_dir: PathBuf::from("/lib/modules").join(release),
            sysfs: PathBuf::from("/sys"),
            blacklist: self.settings.blacklist.clone(),
            force_load,
            params: params.into_iter().collect(),
            parallel: self.settings.parallel,
            quiet: self.settings.settle,
            cap: self.settings.timeout,
            // Only when VIVER chooses the medium itself; a named medium may be anywhere.
            fast_first: self.settings.media.is_none() && self.settings.image.is_none(),
        };
        let detector = Detector::start(options).map_err(|e| Failure {
            stage: Stage::Hardware,
            message: format!("hardware detection could not start: {e}"),
            details: vec![format!("module directory /lib/modules/{release}")],
        })?;
        // Detection goes on in the background; the disk stage probes each disk as it
        // appears and waits for the hardware to settle before it decides.
        Ok(detector)
    }

    fn disks(&mut self, detector: &Detector) -> Result<MediaSearch, Failure> {
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
        // Media may carry viver.conf: it can change the image, the media order, the cow.
        if !search.confs.is_empty() {
            let confs = search.confs.clone();
            self.resolve_settings(&confs);
        }
        self.report.devices = search.reports();
        ::log::info!("{} device(s), {} image candidate(s)", search.media.len(), search.candidates.len());
        if search.candidates.is_empty() {
            let mut details = search.describe();
            details.extend(search.rejected.iter().cloned());
            if details.is_empty() {
                details.push("no block device appeared at all".into());
            }
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
    fn search_media(&self, detector: &Detector, search: &mut MediaSearch, may_stop_early: bool) -> Option<(Settled, Instant)> {
        let started = Instant::now();
        let deadline = started + self.settings.timeout;
        let controllers = late_media::controller_classes(Path::new("/sys"));
        let late_present = late_media::late_classes(&controllers);
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
                let late = late_media::worth_waiting_for(&late_present, &seen, best_usable);
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

    /// Goes on with a search that stopped early: every driver, every medium, until the
    /// hardware settles.
    fn resume_disks(&mut self, detector: &Detector, search: &mut MediaSearch) {
        search.stopped_early = false;
        detector.open_gate();
        self.search_media(detector, search, false);
        self.report.devices = search.reports();
        ::log::info!("{} device(s), {} image candidate(s)", search.media.len(), search.candidates.len());
    }

    /// Can the search stop before the hardware settles? Only when the user left the
    /// choice to VIVER, the best candidate passes its quick check, and no storage
    /// controller on this machine could bring a faster class of medium than it.
    fn unbeatable(&self, search: &MediaSearch, controllers: &[crate::disks::class::MediaClass]) -> bool {
        // Loads still under way are not waited for here: they finish before the hand-over
        // (Detector::finish), and drivers for the rest of the hardware are the real
        // system's business, as with any initrd.
        if self.settings.image.is_some() || self.settings.media.is_some() {
            return false;
        }
        let Some(best) = search.candidates.iter().min_by_key(|c| rank::class_rank(c.device.class, c.device.rotational)) else {
            return false;
        };
        let best_rank = rank::class_rank(best.device.class, best.device.rotational);
        controllers.iter().all(|class| rank::class_rank(*class, false) >= best_rank)
            && verify::quick(&best.image_path, best.manifest.as_ref()).is_ok()
    }

    fn image(&mut self, search: &mut MediaSearch) -> Result<MountedImage, Failure> {
        let selector = match self.settings.media.as_deref().map(rank::parse_media) {
            Some(Ok(selector)) => Some(selector),
            Some(Err(e)) => {
                ::log::warn!("viver.media: {e}; using the default order");
                self.report.problems.push(format!("viver.media: {e}"));
                None
            }
            None => None,
        };
        let untried: Vec<Candidate> = search
            .candidates
            .iter()
            .filter(|c| !search.tried.contains(&(c.device.name.clone(), c.medium_path.clone())))
            .cloned()
            .collect();
        let plan = choose::plan(untried, self.settings.image.as_deref(), selector.as_ref());
        for note in &plan.notes {
            ::log::warn!("{note}");
        }
        let mut order = plan.order;
        break_speed_tie(&mut order);
        for (candidate, reason) in &plan.excluded {
            self.report.candidates.push(candidate_report(candidate, None, "excluded", Some(reason.clone())));
        }
        let mut chosen = None;
        for (index, candidate) in order.iter().enumerate() {
            if chosen.is_some() {
                self.report.candidates.push(candidate_report(candidate, Some(index + 1), "not tried", None));
                continue;
            }
            match self.try_candidate(candidate) {
                Ok(image) => {
                    self.report.candidates.push(candidate_report(candidate, Some(index + 1), "chosen", None));
                    chosen = Some(image);
                }
                Err(reason) => {
                    search.tried.push((candidate.device.name.clone(), candidate.medium_path.clone()));
                    ::log::warn!("rejected {} on {}: {reason}", candidate.medium_path, candidate.device.dev_path.display());
                    search.rejections.push(format!("{} on {}: {reason}", candidate.medium_path, candidate.device.dev_path.display()));
                    self.report.candidates.push(candidate_report(candidate, Some(index + 1), "rejected", Some(reason)));
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
        if self.settings.toram {
            ::log::info!("copying {} ({} MiB) to RAM", candidate.medium_path, info.bytes_used >> 20);
            let mut last_percent = 0;
            let (copy, digest) = cow::copy_to_ram(&candidate.image_path, Path::new(RAM_DIR), |done, total| {
                let percent = if total == 0 { 100 } else { done * 100 / total };
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
        } else if self.settings.verify == Verify::Full {
            if let Some(manifest) = &candidate.manifest {
                ::log::info!("checking the SHA-256 of {} ({} MiB)", candidate.medium_path, manifest.size >> 20);
                verify::full(&candidate.image_path, manifest, |_| {}).map_err(|e| e.to_string())?;
            }
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
        Ok(MountedImage {
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
            },
        })
    }

    fn cow(&mut self, image: &MountedImage, search: &MediaSearch, detector: &Detector) -> Result<(), Failure> {
        let failure = |message: String, details: Vec<String>| Failure { stage: Stage::Cow, message, details };
        let new_root = Path::new(NEW_ROOT);
        let mut keep_medium = None;
        let layer = match &self.settings.cow {
            CowSpec::None => {
                cow::mkdir_all(new_root).map_err(|e| failure(e.to_string(), vec![]))?;
                nix::mount::mount(
                    Some(IMAGE_MOUNT),
                    new_root,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| failure(format!("binding the image to {NEW_ROOT}: {e}"), vec![]))?;
                self.report.cow = Some("none (read-only root)".into());
                return Ok(());
            }
            CowSpec::Tmpfs { size } => cow::tmpfs_layer(Path::new(COW_DIR), size).map_err(|e| failure(e.to_string(), vec![]))?,
            CowSpec::Persistent { device, dir } => {
                let medium = search.find_device(device).ok_or_else(|| {
                    failure(
                        format!("viver.cow={device}:{dir}: no such device among the disks found"),
                        search.describe(),
                    )
                })?;
                let mounted = match &medium.mounted_at {
                    Some(path) => path.clone(),
                    None => return Err(failure(format!("{device} has no mountable filesystem for the changes"), search.describe())),
                };
                // The medium was mounted read-only like every other; this one we write to.
                nix::mount::mount(None::<&str>, &mounted, None::<&str>, nix::mount::MsFlags::MS_REMOUNT, None::<&str>)
                    .map_err(|e| failure(format!("cannot make {device} writable for the changes: {e}"), vec![]))?;
                keep_medium = Some(mounted.clone());
                let target = mounted.join(dir.trim_start_matches('/'));
                if target.is_file() {
                    // An image file (a filesystem in a file) holds the changes: on FAT
                    // media, which cannot carry an overlay's upper layer, this is the way.
                    let file_mount = self
                        .mount_cow_file(&target, detector)
                        .map_err(|e| failure(format!("viver.cow={device}:{dir}: {e}"), vec![]))?;
                    cow::persistent_layer(&file_mount, "/", &image.id, &format!("{device}:{dir}"))
                        .map_err(|e| failure(e.to_string(), vec![]))?
                } else {
                    cow::persistent_layer(&mounted, dir, &image.id, device).map_err(|e| failure(e.to_string(), vec![]))?
                }
            }
        };
        cow::mount_overlay(Path::new(IMAGE_MOUNT), &layer, new_root).map_err(|e| failure(e.to_string(), vec![]))?;
        self.report.cow = Some(layer.description.clone());
        if image.chosen.toram {
            // The image is in RAM: let go of the media so they can be removed.
            release_media_except(keep_medium.as_deref());
        }
        Ok(())
    }

    /// Attaches a copy-on-write image file read-write and mounts the filesystem in it.
    fn mount_cow_file(&self, file: &Path, detector: &Detector) -> Result<PathBuf, String> {
        let fs = crate::disks::superblock::probe_path(file)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{} holds no filesystem VIVER knows (make one with mkfs.ext4)", file.display()))?;
        for alias in fs.kind.module_aliases() {
            let _ = detector.load_module(alias);
        }
        let attached = loopdev::attach(file, Path::new("/dev"), false).map_err(|e| e.to_string())?;
        let target = Path::new(COW_FILE_MOUNT);
        cow::mount_fs(&attached.path, target, fs.kind.mount_type(), nix::mount::MsFlags::MS_NODEV, None)
            .map_err(|e| e.to_string())?;
        Ok(target.to_path_buf())
    }

    fn switch_root(&mut self, image: &MountedImage) -> Result<std::convert::Infallible, Failure> {
        let new_root = Path::new(NEW_ROOT);
        let failure = |message: String| Failure { stage: Stage::SwitchRoot, message, details: vec![] };
        let init = switch_root::find_init(new_root, self.settings.init.as_deref()).map_err(|e| failure(e.to_string()))?;
        self.report.init = Some(init.display().to_string());
        self.report.image = Some(image.chosen.clone());
        let c = &image.chosen;
        let line = format!(
            "booting image {} ({}) from {} ({}){}, changes in {}, init {}",
            c.name,
            c.id,
            c.device,
            c.media,
            if c.toram { ", copied to RAM" } else { "" },
            self.report.cow.as_deref().unwrap_or("?"),
            init.display()
        );
        // The report's own switch-root timing can only cover what happened up to here.
        let total = self::log::uptime() - self.started_monotonic.as_secs_f64();
        self.report.stages.push(StageTiming { stage: Stage::SwitchRoot, start: self::log::uptime(), duration_ms: 0.0 });
        let lines = BootLogger::get().map(|l| {
            l.console_always(&line);
            l.console_always(&format!("initramfs done in {:.0} ms", total * 1000.0));
            l.lines()
        });
        if let Err(e) = self.report.write(Path::new(REPORT_DIR), &lines.unwrap_or_default()) {
            ::log::warn!("could not write {REPORT_DIR}/boot.json: {e}");
        }
        self::log::restore_kmsg_ratelimit(self.kmsg_ratelimit.take());
        let mut args = switch_root::systemd_handover(new_root, &init, self.started_realtime, self.started_monotonic);
        args.extend(self.settings.init_args.iter().cloned());
        let error = switch_root::switch_root(new_root, &init, &args, &[]);
        Err(failure(error.to_string()))
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

/// After a copy to RAM the media are not needed: detach them so they can be removed.
fn release_media_except(keep: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(media::MEDIA_DIR) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if Some(path.as_path()) == keep {
            continue;
        }
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
    }
}

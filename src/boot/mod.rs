//! PID 1: the boot, stage by stage (see [`stage::Stage`]).
//!
//! Each stage is a function that either moves the boot forward or returns a
//! [`report::Failure`] saying what it tried and found; [`run_as_pid1`] turns a failure
//! (or, as a last resort, a panic) into a readable report and the `viver.panic=` policy.

// The stages, in the order of a boot.
pub mod boot_server;
pub mod config;
pub mod cow;
pub mod disks;
pub mod early;
pub mod hardware;
pub mod image;
pub mod network;
pub mod network_image;
pub mod switch_root;

// What the stages share.
pub mod failure;
pub mod log;
pub mod report;
pub mod settings;
pub mod stage;

use self::log::BootLogger;
use self::report::{BootReport, ChosenImage, Failure, StageTiming};
use self::settings::{ConfFile, Settings};
use self::stage::Stage;
use crate::cmdline::Cmdline;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the new root is assembled before it becomes `/`.
const NEW_ROOT: &str = "/newroot";
/// The chosen image's SquashFS, mounted read-only.
const IMAGE_MOUNT: &str = "/run/viver/image";
/// The tmpfs copy-on-write layer.
const COW_DIR: &str = "/run/viver/cow";
/// A copy-on-write filesystem image file, mounted.
const COW_FILE_MOUNT: &str = "/run/viver/cow-file";
/// The image copied to RAM (`viver.toram`).
const RAM_DIR: &str = "/run/viver/ram";
/// `boot.json` and `boot.log`.
const REPORT_DIR: &str = "/run/viver";

/// State carried from stage to stage.
pub(crate) struct Boot {
    pub(crate) report: BootReport,
    cmdline: Cmdline,
    initrd_confs: Vec<ConfFile>,
    settings: Settings,
    started_realtime: Duration,
    started_monotonic: Duration,
    kmsg_ratelimit: Option<String>,
    /// How many of the media's `viver.conf` files (and problems reading them) the
    /// settings already include.
    media_confs_applied: usize,
    conf_problems_seen: usize,
    /// What the hardware stage could not do (no modules for this kernel): repeated in a
    /// failure report, since it is the likely cause.
    hardware_notes: Vec<String>,
    /// The daemon that serves the network root (and the LAN): started before the hand-over.
    daemon: Option<crate::daemon::DaemonHandle>,
}

/// What the image stage hands to the cow stage.
pub(crate) struct MountedImage {
    chosen: ChosenImage,
    id: String,
    /// The image file this boot mounted (on its medium, or its copy in RAM); none on a
    /// network boot.
    file: Option<std::path::PathBuf>,
    /// Where the medium holding it is mounted.
    medium_root: Option<std::path::PathBuf>,
    /// The manifest beside it on the medium.
    manifest_file: Option<std::path::PathBuf>,
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
        media_confs_applied: 0,
        conf_problems_seen: 0,
        hardware_notes: Vec::new(),
        daemon: None,
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
        if self.settings.net.is_some() {
            return self.run_network_boot(detector);
        }
        let mut search = self.timed(Stage::Disks, |boot| boot.disks(&detector))?;
        let image = match self.timed(Stage::Image, |boot| boot.image(&mut search, &detector)) {
            Ok(image) => image,
            // The search stopped at the fastest medium and every image there was
            // rejected: look at the other media too before giving up.
            Err(_) if search.stopped_early => {
                ::log::warn!("every image on the fastest media was rejected; looking at the other media");
                self.timed(Stage::Disks, |boot| {
                    boot.resume_disks(&detector, &mut search);
                    Ok(())
                })?;
                self.timed(Stage::Image, |boot| boot.image(&mut search, &detector))?
            }
            Err(failure) => return Err(failure),
        };
        // Before the cow stage: with viver.toram it lets the media go.
        self.start_boot_server(&image, &detector);
        self.timed(Stage::Cow, |boot| boot.cow(&image, &search, &detector))?;
        self.finish_hardware(&detector);
        self.report.devices = search.reports();
        self.timed(Stage::SwitchRoot, |boot| boot.switch_root(&image))
    }

    /// A network boot: no disk is searched (nor touched); the image comes from the boot
    /// server through the daemon's `/dev/nbd0`, or into RAM with `viver.toram`.
    fn run_network_boot(&mut self, detector: crate::hardware::detect::Detector) -> Result<std::convert::Infallible, Failure> {
        let net = self.timed(Stage::Network, |boot| boot.network(&detector))?;
        let mut image = self.timed(Stage::Image, |boot| boot.network_image(&net, &detector))?;
        let no_media = disks::search::MediaSearch::default();
        self.timed(Stage::Cow, |boot| boot.cow(&image, &no_media, &detector))?;
        self.finish_hardware(&detector);
        self.note_network_bytes(&mut image);
        if let Some(net) = &self.report.network {
            if let Err(e) = crate::net::unmanaged::write(Path::new("/run"), &net.interface, &net.mac) {
                let text = format!("cannot keep the distribution's network configuration off {}: {e}", net.interface);
                ::log::warn!("{text}");
                self.report.problems.push(text);
            }
        }
        self.timed(Stage::SwitchRoot, |boot| boot.switch_root(&image))
    }

    /// No driver load may be cut short by the exec that starts the real init. A load hung
    /// in the kernel cannot be cancelled: after a bounded wait the boot goes on and names
    /// it. Then the hardware's part of the report.
    fn finish_hardware(&mut self, detector: &crate::hardware::detect::Detector) {
        let wait = self.settings.timeout.min(hardware::HAND_OVER_WAIT);
        for stuck in detector.finish(wait) {
            let text = format!("{stuck}: handing over without it");
            ::log::warn!("{text}");
            self.report.problems.push(text);
        }
        self.report.hardware = serde_json::to_value(detector.report()).ok();
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
}

//! Stage `hardware`: starts driver detection ([`Detector`]), which goes on in the
//! background while the disk stage probes each disk as it appears.

use super::report::Failure;
use super::stage::Stage;
use super::Boot;
use crate::hardware::detect::{DetectOptions, Detector};
use crate::hardware::index::ModuleTables;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest wait at the hand-over for driver loads still under way.
pub(super) const HAND_OVER_WAIT: Duration = Duration::from_secs(10);

/// The kernel releases an initrd has modules for (`/lib/modules/*`), sorted.
fn releases_in(modules_root: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(modules_root)
        .map(|dir| dir.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

/// What to say when the initrd has no modules for the running kernel `release`.
pub(super) fn missing_release_note(release: &str, releases: &[String]) -> String {
    let has = if releases.is_empty() { "none at all".to_string() } else { releases.join(", ") };
    format!(
        "this initrd has no modules for the running kernel {release} (/lib/modules/{release} is missing; it has modules for: {has}); \
         going on with the kernel's built-in drivers only: boot the kernel the initrd was made for, or make the initrd for this one"
    )
}

/// Modules every boot needs whatever the hardware: started with the device drivers so
/// they are ready when the image is found.
const ALWAYS_LOAD: &[&str] = &["loop", "squashfs", "overlay"];

impl Boot {
    pub(super) fn hardware(&mut self) -> Result<Detector, Failure> {
        let release = &self.report.kernel;
        let mut force_load: Vec<String> = ALWAYS_LOAD.iter().map(|m| m.to_string()).collect();
        force_load.extend(self.settings.modules.iter().cloned());
        if self.settings.net.is_some() {
            // The root will be a network block device: ready before the lease is.
            force_load.push("nbd".into());
        }
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
            // A named image is not: its fastest copy is still what the search wants.
            // A network boot reads no disk: the network drivers are what it waits for.
            fast_first: self.settings.media.is_none() && self.settings.net.is_none(),
            // One module that never finishes loading must not hold the boot longer than
            // the devices may take to appear.
            load_timeout: self.settings.timeout,
        };
        if !options.modules_dir.is_dir() {
            // Kernel and initrd of different releases, the most common mistake: the
            // built-in drivers may still reach a medium; fail only if none appears.
            let note = missing_release_note(release, &releases_in(Path::new("/lib/modules")));
            ::log::warn!("{note}");
            self.report.problems.push(note.clone());
            self.hardware_notes.push(note);
            return Ok(Detector::start_with_tables(options, ModuleTables::default()));
        }
        let detector = Detector::start(options).map_err(|e| Failure {
            stage: Stage::Hardware,
            message: format!("hardware detection could not start: {e}"),
            details: vec![format!("module directory /lib/modules/{release}")],
        })?;
        // dm-verity for an image with a hash tree (the kit's default): queued now, behind
        // the storage drivers, so the image stage finds it loaded instead of waiting for
        // four loads (dm_mod, dm_bufio, reed_solomon, dm_verity: ~50 ms under TCG). Silent
        // when the initrd has no dm modules.
        detector.request("dm_verity", "requested as dm_verity (for an image with a verity tree)");
        // Detection goes on in the background; the disk stage probes each disk as it
        // appears and waits for the hardware to settle before it decides.
        Ok(detector)
    }
}

//! Stage `hardware`: starts driver detection ([`Detector`]), which goes on in the
//! background while the disk stage probes each disk as it appears.

use super::report::Failure;
use super::stage::Stage;
use super::Boot;
use crate::hardware::detect::{DetectOptions, Detector};
use std::path::PathBuf;

/// Modules every boot needs whatever the hardware: started with the device drivers so
/// they are ready when the image is found.
const ALWAYS_LOAD: &[&str] = &["loop", "squashfs", "overlay"];

impl Boot {
    pub(super) fn hardware(&mut self) -> Result<Detector, Failure> {
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
            // A named image is not: its fastest copy is still what the search wants.
            fast_first: self.settings.media.is_none(),
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
}

//! Stage `config`: the kernel command line and the initrd's own `viver.conf` become
//! [`Settings`]; the media's `viver.conf` files are folded in later by the disk stage.

use super::log::BootLogger;
use super::settings::{ConfFile, ConfSource, Settings};
use super::Boot;
use super::cmdline::Cmdline;
use super::report::Failure;

/// The initrd's own configuration, written by the kit.
const INITRD_CONF: &str = "/etc/viver.conf";

impl Boot {
    pub(super) fn config(&mut self) -> Result<(), Failure> {
        let line = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        self.report.cmdline = line.trim().to_string();
        self.cmdline = Cmdline::parse(&line);
        if let Ok(text) = std::fs::read_to_string(INITRD_CONF) {
            self.initrd_confs.push(ConfFile { origin: format!("initrd:{INITRD_CONF}"), text, source: ConfSource::Initrd });
        }
        self.resolve_settings(&[]);
        Ok(())
    }

    /// Folds the media's confs, the initrd's conf and the command line into settings;
    /// called again each time the disk stage finds a medium with a `viver.conf`.
    pub(super) fn resolve_settings(&mut self, media_confs: &[ConfFile]) {
        let mut confs = self.initrd_confs.clone();
        confs.extend_from_slice(media_confs);
        let settings = Settings::resolve(&self.cmdline, &confs);
        for problem in &settings.problems {
            if !self.settings.problems.contains(problem) {
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
}

//! Stage `config`: the kernel command line and the initrd's own `viver.conf` become
//! [`Settings`]; the media's `viver.conf` files are folded in later by the disk stage.

use super::log::BootLogger;
use super::report::Failure;
use super::settings::{ConfFile, ConfSource, Settings};
use super::Boot;
use crate::cmdline::Cmdline;

/// The initrd's own configuration, written by the kit.
const INITRD_CONF: &str = "/etc/viver.conf";

impl Boot {
    pub(super) fn config(&mut self) -> Result<(), Failure> {
        // Bytes, decoded lossily: one byte that is not UTF-8 costs its word, not every
        // setting, and the report names the word.
        let bytes = match std::fs::read("/proc/cmdline") {
            Ok(bytes) => bytes,
            Err(e) => {
                let problem = format!("cannot read /proc/cmdline ({e}): booting with the defaults");
                ::log::warn!("{problem}");
                self.report.problems.push(problem);
                Vec::new()
            }
        };
        let (cmdline, problems) = Cmdline::from_bytes(&bytes);
        self.report.cmdline = String::from_utf8_lossy(&bytes).trim().to_string();
        self.cmdline = cmdline;
        for problem in problems {
            ::log::warn!("{problem}");
            self.report.problems.push(problem);
        }
        match std::fs::read(INITRD_CONF) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => self.initrd_confs.push(ConfFile { origin: format!("initrd:{INITRD_CONF}"), text, source: ConfSource::Initrd }),
                Err(e) => {
                    let problem = format!("initrd:{INITRD_CONF}: not UTF-8 text ({}), ignored", e.utf8_error());
                    ::log::warn!("{problem}");
                    self.report.problems.push(problem);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let problem = format!("initrd:{INITRD_CONF}: cannot be read ({e}), ignored");
                ::log::warn!("{problem}");
                self.report.problems.push(problem);
            }
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

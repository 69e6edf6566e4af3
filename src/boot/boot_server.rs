//! Role `boot-server` (`viver.role=boot-server`, the kit media's default): before the
//! hand-over, the daemon is given the image this node booted from (and the kernel and
//! initrd on its medium) to serve the LAN with, so other PCs netboot the same system.
//! Starting it never stops the boot: a problem is reported and the boot goes on.

use super::report::BootServerReport;
use super::{Boot, MountedImage};
use crate::daemon::control::{Command, Reply};
use crate::hardware::detect::Detector;
use std::path::Path;
use std::time::Duration;

/// The server's state (`serve.json`, leases) in the booted system.
const STATE_DIR: &str = "/run/viver/serve";

/// Words of this node's command line that its clients get too: how the console and the
/// failure policy behave. Everything about finding an image, roles and the network is
/// the server's own business (the client gets `viver.net=` and `BOOTIF=` from the script).
pub(crate) fn client_cmdline(own: &str) -> String {
    let keep = |word: &&str| {
        let key = word.split('=').next().unwrap_or("");
        matches!(
            key,
            "console"
                | "quiet"
                | "loglevel"
                | "panic"
                | "viver.panic"
                | "viver.panic_wait"
                | "viver.verify"
                | "viver.debug"
                | "viver.quiet"
        )
    };
    own.split_whitespace().filter(keep).collect::<Vec<_>>().join(" ")
}

pub(crate) fn has_role(roles: Option<&str>, wanted: &str) -> bool {
    roles.is_some_and(|r| r.split(',').any(|role| role.trim() == wanted))
}

impl Boot {
    pub(super) fn start_boot_server(&mut self, image: &MountedImage, detector: &Detector) {
        if !has_role(self.settings.role.as_deref(), "boot-server") {
            return;
        }
        // The network drivers may still be held behind the fast storage: a server needs them.
        detector.open_gate();
        let mut report = BootServerReport { state_dir: STATE_DIR.into(), ..BootServerReport::default() };
        let result = (|| -> Result<(String, String), String> {
            let file = image.file.as_ref().ok_or("this node was netbooted: it does not serve the LAN itself (yet)")?;
            if self.daemon.is_none() {
                self.daemon = Some(crate::daemon::spawn(Path::new("/proc/self/exe"), self.settings.debug).map_err(|e| e.to_string())?);
            }
            let daemon = self.daemon.as_ref().ok_or("no daemon")?;
            report.daemon_pid = Some(daemon.pid);
            let command = Command::Serve {
                image: file.display().to_string(),
                manifest: image.manifest_file.as_ref().map(|m| m.display().to_string()),
                medium: image.medium_root.as_ref().map(|m| m.display().to_string()),
                cmdline: [client_cmdline(&self.report.cmdline), self.settings.clients_append.join(" ")].join(" ").trim().to_string(),
                state_dir: STATE_DIR.into(),
                interface: None,
                dhcp: self.settings.dhcp.clone(),
                range: self.settings.dhcp_range.clone(),
            };
            match daemon.request(&command, &[], Duration::from_secs(30)).map_err(|e| e.to_string())? {
                Reply::Serving { kernel, initrd } => Ok((kernel, initrd)),
                Reply::Error { message } => Err(message),
                other => Err(format!("the daemon answered {other:?}")),
            }
        })();
        match result {
            Ok((kernel, initrd)) => {
                ::log::info!("boot server: the daemon serves the LAN (kernel {kernel}, initrd {initrd}); state in {STATE_DIR}");
                report.started = true;
                report.kernel = Some(kernel);
                report.initrd = Some(initrd);
            }
            Err(why) => {
                let text = format!("role boot-server: not serving the LAN: {why}");
                ::log::warn!("{text}");
                self.report.problems.push(text);
                report.error = Some(why);
            }
        }
        self.report.boot_server = Some(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_get_the_console_and_the_failure_policy_only() {
        let own = "BOOT_IMAGE=/boot/vmlinuz initrd=/boot/initrd.img console=ttyS0 console=tty0 viver.image=abc viver.role=boot-server viver.panic=reboot quiet BOOTIF=01-aa";
        assert_eq!(client_cmdline(own), "console=ttyS0 console=tty0 viver.panic=reboot quiet");
    }

    #[test]
    fn roles_are_a_list() {
        assert!(has_role(Some("storage, boot-server"), "boot-server"));
        assert!(!has_role(Some("boot-servers"), "boot-server"));
        assert!(!has_role(None, "boot-server"));
    }
}

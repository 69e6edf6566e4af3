//! The stages of a boot, in order. Their names appear in log lines, in the boot report,
//! in failure reports and in `viver.break=`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// /proc, /sys, /dev, /run, the console, the logger.
    Early,
    /// Command line and the initrd's own viver.conf.
    Config,
    /// Drivers for every device, from the kernel's module tables.
    Hardware,
    /// A network boot (`viver.net=`): the boot interface, its DHCP lease, the manifest.
    Network,
    /// Every block device probed, every filesystem mounted read-only.
    Disks,
    /// The disk image chosen among the candidates and checked.
    Image,
    /// Loop device, copy-on-write layer, overlay: the new root.
    Cow,
    /// Mounts moved, the initramfs freed, the real init started.
    SwitchRoot,
}

impl Stage {
    pub const ALL: [Stage; 8] =
        [Stage::Early, Stage::Config, Stage::Hardware, Stage::Network, Stage::Disks, Stage::Image, Stage::Cow, Stage::SwitchRoot];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Early => "early",
            Stage::Config => "config",
            Stage::Hardware => "hardware",
            Stage::Network => "network",
            Stage::Disks => "disks",
            Stage::Image => "image",
            Stage::Cow => "cow",
            Stage::SwitchRoot => "switch-root",
        }
    }

    /// Accepts the names above, plus dracut's habit `pre-pivot` for the last one.
    pub fn from_name(name: &str) -> Option<Stage> {
        match name {
            "pre-pivot" | "switch_root" => Some(Stage::SwitchRoot),
            "pre-mount" => Some(Stage::Cow),
            "pre-udev" | "pre-trigger" => Some(Stage::Hardware),
            _ => Stage::ALL.into_iter().find(|s| s.name() == name),
        }
    }

    pub fn names() -> String {
        Stage::ALL.map(Stage::name).join(", ")
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(Stage::from_name(stage.name()), Some(stage));
        }
        assert_eq!(Stage::from_name("pre-pivot"), Some(Stage::SwitchRoot));
        assert_eq!(Stage::from_name("bogus"), None);
    }
}

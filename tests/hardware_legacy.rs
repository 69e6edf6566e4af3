//! The legacy path (modules.pcimap/usbmap only) against the modern one: written
//! by `export-legacy` from Debian's aliases, both must choose the same drivers for
//! every PCI and USB device of the QEMU device sets, and the legacy path adds the
//! storage stack by controller class.

mod hardware_common;

use std::collections::BTreeSet;
use viver::hardware::legacy::LegacyMaps;
use viver::hardware::ModuleTables;

#[test]
fn legacy_maps_choose_the_same_drivers_as_aliases() {
    let (modern, _) = ModuleTables::build(&hardware_common::release_dir()).unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("legacy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    modern.write(&dir).unwrap();
    std::fs::remove_file(dir.join("modules.alias")).unwrap();
    let (maps, skipped) = LegacyMaps::from_aliases(modern.aliases());
    assert!(maps.pci.len() > 5000 && maps.usb.len() > 5000, "{} {}", maps.pci.len(), maps.usb.len());
    assert!(skipped < 1000);
    maps.write(&dir).unwrap();
    let (legacy, warnings) = ModuleTables::load(&dir).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(legacy.uses_legacy_maps());

    let devices: Vec<&str> = hardware_common::REAL.iter().copied().filter(|m| m.starts_with("pci:") || m.starts_with("usb:")).collect();
    assert!(devices.len() >= 20);
    let mut chosen = 0;
    for dev in devices {
        let want: BTreeSet<String> = modern.resolve(dev).into_iter().filter(|m| !modern.is_builtin(m)).collect();
        let got: BTreeSet<String> =
            legacy.resolve_explained(dev).into_iter().filter(|m| m.why.starts_with("modules.")).map(|m| m.module).collect();
        assert_eq!(got, want, "{dev}");
        chosen += want.len();
    }
    assert!(chosen >= 15, "QEMU devices should mostly have drivers, {chosen}");

    let followers = |dev: &str| -> Vec<String> { legacy.resolve(dev) };
    let ahci = followers("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01");
    assert!(ahci.contains(&"ahci".to_string()) && ahci.contains(&"sd_mod".to_string()) && ahci.contains(&"sr_mod".to_string()), "{ahci:?}");
    let xhci = followers("pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30");
    assert!(
        xhci.contains(&"xhci_pci".to_string()) && xhci.contains(&"usb_storage".to_string()) && xhci.contains(&"uas".to_string()),
        "{xhci:?}"
    );
    let sdhci = followers("pci:v00001B36d00000007sv00001AF4sd00001100bc08sc05i01");
    assert!(sdhci.contains(&"sdhci_pci".to_string()) && sdhci.contains(&"mmc_block".to_string()), "{sdhci:?}");
    // The modern path leaves the storage stack to the disks' own modaliases.
    assert!(!modern.resolve("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01").contains(&"sd_mod".to_string()));
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A well-formed modalias from an alias pattern: each fixed-width field keeps its
/// digits, a bracket gives its first member, '*' becomes random hex digits.
fn instantiate(pattern: &str, bus: &str, fields: &[(&str, usize)], rng: &mut XorShift) -> Option<String> {
    let mut p = pattern.strip_prefix(bus)?;
    let mut out = String::from(bus);
    for (tag, width) in fields {
        p = p.strip_prefix(tag)?;
        out.push_str(tag);
        let mut produced = 0;
        while produced < *width {
            let c = p.chars().next()?;
            if c == '*' {
                p = &p[1..];
                while produced < *width {
                    out.push(b"0123456789ABCDEF"[(rng.next() % 16) as usize] as char);
                    produced += 1;
                }
            } else if c == '[' {
                let end = p.find(']')?;
                out.push(p[1..].chars().next()?);
                p = &p[end + 1..];
                produced += 1;
            } else {
                out.push(c);
                p = &p[1..];
                produced += 1;
            }
        }
    }
    Some(out)
}

#[test]
fn legacy_and_modern_agree_on_synthesised_pci_and_usb_devices() {
    let (modern, _) = ModuleTables::build(&hardware_common::release_dir()).unwrap();
    let (maps, _) = LegacyMaps::from_aliases(modern.aliases());
    let mut legacy = modern.without_aliases();
    legacy.set_legacy(maps);
    // Modules with USB aliases the old format cannot hold (interface numbers).
    let inexpressible: BTreeSet<String> =
        modern.aliases().filter(|(p, _)| p.starts_with("usb:") && !p.ends_with("in*")).map(|(_, m)| m.to_string()).collect();

    let pci = [("v", 8), ("d", 8), ("sv", 8), ("sd", 8), ("bc", 2), ("sc", 2), ("i", 2)];
    let usb = [("v", 4), ("p", 4), ("d", 4), ("dc", 2), ("dsc", 2), ("dp", 2), ("ic", 2), ("isc", 2), ("ip", 2), ("in", 2)];
    let patterns: Vec<String> =
        modern.aliases().map(|(p, _)| p.to_string()).filter(|p| p.starts_with("pci:") || p.starts_with("usb:")).collect();
    let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
    let mut checked = 0;
    for _ in 0..2500 {
        let p = &patterns[(rng.next() % patterns.len() as u64) as usize];
        let dev = if p.starts_with("pci:") { instantiate(p, "pci:", &pci, &mut rng) } else { instantiate(p, "usb:", &usb, &mut rng) };
        let Some(dev) = dev else { continue };
        let want: BTreeSet<String> = modern.resolve(&dev).into_iter().filter(|m| !modern.is_builtin(m)).collect();
        let got: BTreeSet<String> =
            legacy.resolve_explained(&dev).into_iter().filter(|m| m.why.starts_with("modules.")).map(|m| m.module).collect();
        let missing: Vec<&String> = want.difference(&got).filter(|m| !inexpressible.contains(*m)).collect();
        let extra: Vec<&String> = got.difference(&want).collect();
        assert!(missing.is_empty() && extra.is_empty(), "{dev}: modern {want:?}, legacy {got:?}");
        checked += 1;
    }
    assert!(checked > 2000, "{checked}");
}

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
        let got: BTreeSet<String> = legacy.resolve_explained(dev).into_iter().filter(|m| m.why.starts_with("modules.")).map(|m| m.module).collect();
        assert_eq!(got, want, "{dev}");
        chosen += want.len();
    }
    assert!(chosen >= 15, "QEMU devices should mostly have drivers, {chosen}");

    let followers = |dev: &str| -> Vec<String> { legacy.resolve(dev) };
    let ahci = followers("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01");
    assert!(ahci.contains(&"ahci".to_string()) && ahci.contains(&"sd_mod".to_string()) && ahci.contains(&"sr_mod".to_string()), "{ahci:?}");
    let xhci = followers("pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30");
    assert!(xhci.contains(&"xhci_pci".to_string()) && xhci.contains(&"usb_storage".to_string()) && xhci.contains(&"uas".to_string()), "{xhci:?}");
    let sdhci = followers("pci:v00001B36d00000007sv00001AF4sd00001100bc08sc05i01");
    assert!(sdhci.contains(&"sdhci_pci".to_string()) && sdhci.contains(&"mmc_block".to_string()), "{sdhci:?}");
    // The modern path leaves the storage stack to the disks' own modaliases.
    assert!(!modern.resolve("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01").contains(&"sd_mod".to_string()));
}

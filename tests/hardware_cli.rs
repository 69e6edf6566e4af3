//! `viver hw ...` as a person runs it: index a module tree, export legacy maps,
//! probe a captured /sys.

mod hardware_common;

use std::path::PathBuf;
use std::process::Command;

fn viver(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_viver")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn index_export_and_probe() {
    let release = hardware_common::release_dir();
    let reference = hardware_common::depmod_reference();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let out = work.join("tables");

    let (ok, stdout, stderr) = viver(&["hw", "index", "--modules", release.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    // Every module file of the tree, whatever the release: a point release changes the count.
    fn count_modules(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .map(|p| {
                if p.is_dir() {
                    count_modules(&p)
                } else {
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    usize::from([".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().any(|ext| name.ends_with(ext)))
                }
            })
            .sum()
    }
    let expected = count_modules(&release);
    assert!(stdout.contains(&format!("{expected} modules indexed")), "{expected} modules expected: {stdout}");
    assert_eq!(
        std::fs::read_to_string(out.join("modules.alias")).unwrap(),
        std::fs::read_to_string(reference.join("modules.alias")).unwrap()
    );

    let (ok, stdout, stderr) =
        viver(&["hw", "export-legacy", "--modules", out.to_str().unwrap(), "-o", work.join("legacy").to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("pcimap"), "{stdout}");
    let pcimap = std::fs::read_to_string(work.join("legacy/modules.pcimap")).unwrap();
    assert!(pcimap.lines().any(|l| l.starts_with("ahci ")), "no ahci line");

    let sysfs = work.join("sys");
    for (dev, alias) in [
        ("pci0000:00/0000:00:1f.2", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
        ("pci0000:00/0000:00:07.0", "pci:v0000FFFFd0000FFFFsv00000000sd00000000bcFFsc00i00"),
    ] {
        let d = sysfs.join("devices").join(dev);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("modalias"), format!("{alias}\n")).unwrap();
    }
    let (ok, stdout, stderr) = viver(&["hw", "probe", "--sysfs", sysfs.to_str().unwrap(), "--modules", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("/devices/pci0000:00/0000:00:1f.2"), "{stdout}");
    assert!(stdout.contains("-> ahci because alias pci:v00008086d00002922sv*sd*bc*sc*i*, alias pci:v*d*sv*sd*bc01sc06i01*;"), "{stdout}");
    assert!(stdout.contains("loads scsi_common scsi_mod libata libahci ahci"), "{stdout}");
    assert!(stdout.contains("unmatched pci:v0000FFFFd0000FFFF"), "{stdout}");

    let (ok, stdout, _) = viver(&["hw", "probe", "--json", "--sysfs", sysfs.to_str().unwrap(), "--modules", out.to_str().unwrap()]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

//! Our indexer against kmod's depmod on Debian's 6.1 kernel: every alias line and
//! every dependency line identical.

mod hardware_common;

use std::collections::BTreeSet;
use viver::hardware::ModuleTables;

#[test]
fn built_tables_equal_depmod_output() {
    let reference = hardware_common::depmod_reference();
    let (tables, warnings) = ModuleTables::build(&hardware_common::release_dir()).expect("build");
    assert!(warnings.is_empty(), "unexpected warnings: {:?}", &warnings[..warnings.len().min(5)]);
    assert!(tables.modules().count() > 4000);

    let want_alias = std::fs::read_to_string(reference.join("modules.alias")).unwrap();
    let got_alias = tables.modules_alias_text();
    assert_eq!(got_alias.lines().count(), want_alias.lines().count(), "alias line count");
    for (n, (g, w)) in got_alias.lines().zip(want_alias.lines()).enumerate() {
        assert_eq!(g, w, "modules.alias line {}", n + 1);
    }

    // Order of the lines aside, each line (and the order of deps within it) must match.
    let want_dep: BTreeSet<String> = std::fs::read_to_string(reference.join("modules.dep")).unwrap().lines().map(String::from).collect();
    let got_dep: BTreeSet<String> = tables.modules_dep_text().lines().map(String::from).collect();
    let missing: Vec<_> = want_dep.difference(&got_dep).take(5).collect();
    let extra: Vec<_> = got_dep.difference(&want_dep).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "modules.dep differs: depmod has {missing:?}, we have {extra:?}");

    let want_soft: BTreeSet<String> =
        std::fs::read_to_string(reference.join("modules.softdep")).unwrap().lines().map(String::from).collect();
    let out = tempdir("write");
    tables.write(&out).unwrap();
    let got_soft: BTreeSet<String> = std::fs::read_to_string(out.join("modules.softdep")).unwrap().lines().map(String::from).collect();
    assert_eq!(got_soft, want_soft);

    // What we wrote loads back to the same tables.
    let (reloaded, w) = ModuleTables::load(&out).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(reloaded.modules_dep_text(), tables.modules_dep_text());
    assert_eq!(reloaded.modules_alias_text(), tables.modules_alias_text());
}

#[test]
fn subset_keeps_only_named_modules_and_their_deps() {
    let (tables, _) = ModuleTables::load(&hardware_common::depmod_reference()).unwrap();
    let want: BTreeSet<String> = [
        "ahci",
        "libahci",
        "libata",
        "scsi_mod",
        "scsi_common",
        "sd_mod",
        "crc_t10dif",
        "crct10dif_common",
        "t10_pi",
        "crc64_rocksoft",
        "crc64",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let sub = tables.subset(&want);
    let names: BTreeSet<String> = sub.modules().map(String::from).collect();
    assert!(names.is_subset(&want));
    assert!(names.contains("ahci"));
    assert_eq!(sub.load_order("ahci").last().map(String::as_str), Some("ahci"));
    assert!(sub.load_order("ahci").contains(&"libata".to_string()));
    assert_eq!(sub.resolve("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"), vec!["ahci".to_string()]);
    assert!(sub.resolve("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00").is_empty());
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("hw-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

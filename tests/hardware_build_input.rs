//! Building tables from a tree with compressed modules and bad files: gzip'd modules
//! index and inflate like plain ones; a non-ELF file and a .modinfo without name are
//! named in a warning and skipped, the rest goes on.

mod hardware_common;

use std::io::Write;
use std::path::PathBuf;
use viver::hardware::modinfo::read_module_bytes;
use viver::hardware::ModuleTables;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn gzip_modules_and_bad_files() {
    let src = hardware_common::release_dir();
    let tree = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("build-input-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tree);
    let plain = ["kernel/drivers/ata/ahci.ko", "kernel/drivers/scsi/scsi_mod.ko", "kernel/drivers/scsi/scsi_common.ko"];
    let gzipped = ["kernel/drivers/ata/libahci.ko", "kernel/drivers/ata/libata.ko"];
    for rel in plain.iter().chain(gzipped.iter()) {
        let bytes = std::fs::read(src.join(rel)).unwrap();
        let dest = tree.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if gzipped.contains(rel) {
            std::fs::write(format!("{}.gz", dest.display()), gzip(&bytes)).unwrap();
        } else {
            std::fs::write(&dest, &bytes).unwrap();
        }
    }
    std::fs::write(tree.join("kernel/junk.ko"), b"this is not an ELF file").unwrap();
    let mut nameless = std::fs::read(src.join("kernel/drivers/block/loop.ko")).unwrap();
    let pos = nameless.windows(6).position(|w| w == b"\0name=").expect("loop.ko has name=");
    nameless[pos + 1..pos + 6].copy_from_slice(b"nome=");
    std::fs::write(tree.join("kernel/nameless.ko"), &nameless).unwrap();

    let (tables, warnings) = ModuleTables::build(&tree).unwrap();
    let text: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    assert!(text.iter().any(|w| w.contains("junk.ko") && w.contains("not an ELF")), "{text:#?}");
    assert!(text.iter().any(|w| w.contains("nameless") && w.contains("no name=")), "{text:#?}");
    let names: Vec<&str> = tables.modules().collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(tables.module_path("libata").unwrap().to_str(), Some("kernel/drivers/ata/libata.ko.gz"));
    assert_eq!(tables.load_order("ahci"), vec!["scsi_common", "scsi_mod", "libata", "libahci", "ahci"]);
    assert_eq!(tables.resolve("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"), vec!["ahci".to_string()]);
    // The loader's userspace fallback inflates gzip to the original module.
    let inflated = read_module_bytes(&tree.join("kernel/drivers/ata/libata.ko.gz")).unwrap();
    assert_eq!(inflated, std::fs::read(src.join("kernel/drivers/ata/libata.ko")).unwrap());
}

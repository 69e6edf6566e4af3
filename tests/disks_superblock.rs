//! Filesystem detection on the start of real filesystems made with the real tools
//! (mkfs.ext2/3/4, mkfs.vfat, mkfs.exfat, mkfs.btrfs, mkfs.xfs, xorriso, mksquashfs;
//! see tests/fixtures/disks/fs/README.md). Expected labels and UUIDs are what
//! `blkid -p` printed for the same images.

#[path = "kernel/mod.rs"]
mod kernel;

use flate2::read::GzDecoder;
use std::io::{Cursor, Read};
use std::path::Path;
use viver::disks::superblock::{probe, probe_path, Filesystem, FsKind};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/disks/fs").join(format!("{name}.img.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    GzDecoder::new(file).read_to_end(&mut out).unwrap();
    out
}

fn probe_fixture(name: &str) -> Option<Filesystem> {
    probe(&mut Cursor::new(fixture(name))).unwrap()
}

#[track_caller]
fn expect(name: &str, kind: FsKind, label: Option<&str>, uuid: Option<&str>) {
    let fs = probe_fixture(name).unwrap_or_else(|| panic!("{name}: no filesystem found"));
    assert_eq!((fs.kind, fs.label.as_deref(), fs.uuid.as_deref()), (kind, label, uuid), "{name}");
}

#[test]
fn ext_family_told_apart() {
    expect("ext2", FsKind::Ext2, Some("VIVER_E2"), Some("11111111-2222-3333-4444-555555555555"));
    expect("ext3", FsKind::Ext3, Some("VIVER_E3"), Some("11111111-2222-3333-4444-555555555556"));
    expect("ext4", FsKind::Ext4, Some("VIVER_E4"), Some("11111111-2222-3333-4444-555555555557"));
}

#[test]
fn fat_12_16_32() {
    expect("fat12", FsKind::Vfat, Some("VIVERF12"), Some("1234-5678"));
    expect("fat16", FsKind::Vfat, Some("VIVERF16"), Some("1234-ABCD"));
    expect("fat32", FsKind::Vfat, Some("VIVERF32"), Some("DEAD-BEEF"));
}

#[test]
fn exfat_label_from_root_directory() {
    expect("exfat", FsKind::Exfat, Some("VIVEREX"), Some("EF4F-F8D9"));
    // Cut before the root directory: still exFAT, the label is just unknown.
    let mut head = fixture("exfat");
    head.truncate(128 * 1024);
    let fs = probe(&mut Cursor::new(head)).unwrap().unwrap();
    assert_eq!((fs.kind, fs.label, fs.uuid.as_deref()), (FsKind::Exfat, None, Some("EF4F-F8D9")));
}

#[test]
fn btrfs_xfs_squashfs() {
    expect("btrfs", FsKind::Btrfs, Some("VIVER_BT"), Some("22222222-3333-4444-5555-666666666666"));
    expect("xfs", FsKind::Xfs, Some("VIVER_XF"), Some("33333333-4444-5555-6666-777777777777"));
    expect("squashfs", FsKind::Squashfs, None, None);
}

#[test]
fn iso9660_plain_and_hybrid() {
    expect("iso9660", FsKind::Iso9660, Some("VIVER_ISO"), Some("2026-11-28-06-46-49-00"));
    // isohybrid: an MBR at sector 0 (as on a USB stick made with dd) must not hide the ISO.
    expect("iso9660-hybrid", FsKind::Iso9660, Some("VIVER_HYBRID"), Some("2026-11-28-06-52-21-00"));
}

#[test]
fn garbage_truncated_and_partition_tables_are_no_filesystem() {
    for name in ["garbage", "ext4-truncated", "btrfs-truncated", "iso9660-truncated", "mbr-partitioned"] {
        assert_eq!(probe_fixture(name), None, "{name}");
    }
    assert_eq!(probe(&mut Cursor::new(Vec::new())).unwrap(), None);
    assert_eq!(probe(&mut Cursor::new(vec![0u8; 200_000])).unwrap(), None);
}

#[test]
fn probe_path_reads_a_file_and_names_a_missing_one() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("disks-probe-path-ext4.img");
    std::fs::write(&path, fixture("ext4")).unwrap();
    assert_eq!(probe_path(&path).unwrap().map(|f| f.kind), Some(FsKind::Ext4));
    let err = probe_path(Path::new("/nonexistent/disk.img")).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/disk.img"), "{err}");
}

#[test]
fn mount_types_and_modules() {
    assert_eq!(FsKind::Vfat.mount_type(), "vfat");
    assert_eq!(FsKind::Vfat.module_aliases(), ["fs-vfat", "nls_cp437", "nls_iso8859-1"]);
    assert_eq!(FsKind::Squashfs.module_aliases(), ["fs-squashfs"]);
    assert_eq!(FsKind::Iso9660.module_aliases()[0], "fs-iso9660");
    for kind in [
        FsKind::Iso9660,
        FsKind::Ext2,
        FsKind::Ext3,
        FsKind::Ext4,
        FsKind::Vfat,
        FsKind::Exfat,
        FsKind::Btrfs,
        FsKind::Xfs,
        FsKind::Squashfs,
    ] {
        assert_eq!(kind.module_aliases()[0], format!("fs-{}", kind.mount_type()));
    }
}

/// Every module alias we ask for must exist in the real Debian kernel: an `fs-*`
/// alias in some module's modinfo, or an NLS module file.
#[test]
fn module_aliases_exist_in_the_debian_kernel() {
    let modules = kernel::TestKernel::main().modules_dir().join("kernel");
    assert!(modules.is_dir(), "{} missing: run qemu-harness/setup first", modules.display());
    let fs_dir = modules.join("fs");
    let nls_dir = fs_dir.join("nls");
    for kind in [
        FsKind::Iso9660,
        FsKind::Ext2,
        FsKind::Ext3,
        FsKind::Ext4,
        FsKind::Vfat,
        FsKind::Exfat,
        FsKind::Btrfs,
        FsKind::Xfs,
        FsKind::Squashfs,
    ] {
        for alias in kind.module_aliases() {
            if alias.starts_with("nls_") {
                assert!(
                    ["ko", "ko.xz", "ko.zst", "ko.gz"].iter().any(|ext| nls_dir.join(format!("{alias}.{ext}")).is_file()),
                    "{alias} for {kind}"
                );
            } else {
                let needle = format!("alias={alias}\0");
                assert!(any_module_contains(&fs_dir, needle.as_bytes()), "{alias} for {kind} not in any fs module");
            }
        }
    }
}

fn any_module_contains(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            any_module_contains(&p, needle)
        } else {
            // .ko, or .ko.xz/.ko.zst (Debian 13): read uncompressed.
            viver::hardware::modinfo::module_name_from_path(&p.to_string_lossy()).is_some()
                && viver::hardware::modinfo::read_module_bytes(&p).is_ok_and(|data| data.windows(needle.len()).any(|w| w == needle))
        }
    })
}

/// Windows relabels only the root directory entry; that one wins over the boot sector.
#[test]
fn fat_label_from_root_directory_wins() {
    let mut img = fixture("fat16");
    // Boot sector copy (extended BPB at 36, label at +7) blanked the way Windows leaves it.
    img[43..54].copy_from_slice(b"NO NAME    ");
    assert_eq!(probe(&mut Cursor::new(img.clone())).unwrap().unwrap().label.as_deref(), Some("VIVERF16"));
    // Now rename the root directory entry: the new name is reported.
    let pos = img.windows(11).rposition(|w| w == b"VIVERF16   ").expect("root dir label entry in fixture");
    img[pos..pos + 11].copy_from_slice(b"RENAMED    ");
    assert_eq!(probe(&mut Cursor::new(img)).unwrap().unwrap().label.as_deref(), Some("RENAMED"));
}

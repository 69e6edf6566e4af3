//! `disks::blockdev::scan` against sysfs trees captured from real QEMU machines
//! (see tests/fixtures/disks/sysfs/README.md), and the search order it leads to.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use viver::disks::blockdev::{scan, BlockDevice};
use viver::disks::class::{MediaClass, Transport};
use viver::disks::rank::{order, parse_media};

/// Rebuilds the dump `tests/fixtures/disks/sysfs/<name>.txt` as a real directory tree
/// and returns its `/sys`. Each call gets its own directory: tests run in parallel.
fn materialize(name: &str) -> PathBuf {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::SeqCst);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/disks/sysfs").join(format!("{name}.txt"));
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("disks-sysfs-{name}-{call}"));
    let _ = fs::remove_dir_all(&root);
    let text = fs::read_to_string(&fixture).unwrap();
    for (n, line) in text.lines().enumerate() {
        let (kind, rest) = line.split_at(2);
        let (path, value) = rest.split_once(' ').unwrap_or((rest, ""));
        let rel = path.strip_prefix('/').unwrap_or_else(|| panic!("{}:{}: path not absolute", fixture.display(), n + 1));
        let target = root.join(rel);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        match kind {
            "L " => symlink(value, &target).unwrap(),
            "F " => fs::write(&target, format!("{value}\n")).unwrap(),
            _ => panic!("{}:{}: bad line {line:?}", fixture.display(), n + 1),
        }
    }
    root.join("sys")
}

fn find<'a>(devs: &'a [BlockDevice], name: &str) -> &'a BlockDevice {
    devs.iter().find(|d| d.name == name).unwrap_or_else(|| panic!("{name} not found in {:?}", names(devs)))
}

fn names(devs: &[BlockDevice]) -> Vec<&str> {
    devs.iter().map(|d| d.name.as_str()).collect()
}

#[track_caller]
fn assert_dev(d: &BlockDevice, class: MediaClass, transport: Transport, rotational: bool, parent: Option<&str>) {
    assert_eq!((d.class, d.transport, d.rotational, d.parent.as_deref()), (class, transport, rotational, parent), "{}", d.name);
    assert_eq!(d.partition, parent.is_some(), "{}", d.name);
    assert_eq!(d.dev_path, Path::new("/dev").join(&d.name));
}

#[test]
fn q35_machine_every_device_classified() {
    let devs = scan(&materialize("q35")).unwrap();
    assert_eq!(
        names(&devs),
        ["mmcblk0", "mmcblk0p1", "nvme0n1", "sda", "sda1", "sdb", "sdb1", "sdc", "sdc1", "sdd", "sr0", "vda", "vda1", "vda2"]
    );
    assert_dev(find(&devs, "vda"), MediaClass::Virtio, Transport::Virtio, true, None);
    assert_dev(find(&devs, "vda2"), MediaClass::Virtio, Transport::Virtio, true, Some("vda"));
    assert_dev(find(&devs, "nvme0n1"), MediaClass::Nvme, Transport::Nvme, false, None);
    assert_dev(find(&devs, "sda"), MediaClass::Hdd, Transport::Sata, true, None);
    assert_dev(find(&devs, "sda1"), MediaClass::Hdd, Transport::Sata, true, Some("sda"));
    assert_dev(find(&devs, "sdb"), MediaClass::Ssd, Transport::Sata, false, None);
    assert_dev(find(&devs, "sdc1"), MediaClass::Usb, Transport::Usb, true, Some("sdc"));
    assert_dev(find(&devs, "sdd"), MediaClass::Usb, Transport::Usb, true, None);
    assert_dev(find(&devs, "mmcblk0p1"), MediaClass::Mmc, Transport::Mmc, false, Some("mmcblk0"));
    assert_dev(find(&devs, "sr0"), MediaClass::Optical, Transport::Sata, true, None);

    let nvme = find(&devs, "nvme0n1");
    assert_eq!((nvme.major, nvme.minor, nvme.size_bytes), (259, 0, 64 << 20));
    let sr0 = find(&devs, "sr0");
    assert_eq!((sr0.major, sr0.minor, sr0.size_bytes, sr0.read_only, sr0.removable), (11, 0, 376832, true, true));
    let vda1 = find(&devs, "vda1");
    assert_eq!(vda1.size_bytes, 64512 * 512); // (64 MiB - 1 MiB) / 2 partitions
    assert!(!vda1.read_only && !vda1.removable);
}

#[test]
fn pc_machine_piix_is_ide() {
    let devs = scan(&materialize("pc")).unwrap();
    assert_eq!(names(&devs), ["sda", "sda1", "sr0"]);
    assert_dev(find(&devs, "sda"), MediaClass::Hdd, Transport::Ide, true, None);
    assert_dev(find(&devs, "sda1"), MediaClass::Hdd, Transport::Ide, true, Some("sda"));
    assert_dev(find(&devs, "sr0"), MediaClass::Optical, Transport::Ide, true, None);
}

#[test]
fn synthetic_edge_cases() {
    let devs = scan(&materialize("synthetic")).unwrap();
    // loop0/ram0 ignored, sr1 (no disc) has size 0, sdg has an unreadable size,
    // nvme1c1n1 is a hidden multipath path, mmcblk2boot0 an eMMC boot area.
    assert_eq!(names(&devs), ["mmcblk2", "nvme1n1", "nvme1n1p1", "sde", "sdf", "sr2"]);
    assert_dev(find(&devs, "mmcblk2"), MediaClass::Mmc, Transport::Mmc, false, None);
    assert_dev(find(&devs, "sr2"), MediaClass::Optical, Transport::Usb, true, None);
    assert_dev(find(&devs, "sde"), MediaClass::Virtio, Transport::Virtio, false, None);
    assert_dev(find(&devs, "nvme1n1p1"), MediaClass::Nvme, Transport::Nvme, false, Some("nvme1n1"));
    assert_dev(find(&devs, "sdf"), MediaClass::Hdd, Transport::Scsi, true, None);
    assert_eq!(find(&devs, "sdf").size_bytes, 7814037168 * 512);
}

#[test]
fn missing_sysfs_is_a_clear_error() {
    let err = scan(Path::new("/nonexistent/sys")).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/sys"), "{err}");
}

#[test]
fn q35_search_order() {
    let mut devs = scan(&materialize("q35")).unwrap();
    order(&mut devs, |d| (d, None), None);
    assert_eq!(
        names(&devs),
        ["nvme0n1", "vda", "vda1", "vda2", "sdb", "sdb1", "sda", "sda1", "sdc", "sdc1", "sdd", "mmcblk0", "mmcblk0p1", "sr0"]
    );
    let sd_then_cd = parse_media("sd,cd").unwrap();
    order(&mut devs, |d| (d, None), Some(&sd_then_cd));
    assert_eq!(names(&devs)[..4], ["mmcblk0", "mmcblk0p1", "sr0", "nvme0n1"]);
    let one_device = parse_media("/dev/sdc").unwrap();
    order(&mut devs, |d| (d, None), Some(&one_device));
    assert_eq!(names(&devs)[..2], ["sdc", "sdc1"]);
}

//! Hardware autodetection checked in real QEMU boots (real Debian kernel, real modules,
//! the kit's initrd): each controller gets its driver and nothing unneeded is loaded;
//! compressed modules (.ko.xz/.ko.zst, which Debian's kernel cannot decompress) load;
//! the kernel's own module requests (xfs -> libcrc32c -> "crypto-crc32c") are answered
//! by /init's modprobe personality.
//!
//! Run: `cargo test --release --test hardware_qemu -- --test-threads=2`.

mod qemu;

use qemu::{SerialLog, Vm};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use viver::hardware::ModuleTables;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

struct Artifacts {
    initrd: PathBuf,
    /// `viver/testroot.squashfs` + `.toml`: a medium's contents.
    layout: PathBuf,
    dir: PathBuf,
}

fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let dir = qemu::temp_dir("hw-artifacts");
        let (initrd, layout) = qemu::kit_initrd_and_testroot_layout(&dir);
        Artifacts { initrd, layout, dir }
    })
}

/// The tables of the real module tree, to check each loaded module against.
fn tables() -> &'static ModuleTables {
    static TABLES: OnceLock<ModuleTables> = OnceLock::new();
    TABLES.get_or_init(|| ModuleTables::build(&qemu::modules_dir()).unwrap().0)
}

fn disk(test: &str, kind: &str, mbr: bool) -> PathBuf {
    let out = qemu::target_dir().join("qemu-tmp").join(format!("hw-{test}-{kind}.img"));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut args = vec![kind, artifacts().layout.to_str().unwrap(), out.to_str().unwrap()];
    if mbr {
        args.push("--mbr");
    }
    qemu::mkdisk_ok(&args);
    out
}

fn vm(test: &str, initrd: &Path) -> Vm {
    Vm::new(test).kernel(qemu::kernel()).initrd(initrd).memory_mb(768)
}

fn boot_ok(vm: Vm) -> (SerialLog, Value) {
    let log = vm.run(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("VIVER-TESTROOT-UP"), "the test root never started:\n{}", log.tail(60));
    let report = log.boot_json().unwrap_or_else(|e| panic!("{e}\n{}", log.tail(60)));
    (log, report)
}

/// (module, reason, error) of every load in the report.
fn loads(report: &Value) -> Vec<(String, String, Option<String>)> {
    report["hardware"]["loaded"]
        .as_array()
        .expect("boot.json has no hardware.loaded")
        .iter()
        .map(|r| {
            (
                r["module"].as_str().unwrap_or_default().to_string(),
                r["reason"].as_str().unwrap_or_default().to_string(),
                r["error"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Every load had a reason: a present device whose modalias the module's table entry
/// matches, a dependency or soft dependency of a loaded module, or a request (a
/// filesystem, loop/squashfs/overlay, viver.modules). And every `expected` driver loaded
/// without error.
fn check_needed_and_present(report: &Value, expected: &[&str]) {
    let devices: Vec<&str> =
        report["hardware"]["devices"].as_array().expect("no hardware.devices").iter().filter_map(Value::as_str).collect();
    let loads = loads(report);
    let loaded: Vec<&str> = loads.iter().map(|(m, _, _)| m.as_str()).collect();
    for (module, reason, _) in &loads {
        let by_device = devices.contains(&reason.as_str()) && tables().resolve(reason).contains(module);
        let by_other =
            ["dependency of ", "softdep of "].iter().find_map(|p| reason.strip_prefix(p)).is_some_and(|parent| loaded.contains(&parent));
        let requested = reason == "viver.modules" || reason.starts_with("requested as ");
        assert!(
            by_device || by_other || requested,
            "{module} loaded for {reason:?}, which is no present device, loaded module or request\ndevices: {devices:?}"
        );
    }
    for want in expected {
        let hit = loads.iter().find(|(m, _, _)| m == want);
        assert!(hit.is_some_and(|(_, _, e)| e.is_none()), "{want} not loaded (or failed): {loads:?}");
    }
}

#[test]
fn pc_with_ide_cd_loads_ata_piix() {
    let cd = disk("pc-ide", "iso", false);
    let (_, report) = boot_ok(vm("hw-pc-ide", &artifacts().initrd).machine("pc").cdrom_ide(&cd));
    check_needed_and_present(&report, &["ata_piix", "sr_mod", "isofs"]);
}

#[test]
fn q35_with_ahci_and_xhci_stick_loads_both() {
    let cd = disk("q35-cd", "iso", false);
    let usb = disk("q35-usb", "vfat", true);
    let (_, report) = boot_ok(vm("hw-q35", &artifacts().initrd).machine("q35").cdrom_ahci(&cd).usb_stick_xhci(&usb));
    check_needed_and_present(&report, &["ahci", "xhci_pci", "usb_storage", "sd_mod", "sr_mod", "vfat"]);
}

#[test]
fn virtio_disk_loads_virtio_blk() {
    let hdd = disk("virtio", "ext4", true);
    let (_, report) = boot_ok(vm("hw-virtio", &artifacts().initrd).disk_virtio(&hdd));
    check_needed_and_present(&report, &["virtio_blk", "ext4"]);
}

#[test]
fn nvme_disk_loads_nvme() {
    let hdd = disk("nvme", "ext4", true);
    let (_, report) = boot_ok(vm("hw-nvme", &artifacts().initrd).disk_nvme(&hdd));
    check_needed_and_present(&report, &["nvme", "ext4"]);
}

#[test]
fn sd_card_loads_sdhci_pci_and_mmc_block() {
    let card = disk("sd", "ext4", true);
    // QEMU's sd-card wants a power-of-two size, as real cards have.
    let len = std::fs::metadata(&card).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&card).unwrap().set_len(len.next_power_of_two()).unwrap();
    let (_, report) = boot_ok(vm("hw-sd", &artifacts().initrd).sd_card(&card));
    check_needed_and_present(&report, &["sdhci_pci", "mmc_block", "ext4"]);
}

// ---------------------------------------------------------------- compressed modules

/// What a virtio+ext4 boot loads, compressed the way distributions do it.
const COMPRESSED: &[(&str, &str)] = &[
    ("kernel/drivers/block/virtio_blk.ko", "zstd"),
    ("kernel/fs/ext4/ext4.ko", "xz"),
    ("kernel/fs/jbd2/jbd2.ko", "zstd"),
    ("kernel/fs/mbcache.ko", "xz"),
    ("kernel/lib/crc16.ko", "zstd"),
    ("kernel/fs/squashfs/squashfs.ko", "xz"),
    ("kernel/fs/overlayfs/overlay.ko", "zstd"),
    ("kernel/drivers/block/loop.ko", "xz"),
];

#[test]
fn compressed_modules_load_from_a_virtio_disk() {
    let a = artifacts();
    // A copy of the module tree (links to the real files) where some modules are .ko.xz
    // and .ko.zst made by the real tools; `viver kit initrd` indexes it like any tree.
    let root = a.dir.join("compressed-tree");
    let release_dir = root.join("lib/modules").join(qemu::kernel_version());
    if !release_dir.exists() {
        std::fs::create_dir_all(release_dir.parent().unwrap()).unwrap();
        qemu::run_ok(Command::new("cp").arg("-as").arg(qemu::modules_dir()).arg(&release_dir));
        for (rel, tool) in COMPRESSED {
            let file = release_dir.join(rel);
            std::fs::remove_file(&file).unwrap();
            std::fs::copy(qemu::modules_dir().join(rel), &file).unwrap();
            let args: &[&str] = if *tool == "xz" { &["-q", "--check=crc32", "--lzma2=dict=1MiB"] } else { &["-q", "--rm", "-19"] };
            qemu::run_ok(Command::new(tool).args(args).arg(&file));
        }
    }
    let initrd = a.dir.join("initrd-compressed.img");
    qemu::kit(&["initrd", "--modules", release_dir.to_str().unwrap(), "-o", initrd.to_str().unwrap()]);
    let listing = qemu::run_ok(Command::new("sh").arg("-c").arg(format!("zcat {} | cpio -t --quiet", initrd.display())));
    for (rel, tool) in COMPRESSED {
        let packed = format!("{rel}.{}", if *tool == "xz" { "xz" } else { "zst" });
        assert!(listing.contains(&packed), "{packed} is not in the initrd");
    }
    let hdd = disk("compressed", "ext4", true);
    let (_, report) = boot_ok(vm("hw-compressed", &initrd).disk_virtio(&hdd));
    let loads = loads(&report);
    for want in ["virtio_blk", "ext4", "jbd2", "mbcache", "crc16", "squashfs", "overlay", "loop"] {
        let hit = loads.iter().find(|(m, _, _)| m == want);
        assert!(hit.is_some_and(|(_, _, e)| e.is_none()), "{want} (compressed) not loaded: {loads:?}");
    }
    assert_eq!(report["image"]["device"], "/dev/vda1");
}

// ---------------------------------------------------------------- kernel requests

/// An XFS disk holding the layout (mkfs.xfs -p with a proto file: no root, no mount).
fn xfs_disk() -> PathBuf {
    let a = artifacts();
    let out = qemu::target_dir().join("qemu-tmp/hw-xfs.img");
    let proto = a.dir.join("xfs.proto");
    let viver = a.layout.join("viver");
    let mut text = String::from("/dev/null\n0 0\nd--755 0 0\nviver d--755 0 0\n");
    for entry in std::fs::read_dir(&viver).unwrap().flatten() {
        text.push_str(&format!("{} ---644 0 0 {}\n", entry.file_name().to_string_lossy(), entry.path().display()));
    }
    text.push_str("$\n$\n");
    std::fs::write(&proto, text).unwrap();
    let _ = std::fs::remove_file(&out);
    // mkfs.xfs refuses filesystems under 300 MiB; the file stays sparse.
    qemu::run_ok(Command::new("truncate").arg("-s").arg("320M").arg(&out));
    qemu::run_ok(Command::new("mkfs.xfs").args(["-q", "-L", "viver", "-p"]).arg(&proto).arg(&out));
    out
}

#[test]
fn xfs_medium_needs_the_kernels_crc32c_request_answered_by_modprobe() {
    // xfs needs libcrc32c, whose init asks the kernel for "crc32c"; no crc32c driver is
    // loaded yet, so the kernel runs /sbin/modprobe -q -- crypto-crc32c: /init answers.
    let hdd = xfs_disk();
    let (log, report) = boot_ok(vm("hw-xfs", &artifacts().initrd).disk_virtio(&hdd));
    assert_eq!(report["image"]["device"], "/dev/vda");
    let loads = loads(&report);
    for want in ["libcrc32c", "xfs"] {
        let hit = loads.iter().find(|(m, _, _)| m == want);
        assert!(hit.is_some_and(|(_, _, e)| e.is_none()), "{want} not loaded: {loads:?}");
    }
    assert!(log.contains("viver-modprobe: loaded crc32c"), "no request reached /sbin/modprobe:\n{}", log.tail(80));
}

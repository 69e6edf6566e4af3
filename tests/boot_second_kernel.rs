//! The same boots on a second kernel generation: Debian 13's 6.12 (modules `.ko.xz`
//! under `/usr/lib/modules`, no depmod tables in the package), fetched by
//! `qemu-harness/setup` like the main one. "Any distribution's kernel" is shown, not
//! claimed: the kit builds its initrd from that tree and VIVER's /init finds the image
//! on virtio, on a USB stick and on a CD with it.

mod qemu;

use qemu::{SerialLog, TestKernel, Vm};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

struct Artifacts {
    kernel: TestKernel,
    initrd: PathBuf,
    layout: PathBuf,
}

fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let kernel = TestKernel::second();
        let dir = qemu::temp_dir("second-kernel-artifacts");
        let initrd = dir.join("initrd.img");
        qemu::kit(&["initrd", "--modules", kernel.modules_dir().to_str().unwrap(), "-o", initrd.to_str().unwrap()]);
        let layout = dir.join("layout");
        let image = layout.join("viver/testroot.squashfs");
        std::fs::create_dir_all(image.parent().unwrap()).unwrap();
        let root = qemu::testroot_dir();
        qemu::kit(&["image", root.to_str().unwrap(), "-o", image.to_str().unwrap(), "--name", "testroot"]);
        Artifacts { kernel, initrd, layout }
    })
}

fn disk(test: &str, kind: &str, dir: &Path, mbr: bool) -> PathBuf {
    let out = qemu::target_dir().join("qemu-tmp").join(format!("k2-{test}-{kind}.img"));
    let mut args = vec![kind, dir.to_str().unwrap(), out.to_str().unwrap()];
    if mbr {
        args.push("--mbr");
    }
    qemu::mkdisk_ok(&args);
    out
}

fn boot_ok(vm: Vm) -> (SerialLog, Value) {
    let a = artifacts();
    let log = vm.kernel(a.kernel.vmlinuz()).initrd(&a.initrd).memory_mb(768).run(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("VIVER-TESTROOT-UP"), "the test root never started:\n{}", log.tail(60));
    let report = log.boot_json().unwrap_or_else(|e| panic!("{e}\n{}", log.tail(60)));
    assert_eq!(report["kernel"], a.kernel.release.as_str(), "booted another kernel");
    (log, report)
}

fn chosen(report: &Value) -> (&str, &str) {
    (report["image"]["media"].as_str().unwrap_or_default(), report["image"]["device"].as_str().unwrap_or_default())
}

#[test]
fn second_kernel_boots_from_a_virtio_disk() {
    let disk = disk("virtio", "ext4", &artifacts().layout, true);
    let (_, report) = boot_ok(Vm::new("k2-virtio").disk_virtio(&disk));
    assert_eq!(chosen(&report), ("virtio", "/dev/vda1"));
    // The compressed modules were loaded by /init (userspace xz when the kernel cannot).
    for module in ["virtio_blk", "ext4", "squashfs", "overlay"] {
        let builtin = report["hardware"]["builtin_skipped"].as_array().is_some_and(|b| b.iter().any(|m| m == module));
        assert!(qemu::module_loaded(&report, module) || builtin, "{module} neither loaded nor built in: {}", report["hardware"]);
    }
}

#[test]
fn second_kernel_boots_from_a_usb_stick() {
    let disk = disk("usb", "vfat", &artifacts().layout, true);
    let (_, report) = boot_ok(Vm::new("k2-usb").usb_stick_xhci(&disk));
    assert_eq!(chosen(&report), ("usb", "/dev/sda1"));
    assert!(qemu::module_loaded(&report, "usb_storage"), "{}", report["hardware"]["loaded"]);
}

#[test]
fn second_kernel_boots_from_a_cd() {
    let disk = disk("cd", "iso", &artifacts().layout, false);
    let (_, report) = boot_ok(Vm::new("k2-cd").machine("q35").cdrom_ahci(&disk));
    assert_eq!(chosen(&report), ("cd", "/dev/sr0"));
}

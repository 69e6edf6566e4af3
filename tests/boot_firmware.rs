//! The kit's media on every firmware: the ISO as a CD, the same ISO written raw to a
//! USB stick, and the kit's USB image, each booted by SeaBIOS, by OVMF (UEFI) and by
//! OVMF with Secure Boot enforced (Microsoft's keys enrolled, as PCs ship), with the
//! real Debian kernel, Debian's signed shim and GRUB, and VIVER's /init, to the test
//! root. Under Secure Boot the kernel is in lockdown and accepts only signed modules:
//! VIVER's own module loader must still bring up the disk drivers.
//!
//! One initrd (made with `--microcode`, see [`microcode_root`]) and one ISO and USB
//! image are built per run and shared; VMs run two at a time at most.

mod qemu;

use qemu::{Firmware, SerialLog, Vm};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// OVMF under TCG adds some 10-20 s to a boot; the margin is for a loaded CI machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(400);

struct Artifacts {
    initrd: PathBuf,
    iso: PathBuf,
    usb: PathBuf,
    /// `--kind hdd`: the same layout as the USB image, for an internal disk.
    hdd: PathBuf,
    /// The test root's image (`viver/testroot.squashfs`, its manifest beside it).
    image: PathBuf,
    id: String,
}

/// A root with microcode files where Debian's intel-microcode and amd64-microcode put
/// them. Those packages are in non-free-firmware, which this machine's archive lacks,
/// so the files are synthetic: shaped like the real ones at the start (an Intel update
/// header, an AMD container magic) but matching no CPU, so the kernel's early loader
/// reads them, finds nothing to apply, and the boot goes on.
fn microcode_root(dir: &Path) -> PathBuf {
    let root = dir.join("ucode-root");
    let intel = root.join("lib/firmware/intel-ucode");
    let amd = root.join("lib/firmware/amd-ucode");
    std::fs::create_dir_all(&intel).unwrap();
    std::fs::create_dir_all(&amd).unwrap();
    let mut update = vec![0u8; 2048];
    update[0..4].copy_from_slice(&1u32.to_le_bytes()); // header version
    update[12..16].copy_from_slice(&0x000f_fff0u32.to_le_bytes()); // a CPU signature no machine has
    update[28..32].copy_from_slice(&2048u32.to_le_bytes()); // data size (0 would mean 2000)
    update[32..36].copy_from_slice(&2048u32.to_le_bytes()); // total size
    std::fs::write(intel.join("0f-ff-00"), &update).unwrap();
    let mut container = b"DMA\0".to_vec(); // AMD's container magic (0x00414d44)
    container.extend_from_slice(&[0u8; 60]);
    std::fs::write(amd.join("microcode_amd_fam99h.bin"), &container).unwrap();
    root
}

fn manifest_id(manifest: &Path) -> String {
    let value: toml::Table = toml::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    value["id"].as_str().unwrap().to_string()
}

fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let dir = qemu::temp_dir("firmware-artifacts");
        let initrd = dir.join("initrd.img");
        let ucode = microcode_root(&dir);
        let modules = qemu::modules_dir();
        let out = qemu::kit(&[
            "initrd",
            "--modules",
            modules.to_str().unwrap(),
            "--microcode",
            "--microcode-root",
            ucode.to_str().unwrap(),
            "-o",
            initrd.to_str().unwrap(),
        ]);
        assert!(out.contains("GenuineIntel.bin") && out.contains("AuthenticAMD.bin"), "{out}");
        let image = dir.join("viver/testroot.squashfs");
        std::fs::create_dir_all(image.parent().unwrap()).unwrap();
        let root = qemu::testroot_dir();
        qemu::kit(&["image", root.to_str().unwrap(), "-o", image.to_str().unwrap(), "--name", "testroot"]);
        let id = manifest_id(&image.with_extension("toml"));
        let media = |kind: &str, out: &Path| {
            qemu::kit(&[
                "media",
                "--kind",
                kind,
                "--kernel",
                qemu::kernel().to_str().unwrap(),
                "--initrd",
                initrd.to_str().unwrap(),
                "--image",
                image.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ]);
        };
        let iso = dir.join("viver.iso");
        let usb = dir.join("viver-usb.img");
        media("iso", &iso);
        media("usb", &usb);
        let hdd = dir.join("viver-hdd.img");
        media("hdd", &hdd);
        Artifacts { initrd, iso, usb, hdd, image, id }
    })
}

#[derive(Clone, Copy)]
enum Medium {
    /// The ISO in a CD drive.
    IsoCd,
    /// The ISO `dd`'d to a USB stick.
    IsoStick,
    /// The kit's USB image on a USB stick.
    UsbImage,
    /// The kit's hard-disk image on a SATA (AHCI) disk.
    HddImage,
}

/// A VM that boots `medium` with `firmware`: q35 for UEFI (Secure Boot needs its SMM),
/// the pc machine with SeaBIOS (the old PC), the stick behind xHCI on both.
fn vm(name: &str, medium: Medium, firmware: Firmware) -> Vm {
    let a = artifacts();
    let machine = if firmware == Firmware::SeaBios { "pc" } else { "q35" };
    let vm = Vm::new(name).machine(machine).memory_mb(768).firmware(firmware);
    match medium {
        Medium::IsoCd => vm.cdrom_ide(&a.iso).boot_from_cdrom(),
        // Written to a stick, the ISO is a disk: a copy, so nothing can change the shared one.
        Medium::IsoStick => {
            let stick = qemu::target_dir().join(format!("qemu-tmp/{name}-stick.img"));
            std::fs::copy(&a.iso, &stick).unwrap();
            vm.usb_stick_xhci(&stick).boot_from_usb()
        }
        Medium::UsbImage => {
            let stick = qemu::target_dir().join(format!("qemu-tmp/{name}-stick.img"));
            std::fs::copy(&a.usb, &stick).unwrap();
            vm.usb_stick_xhci(&stick).boot_from_usb()
        }
        Medium::HddImage => {
            let disk = qemu::target_dir().join(format!("qemu-tmp/{name}-disk.img"));
            std::fs::copy(&a.hdd, &disk).unwrap();
            vm.disk_ahci(&disk).boot_from_disk()
        }
    }
}

/// Boots and checks what a person would: the firmware's loader started the medium's
/// kernel with the medium's command line, the kernel saw the Secure Boot state the
/// firmware has, and the test root came up from the medium's image.
fn boot_ok(name: &str, medium: Medium, firmware: Firmware) -> (SerialLog, Value) {
    let log = vm(name, medium, firmware).run(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("VIVER-TESTROOT-UP"), "the test root never started:\n{}", log.tail(60));
    let report = log.boot_json().unwrap_or_else(|e| panic!("{e}\n{}", log.tail(60)));
    let cmdline = report["cmdline"].as_str().unwrap_or_default().to_string();
    let a = artifacts();
    assert!(cmdline.contains(&format!("viver.image={}", a.id)), "{cmdline}");
    assert!(cmdline.contains("viver.role=boot-server"), "media carry the boot-server role by default: {cmdline}");
    assert_eq!(report["image"]["name"], "testroot");
    let want_media = match medium {
        Medium::IsoCd => "cd",
        Medium::IsoStick | Medium::UsbImage => "usb",
        Medium::HddImage => "hdd",
    };
    assert_eq!(report["image"]["media"], want_media, "{}", report["image"]);
    match firmware {
        Firmware::SeaBios => {
            // isolinux/syslinux: their `initrd=` word reaches the kernel; no EFI at all.
            assert!(cmdline.contains("initrd=/boot/initrd.img"), "not booted by syslinux: {cmdline}");
            assert!(!log.contains("secureboot: Secure boot enabled"), "{}", log.tail(30));
        }
        Firmware::Ovmf | Firmware::OvmfSecureBoot => {
            // GRUB ran the medium's menu entry (its title says what it boots) and passed
            // the same command line; GRUB adds BOOT_IMAGE=, never syslinux's initrd=.
            assert!(log.contains("Booting `VIVER: boot image testroot"), "GRUB's menu entry did not run:\n{}", log.tail(40));
            assert!(cmdline.contains("BOOT_IMAGE=/boot/vmlinuz") && !cmdline.contains("initrd="), "not booted by GRUB: {cmdline}");
            let state = if firmware == Firmware::Ovmf { "disabled" } else { "enabled" };
            assert!(
                log.contains(&format!("secureboot: Secure boot {state}")),
                "kernel did not report Secure Boot {state}:\n{}",
                log.tail(60)
            );
        }
    }
    if firmware == Firmware::OvmfSecureBoot {
        assert!(log.contains("Kernel is locked down from EFI Secure Boot"), "no lockdown:\n{}", log.tail(60));
        // In lockdown the kernel takes signed modules only: VIVER's loader got the
        // drivers in (Debian's are signed), none failed.
        for module in ["squashfs", "loop", "overlay"] {
            assert!(qemu::module_loaded(&report, module), "{module} not loaded under lockdown: {}", report["hardware"]["loaded"]);
        }
        let failed: Vec<&Value> =
            report["hardware"]["loaded"].as_array().map(|l| l.iter().filter(|m| !m["error"].is_null()).collect()).unwrap_or_default();
        assert!(failed.is_empty(), "modules refused under lockdown: {failed:?}");
    }
    (log, report)
}

// ---------------------------------------------------------------- the ISO in a CD drive

#[test]
fn iso_as_cd_on_seabios() {
    boot_ok("fw-iso-cd-seabios", Medium::IsoCd, Firmware::SeaBios);
}

#[test]
fn iso_as_cd_on_uefi() {
    boot_ok("fw-iso-cd-ovmf", Medium::IsoCd, Firmware::Ovmf);
}

#[test]
fn iso_as_cd_on_uefi_with_secure_boot() {
    boot_ok("fw-iso-cd-secboot", Medium::IsoCd, Firmware::OvmfSecureBoot);
}

// ---------------------------------------------------------------- the ISO dd'd to a stick

#[test]
fn iso_on_a_usb_stick_on_seabios() {
    boot_ok("fw-iso-usb-seabios", Medium::IsoStick, Firmware::SeaBios);
}

#[test]
fn iso_on_a_usb_stick_on_uefi() {
    boot_ok("fw-iso-usb-ovmf", Medium::IsoStick, Firmware::Ovmf);
}

#[test]
fn iso_on_a_usb_stick_on_uefi_with_secure_boot() {
    boot_ok("fw-iso-usb-secboot", Medium::IsoStick, Firmware::OvmfSecureBoot);
}

// ---------------------------------------------------------------- the kit's USB image

#[test]
fn usb_image_on_seabios() {
    let (_, report) = boot_ok("fw-usb-seabios", Medium::UsbImage, Firmware::SeaBios);
    assert_eq!(report["image"]["device"], "/dev/sda1", "the image is on the data partition, not the ESP");
}

#[test]
fn usb_image_on_uefi() {
    let (_, report) = boot_ok("fw-usb-ovmf", Medium::UsbImage, Firmware::Ovmf);
    assert_eq!(report["image"]["device"], "/dev/sda1");
}

#[test]
fn usb_image_on_uefi_with_secure_boot() {
    let (_, report) = boot_ok("fw-usb-secboot", Medium::UsbImage, Firmware::OvmfSecureBoot);
    assert_eq!(report["image"]["device"], "/dev/sda1");
}

#[test]
fn hdd_image_on_seabios() {
    boot_ok("fw-hdd-seabios", Medium::HddImage, Firmware::SeaBios);
}

#[test]
fn hdd_image_on_uefi() {
    boot_ok("fw-hdd-ovmf", Medium::HddImage, Firmware::Ovmf);
}

#[test]
fn hdd_image_on_uefi_with_secure_boot() {
    boot_ok("fw-hdd-secboot", Medium::HddImage, Firmware::OvmfSecureBoot);
}

// ---------------------------------------------------------------- the shared initrd

/// The initrd every boot above used starts with the early microcode cpio, uncompressed,
/// as GNU cpio and `viver kit inspect` see it.
#[test]
fn the_microcode_initrd_starts_with_the_early_cpio() {
    let a = artifacts();
    let listing = Command::new("cpio").args(["-t", "--quiet"]).stdin(std::fs::File::open(&a.initrd).unwrap()).output().unwrap();
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(names.contains("kernel/x86/microcode/GenuineIntel.bin"), "{names}");
    assert!(names.contains("kernel/x86/microcode/AuthenticAMD.bin"), "{names}");
    assert!(!names.contains("init\n"), "GNU cpio reads the first archive only: the early one: {names}");
    let inspect = qemu::kit(&["inspect", a.initrd.to_str().unwrap()]);
    let segments: Vec<&str> = inspect.lines().filter(|l| l.starts_with("# segment")).collect();
    assert_eq!(segments.len(), 2, "{inspect}");
    assert!(segments[0].contains("at byte 0: None"), "{inspect}");
    assert!(segments[1].contains("Gzip"), "{inspect}");
    assert!(inspect.contains("kernel/x86/microcode/GenuineIntel.bin") && inspect.contains(" init\n"), "{inspect}");
}

// ---------------------------------------------------------------- the harness itself

#[test]
fn vm_builder_flashes_ovmf_and_refuses_secure_boot_without_smm() {
    let iso = artifacts().iso.clone();
    let args = Vm::new("fw-args").machine("q35").firmware(Firmware::OvmfSecureBoot).cdrom_ide(&iso).boot_from_cdrom().qemu_args().unwrap();
    let line = args.join(" ");
    assert!(line.contains("-machine q35,smm=on"), "{line}");
    assert!(line.contains("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"), "{line}");
    assert!(line.contains("fw-args.OVMF_VARS.fd"), "{line}");
    assert!(line.contains("-global driver=cfi.pflash01,property=secure,value=on -global ICH9-LPC.disable_s3=1"), "{line}");
    assert!(Vm::new("fw-args-pc").firmware(Firmware::OvmfSecureBoot).cdrom_ide(&iso).boot_from_cdrom().qemu_args().is_err());
    let plain = Vm::new("fw-args-bios").cdrom_ide(&iso).boot_from_cdrom().qemu_args().unwrap().join(" ");
    assert!(!plain.contains("pflash"), "{plain}");
}

// ---------------------------------------------------------------- compressed modules, lockdown

/// Debian 13's kernel ships `.ko.xz` modules: under Secure Boot (lockdown: signed
/// modules only) VIVER's loader hands them to the kernel compressed (finit_module with
/// MODULE_INIT_COMPRESSED_FILE; the signature is inside the compressed file), and they
/// load. The kernel is signed by Debian, so shim and GRUB start it too.
#[test]
fn trixie_kernel_loads_compressed_modules_under_secure_boot() {
    let second = qemu::TestKernel::second();
    let a = artifacts();
    let dir = qemu::temp_dir("fw-trixie");
    let initrd = dir.join("initrd-trixie.img");
    qemu::kit(&["initrd", "--modules", second.modules_dir().to_str().unwrap(), "-o", initrd.to_str().unwrap()]);
    let inspect = qemu::kit(&["inspect", initrd.to_str().unwrap()]);
    assert!(inspect.contains("/kernel/fs/squashfs/squashfs.ko.xz"), "the initrd carries compressed modules: {inspect}");
    let image = &a.image;
    let iso = dir.join("trixie.iso");
    qemu::kit(&[
        "media",
        "--kind",
        "iso",
        "--kernel",
        second.vmlinuz().to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "-o",
        iso.to_str().unwrap(),
    ]);
    let vm =
        Vm::new("fw-trixie-secboot").machine("q35").memory_mb(1024).firmware(Firmware::OvmfSecureBoot).cdrom_ide(&iso).boot_from_cdrom();
    let log = vm.run(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("secureboot: Secure boot enabled"), "{}", log.tail(60));
    assert!(log.contains("Kernel is locked down from EFI Secure Boot"), "{}", log.tail(60));
    assert!(log.contains("VIVER-TESTROOT-UP"), "the test root never started:\n{}", log.tail(60));
    let report = log.boot_json().unwrap_or_else(|e| panic!("{e}\n{}", log.tail(60)));
    assert_eq!(report["image"]["id"], a.id.as_str());
    assert_eq!(report["kernel"], second.release.as_str());
    for module in ["squashfs", "loop", "overlay", "ahci", "sr_mod"] {
        assert!(qemu::module_loaded(&report, module), "{module} not loaded under lockdown: {}", report["hardware"]["loaded"]);
    }
    let failed: Vec<&Value> =
        report["hardware"]["loaded"].as_array().map(|l| l.iter().filter(|m| !m["error"].is_null()).collect()).unwrap_or_default();
    assert!(failed.is_empty(), "modules refused under lockdown: {failed:?}");
}

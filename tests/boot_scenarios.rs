//! The boot, as a person would check it: a kit-made image on real QEMU devices, booted by
//! the real Debian kernel through VIVER's /init, checked on the serial console and in
//! /run/viver/boot.json as the booted test root prints them.
//!
//! Artifacts (initrd, images, media) are built once per run and shared; VMs run two at a
//! time (`--test-threads=2`, see qemu-harness/test).

mod qemu;

use qemu::{SerialLog, Vm};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// A TCG boot of the Debian kernel to the test root takes well under a minute here; the
/// margin is for a loaded CI machine running two VMs.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// Fail fast in failure scenarios: the report, then reboot (QEMU exits with -no-reboot).
const FAIL_FAST: &str = "viver.panic=reboot viver.panic_wait=0";

struct Artifacts {
    initrd: PathBuf,
    /// `viver/testroot.squashfs` + `viver/testroot.toml`.
    layout: PathBuf,
    image: PathBuf,
    id: String,
    /// A second, different image (`viver/other.squashfs`).
    other_layout: PathBuf,
    other_id: String,
    dir: PathBuf,
}

fn manifest_id(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest).unwrap();
    let value: toml::Table = toml::from_str(&text).unwrap();
    value["id"].as_str().unwrap().to_string()
}

fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let dir = qemu::temp_dir("boot-artifacts");
        let (initrd, layout) = qemu::kit_initrd_and_testroot_layout(&dir);
        let image = layout.join("viver/testroot.squashfs");
        let id = manifest_id(&image.with_extension("toml"));

        // A different image: the test root plus a file that says which one it is.
        let other_root = dir.join("other-root");
        qemu::run_ok(Command::new("cp").arg("-a").arg(qemu::testroot_dir()).arg(&other_root));
        std::fs::write(other_root.join("etc/which-image"), "other\n").unwrap();
        let other_layout = dir.join("other-layout");
        let other = other_layout.join("viver/other.squashfs");
        std::fs::create_dir_all(other.parent().unwrap()).unwrap();
        qemu::kit(&["image", other_root.to_str().unwrap(), "-o", other.to_str().unwrap(), "--name", "other"]);
        let other_id = manifest_id(&other.with_extension("toml"));
        assert_ne!(id, other_id);
        Artifacts { initrd, layout, image, id, other_layout, other_id, dir }
    })
}

/// A disk image of `kind` (ext4, vfat, iso) holding `dir`, in the test's own folder.
fn disk(test: &str, kind: &str, dir: &Path, mbr: bool) -> PathBuf {
    let out = qemu::target_dir().join("qemu-tmp").join(format!("{test}-{kind}.img"));
    let mut args = vec![kind, dir.to_str().unwrap(), out.to_str().unwrap()];
    if mbr {
        args.push("--mbr");
    }
    qemu::mkdisk_ok(&args);
    out
}

fn vm(test: &str) -> Vm {
    let a = artifacts();
    Vm::new(test).kernel(qemu::kernel()).initrd(&a.initrd).memory_mb(768)
}

/// Boots and checks the test root came up through VIVER: the marker, a report, a
/// writable overlay root.
fn boot_ok(vm: Vm) -> (SerialLog, Value) {
    let log = vm.run(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("VIVER-TESTROOT-UP"), "the test root never started:\n{}", log.tail(60));
    let report = log.boot_json().unwrap_or_else(|e| panic!("{e}\n{}", log.tail(60)));
    assert!(log.contains("WRITE-OK"), "the root is not writable:\n{}", log.tail(40));
    (log, report)
}

fn chosen(report: &Value) -> (String, String, String) {
    let image = &report["image"];
    (
        image["media"].as_str().unwrap_or_default().to_string(),
        image["device"].as_str().unwrap_or_default().to_string(),
        image["name"].as_str().unwrap_or_default().to_string(),
    )
}

// ---------------------------------------------------------------- one medium each

#[test]
fn virtio_disk_with_ext4_partition() {
    let a = artifacts();
    let disk = disk("virtio", "ext4", &a.layout, true);
    let (log, report) = boot_ok(vm("virtio").disk_virtio(&disk));
    assert_eq!(chosen(&report), ("virtio".into(), "/dev/vda1".into(), "testroot".into()));
    assert_eq!(report["image"]["id"], a.id.as_str());
    let root = log.mount_at("/").expect("no / in the mount table");
    assert_eq!(root.fstype, "overlay", "{root:?}");
    assert!(log.mount_at("/run/viver/image").is_some_and(|m| m.fstype == "squashfs"));
    // The drivers that this machine needs were loaded by /init itself.
    for module in ["virtio_blk", "ext4", "squashfs", "overlay", "loop"] {
        assert!(qemu::module_loaded(&report, module), "{module} not loaded: {}", report["hardware"]["loaded"]);
    }
    // Every stage is timed.
    let stages: Vec<&str> = report["stages"].as_array().unwrap().iter().filter_map(|s| s["stage"].as_str()).collect();
    for stage in ["early", "config", "hardware", "disks", "image", "cow"] {
        assert!(stages.contains(&stage), "stage {stage} missing from {stages:?}");
    }
    assert!(log.contains("booting image testroot"), "no hand-over line:\n{}", log.tail(30));
}

#[test]
fn usb_stick_behind_xhci_with_vfat() {
    let disk = disk("usb-xhci", "vfat", &artifacts().layout, true);
    let (_, report) = boot_ok(vm("usb-xhci").usb_stick_xhci(&disk));
    assert_eq!(chosen(&report), ("usb".into(), "/dev/sda1".into(), "testroot".into()));
}

#[test]
fn usb_stick_behind_ehci_with_vfat() {
    let disk = disk("usb-ehci", "vfat", &artifacts().layout, false);
    let (_, report) = boot_ok(vm("usb-ehci").usb_stick_ehci(&disk));
    assert_eq!(chosen(&report), ("usb".into(), "/dev/sda".into(), "testroot".into()));
}

#[test]
fn cd_on_ide_pc_machine() {
    let disk = disk("cd-ide", "iso", &artifacts().layout, false);
    let (_, report) = boot_ok(vm("cd-ide").machine("pc").cdrom_ide(&disk));
    assert_eq!(chosen(&report), ("cd".into(), "/dev/sr0".into(), "testroot".into()));
    assert!(qemu::module_loaded(&report, "ata_piix"), "{}", report["hardware"]["loaded"]);
}

#[test]
fn cd_on_ahci_q35_machine() {
    let disk = disk("cd-ahci", "iso", &artifacts().layout, false);
    let (_, report) = boot_ok(vm("cd-ahci").machine("q35").cdrom_ahci(&disk));
    assert_eq!(chosen(&report), ("cd".into(), "/dev/sr0".into(), "testroot".into()));
    assert!(qemu::module_loaded(&report, "ahci"), "{}", report["hardware"]["loaded"]);
}

/// QEMU's sd-card insists on a power-of-two size, as real cards have.
fn pad_to_power_of_two(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len.next_power_of_two()).unwrap();
}

#[test]
fn sd_card_behind_sdhci() {
    let disk = disk("sd", "ext4", &artifacts().layout, true);
    pad_to_power_of_two(&disk);
    let (_, report) = boot_ok(vm("sd").sd_card(&disk));
    assert_eq!(chosen(&report), ("sd".into(), "/dev/mmcblk0p1".into(), "testroot".into()));
}

#[test]
fn nvme_disk() {
    let disk = disk("nvme", "ext4", &artifacts().layout, true);
    let (_, report) = boot_ok(vm("nvme").disk_nvme(&disk));
    assert_eq!(chosen(&report), ("nvme".into(), "/dev/nvme0n1p1".into(), "testroot".into()));
}

#[test]
fn squashfs_written_straight_to_a_disk() {
    let out = qemu::target_dir().join("qemu-tmp/raw-squashfs.img");
    qemu::mkdisk_ok(&["squashfs", artifacts().image.to_str().unwrap(), out.to_str().unwrap()]);
    let (_, report) = boot_ok(vm("raw-squashfs").disk_virtio(&out));
    assert_eq!(chosen(&report).1, "/dev/vda");
}

// ---------------------------------------------------------------- ranking

#[test]
fn same_image_on_cd_usb_and_virtio_boots_from_virtio() {
    let a = artifacts();
    let cd = disk("rank3", "iso", &a.layout, false);
    let usb = disk("rank3", "vfat", &a.layout, true);
    let hdd = disk("rank3", "ext4", &a.layout, true);
    let (_, report) = boot_ok(vm("rank3").cdrom_ide(&cd).usb_stick_xhci(&usb).disk_virtio(&hdd));
    assert_eq!(chosen(&report).0, "virtio");
    // No controller of this machine can bring anything faster than virtio, so VIVER may
    // stop looking once it has the virtio copy: what it did consider is in speed order.
    let candidates = report["candidates"].as_array().unwrap();
    let order: Vec<&str> = {
        let mut c: Vec<&Value> = candidates.iter().collect();
        c.sort_by_key(|c| c["rank"].as_u64());
        c.iter().map(|c| c["media"].as_str().unwrap()).collect()
    };
    assert!(["virtio", "usb", "cd"].starts_with(&order), "{order:?}");
    // Told to weigh all three, it finds all three and still ranks them by speed.
    let (_, report) = boot_ok(vm("rank3-all").cdrom_ide(&cd).usb_stick_xhci(&usb).disk_virtio(&hdd).append("viver.media=virtio,usb,cd"));
    let mut c: Vec<&Value> = report["candidates"].as_array().unwrap().iter().collect();
    c.sort_by_key(|c| c["rank"].as_u64());
    let order: Vec<&str> = c.iter().map(|c| c["media"].as_str().unwrap()).collect();
    assert_eq!(order, vec!["virtio", "usb", "cd"]);
}

#[test]
fn same_image_on_cd_and_usb_boots_from_usb_unless_told_cd() {
    let a = artifacts();
    let cd = disk("rank2", "iso", &a.layout, false);
    let usb = disk("rank2", "vfat", &a.layout, true);
    let (_, report) = boot_ok(vm("rank2").cdrom_ide(&cd).usb_stick_xhci(&usb));
    assert_eq!(chosen(&report).0, "usb");
    let (_, report) = boot_ok(vm("rank2-cd").cdrom_ide(&cd).usb_stick_xhci(&usb).append("viver.media=cd"));
    assert_eq!(chosen(&report).0, "cd");
}

#[test]
fn two_different_images_and_viver_image_picks_the_named_one() {
    let a = artifacts();
    let both = a.dir.join("both-layout");
    if !both.exists() {
        qemu::run_ok(Command::new("cp").arg("-a").arg(&a.layout).arg(&both));
        qemu::run_ok(Command::new("sh").arg("-c").arg(format!("cp {}/viver/* {}/viver/", a.other_layout.display(), both.display())));
    }
    let hdd = disk("named", "ext4", &both, true);
    let (log, report) = boot_ok(vm("named").disk_virtio(&hdd).append("viver.image=other testroot.cmd=cat,/etc/which-image"));
    assert_eq!(chosen(&report).2, "other");
    assert_eq!(report["image"]["id"], a.other_id.as_str());
    assert!(log.contains("\nother"), "the booted root is not the other image:\n{}", log.tail(20));
    let excluded = report["candidates"].as_array().unwrap().iter().filter(|c| c["verdict"] == "excluded").count();
    assert_eq!(excluded, 1);
}

#[test]
fn boot_only_cd_with_the_image_on_the_hard_disk() {
    let a = artifacts();
    let empty = a.dir.join("empty-layout");
    std::fs::create_dir_all(empty.join("boot")).unwrap();
    std::fs::write(empty.join("boot/README"), "boot files only\n").unwrap();
    let cd = disk("split", "iso", &empty, false);
    let hdd = disk("split", "ext4", &a.layout, true);
    let (_, report) = boot_ok(vm("split").cdrom_ide(&cd).disk_ide(&hdd));
    assert_eq!(chosen(&report).0, "hdd");
}

// ---------------------------------------------------------------- copy-on-write

#[test]
fn writes_vanish_with_tmpfs_and_persist_with_a_cow_disk() {
    let a = artifacts();
    let hdd = disk("cow", "ext4", &a.layout, true);
    let image_before = std::fs::read(&a.image).unwrap();

    // Default tmpfs: the second boot does not see the first boot's file.
    let (log, _) = boot_ok(vm("cow-tmpfs-1").disk_virtio(&hdd));
    assert_eq!(log.line_after("PERSIST: ").as_deref(), Some("none"));
    let (log, _) = boot_ok(vm("cow-tmpfs-2").disk_virtio(&hdd));
    assert_eq!(log.line_after("PERSIST: ").as_deref(), Some("none"));

    // A persistent layer on the same disk keeps it.
    let (log, report) = boot_ok(vm("cow-disk-1").disk_virtio(&hdd).append("viver.cow=LABEL=viver:/cow"));
    assert_eq!(log.line_after("PERSIST: ").as_deref(), Some("none"));
    assert!(report["cow"].as_str().unwrap_or_default().starts_with("persistent"), "{}", report["cow"]);
    let (log, _) = boot_ok(vm("cow-disk-2").disk_virtio(&hdd).append("viver.cow=LABEL=viver:/cow"));
    assert_eq!(log.line_after("PERSIST: ").as_deref(), Some("boot-1"));

    // The image itself never changed.
    assert_eq!(std::fs::read(&a.image).unwrap(), image_before);
}

#[test]
fn toram_copies_the_image_and_lets_go_of_the_medium() {
    let hdd = disk("toram", "ext4", &artifacts().layout, true);
    let (log, report) = boot_ok(vm("toram").disk_virtio(&hdd).append("viver.toram"));
    assert_eq!(report["image"]["toram"], true);
    assert!(log.mount_at("/run/viver/media/vda1").is_none(), "the medium is still mounted");
}

// ---------------------------------------------------------------- failures

#[test]
fn no_image_anywhere_gives_a_readable_report_not_a_kernel_panic() {
    let empty = artifacts().dir.join("nothing");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("hello.txt"), "no image here\n").unwrap();
    let hdd = disk("noimage", "ext4", &empty, true);
    let log = vm("noimage").disk_virtio(&hdd).append(&format!("viver.timeout=3 {FAIL_FAST}")).run(BOOT_TIMEOUT).unwrap();
    assert!(log.contains("VIVER could not boot: the disks stage failed"), "{}", log.tail(40));
    assert!(log.contains("/dev/vda1 (virtio"), "the report does not list the disk:\n{}", log.tail(40));
    assert!(log.contains("Rebooting in 0 seconds"), "{}", log.tail(20));
    assert!(!log.contains("Kernel panic"), "{}", log.tail(40));
}

#[test]
fn truncated_image_on_the_fast_disk_falls_back_to_the_usb_copy() {
    let a = artifacts();
    let bad = a.dir.join("truncated-layout");
    if !bad.exists() {
        qemu::run_ok(Command::new("cp").arg("-a").arg(&a.layout).arg(&bad));
        let image = bad.join("viver/testroot.squashfs");
        let len = std::fs::metadata(&image).unwrap().len();
        qemu::run_ok(Command::new("truncate").arg("-s").arg((len / 2).to_string()).arg(&image));
    }
    let hdd = disk("fallback", "ext4", &bad, true);
    let usb = disk("fallback", "vfat", &a.layout, true);
    let (_, report) = boot_ok(vm("fallback").disk_virtio(&hdd).usb_stick_xhci(&usb));
    assert_eq!(chosen(&report).0, "usb");
    let rejected: Vec<&Value> = report["candidates"].as_array().unwrap().iter().filter(|c| c["verdict"] == "rejected").collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["media"], "virtio");
    assert!(rejected[0]["reason"].as_str().unwrap().contains("manifest says"), "{:?}", rejected[0]);
}

#[test]
fn corrupt_bytes_are_caught_by_full_verification() {
    let a = artifacts();
    let bad = a.dir.join("flipped-layout");
    if !bad.exists() {
        qemu::run_ok(Command::new("cp").arg("-a").arg(&a.layout).arg(&bad));
        let image = bad.join("viver/testroot.squashfs");
        let mut bytes = std::fs::read(&image).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&image, bytes).unwrap();
    }
    let hdd = disk("flipped", "ext4", &bad, true);
    let usb = disk("flipped", "vfat", &a.layout, true);
    let (_, report) = boot_ok(vm("flipped").disk_virtio(&hdd).usb_stick_xhci(&usb).append("viver.verify=full"));
    assert_eq!(chosen(&report).0, "usb");
    let reasons = report["candidates"].to_string();
    assert!(reasons.contains("does not match the manifest"), "{reasons}");
    assert_eq!(report["image"]["verification"]["complete"], true, "{}", report["image"]);
}

#[test]
fn garbage_disk_is_skipped() {
    let garbage = qemu::target_dir().join("qemu-tmp/garbage.img");
    qemu::mkdisk_ok(&["garbage", garbage.to_str().unwrap(), "--size", "16"]);
    let hdd = disk("garbage", "ext4", &artifacts().layout, true);
    let (_, report) = boot_ok(vm("garbage").disk_virtio(&garbage).disk_virtio(&hdd));
    assert_eq!(chosen(&report).1, "/dev/vdb1");
    let devices = report["devices"].to_string();
    assert!(devices.contains("no filesystem recognised"), "{devices}");
}

#[test]
fn a_usb_stick_pulled_mid_boot_still_boots_from_the_cd() {
    let a = artifacts();
    let cd = disk("pulled", "iso", &a.layout, false);
    let usb = disk("pulled", "vfat", &a.layout, true);
    let mut running = vm("pulled").cdrom_ide(&cd).usb_stick_xhci(&usb).append(&format!("viver.timeout=20 {FAIL_FAST}")).spawn().unwrap();
    // Pull the stick the moment VIVER has mounted it, while it chooses and mounts the image.
    running.wait_for_line("disks: mounted /dev/sda1", BOOT_TIMEOUT).unwrap();
    running.monitor("device_del usbx0").unwrap();
    running.wait(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("the boot hung after the stick was pulled: {e}"));
    let log = running.serial();
    // The same image is on the CD: the machine boots whatever moment the stick left.
    assert!(log.contains("VIVER-TESTROOT-UP"), "the machine did not boot:\n{}", log.tail(60));
    let report = log.boot_json().unwrap();
    let candidates = report["candidates"].as_array().unwrap();
    match report["image"]["media"].as_str().unwrap_or_default() {
        // The stick left before its copy was proven readable: that copy was rejected
        // with a reason, and the CD's copy booted.
        "cd" => {
            let stick = candidates.iter().find(|c| c["media"] == "usb");
            if let Some(stick) = stick {
                assert_eq!(stick["verdict"], "rejected", "{stick}");
                assert!(stick["reason"].as_str().is_some_and(|r| !r.is_empty()), "{stick}");
            }
        }
        // The stick's copy was proven and the boot had everything it needed before the
        // pull reached the guest.
        "usb" => assert!(candidates.iter().any(|c| c["media"] == "usb" && c["verdict"] == "chosen"), "{candidates:?}"),
        other => panic!("booted from {other:?}: {}", report["image"]),
    }
}

#[test]
fn after_toram_the_medium_can_be_removed() {
    let usb = disk("toram-pull", "vfat", &artifacts().layout, true);
    // The root waits (up to 60 s) until the stick is gone from the kernel's view, then
    // drops its caches and reads every file.
    let cmd = "testroot.cmd=for,i,$(seq,600);do,test,-e,/sys/block/sda,||,break;sleep,0.1;done;\
               test,!,-e,/sys/block/sda,&&,echo,STICK-GONE;echo,3,>/proc/sys/vm/drop_caches;\
               find,/bin,/sbin,/etc,-xdev,-type,f,-exec,cat,{},+,>/dev/null,&&,echo,READ-AFTER-PULL-OK";
    let mut running = vm("toram-pull").usb_stick_xhci(&usb).append(&format!("viver.toram {cmd}")).spawn().unwrap();
    running.wait_for_line("CMD-BEGIN", BOOT_TIMEOUT).unwrap();
    running.monitor("device_del usbx0").unwrap();
    running.wait(BOOT_TIMEOUT).unwrap();
    let log = running.serial();
    assert!(log.contains("STICK-GONE"), "the stick never left the guest:\n{}", log.tail(30));
    assert!(log.contains("READ-AFTER-PULL-OK"), "{}", log.tail(30));
    assert!(log.mount_at("/run/viver/media/sda1").is_none(), "the stick was still mounted");
}

// ---------------------------------------------------------------- the kit's media, through real bootloaders

#[test]
fn kit_iso_boots_from_a_cd_through_isolinux() {
    let a = artifacts();
    let iso = qemu::target_dir().join("qemu-tmp/kit.iso");
    qemu::kit(&[
        "media",
        "--kind",
        "iso",
        "--kernel",
        qemu::kernel().to_str().unwrap(),
        "--initrd",
        a.initrd.to_str().unwrap(),
        "--image",
        a.image.to_str().unwrap(),
        "-o",
        iso.to_str().unwrap(),
    ]);
    let (_, report) = boot_ok(Vm::new("kit-iso").memory_mb(768).cdrom_ide(&iso).boot_from_cdrom());
    assert_eq!(chosen(&report).0, "cd");
    assert!(report["cmdline"].as_str().unwrap().contains("initrd="), "not booted by isolinux: {}", report["cmdline"]);
}

#[test]
fn kit_usb_image_boots_from_a_usb_stick_through_syslinux() {
    let a = artifacts();
    let img = qemu::target_dir().join("qemu-tmp/kit-usb.img");
    qemu::kit(&[
        "media",
        "--kind",
        "usb",
        "--kernel",
        qemu::kernel().to_str().unwrap(),
        "--initrd",
        a.initrd.to_str().unwrap(),
        "--image",
        a.image.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
    ]);
    let (_, report) = boot_ok(Vm::new("kit-usb").memory_mb(768).usb_stick_ehci(&img).boot_from_usb());
    assert_eq!(chosen(&report), ("usb".into(), "/dev/sda1".into(), "testroot".into()));
}

// ---------------------------------------------------------------- different machines, one initrd

#[test]
fn one_initrd_boots_different_controller_sets_with_different_drivers() {
    let a = artifacts();
    let hdd = disk("hetero", "ext4", &a.layout, true);
    let (_, pc) = boot_ok(vm("hetero-pc-ide").machine("pc").disk_ide(&hdd));
    let usb = disk("hetero", "vfat", &a.layout, true);
    let (_, q35) = boot_ok(vm("hetero-q35-ahci-usb").machine("q35").disk_ahci(&hdd).usb_stick_xhci(&usb));
    let loaded = |report: &Value| -> Vec<String> {
        report["hardware"]["loaded"].as_array().unwrap().iter().filter_map(|m| m["module"].as_str().map(String::from)).collect()
    };
    let (pc, q35) = (loaded(&pc), loaded(&q35));
    assert!(pc.contains(&"ata_piix".to_string()) && !pc.contains(&"ahci".to_string()), "{pc:?}");
    assert!(q35.contains(&"ahci".to_string()) && !q35.contains(&"ata_piix".to_string()), "{q35:?}");
    assert!(q35.contains(&"xhci_pci".to_string()) && !pc.contains(&"xhci_pci".to_string()), "{q35:?} / {pc:?}");
}

// ---------------------------------------------------------------- a real Debian system

#[test]
fn an_installed_debian_system_boots_diskless_to_multi_user() {
    let a = artifacts();
    let root = qemu::extract_debian_root(&a.dir.join("debian-root"));
    let layout = a.dir.join("debian-layout");
    let image = layout.join("viver/debian.squashfs");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    qemu::kit(&["image", root.to_str().unwrap(), "-o", image.to_str().unwrap()]);
    let hdd = disk("debian", "ext4", &layout, true);
    let log = vm("debian").memory_mb(1024).disk_virtio(&hdd).run(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("VIVER-DEBIAN-UP"), "{}", log.tail(60));
    assert_eq!(log.line_after("SYSTEM-STATE: ").as_deref(), Some("running"), "{}", log.tail(60));
    assert_eq!(log.line_after("ROOT-MOUNT: ").as_deref().map(|l| l.split_whitespace().last()), Some(Some("overlay")));
    assert!(log.contains("VIVER-REPORT: present"));
    // systemd-analyze shows the initrd phase only when RD_TIMESTAMP was handed over.
    let analyze = log.line_after("ANALYZE: ").unwrap_or_default();
    assert!(analyze.contains("(initrd)"), "systemd did not count the initrd: {analyze}");
}

#[test]
fn changes_persist_in_an_image_file_on_a_fat_stick() {
    let a = artifacts();
    let layout = a.dir.join("cowfile-layout");
    if !layout.exists() {
        qemu::run_ok(Command::new("cp").arg("-a").arg(&a.layout).arg(&layout));
        let cow = layout.join("cow.img");
        qemu::run_ok(Command::new("truncate").arg("-s").arg("32M").arg(&cow));
        qemu::run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&cow));
    }
    let usb = disk("cowfile", "vfat", &layout, true);
    let cow = "viver.cow=LABEL=VIVER:/cow.img";
    let (log, report) = boot_ok(vm("cowfile-1").usb_stick_xhci(&usb).append(cow));
    assert_eq!(log.line_after("PERSIST: ").as_deref(), Some("none"));
    assert!(report["cow"].as_str().unwrap_or_default().contains("/cow.img"), "{}", report["cow"]);
    let (log, _) = boot_ok(vm("cowfile-2").usb_stick_xhci(&usb).append(cow));
    assert_eq!(log.line_after("PERSIST: ").as_deref(), Some("boot-1"));
}

#[test]
fn two_virtio_disks_with_the_same_image_are_both_weighed() {
    let a = artifacts();
    let first = disk("tie-a", "ext4", &a.layout, true);
    let second = disk("tie-b", "ext4", &a.layout, true);
    let (log, report) = boot_ok(vm("tie").disk_virtio(&first).disk_virtio(&second));
    assert_eq!(chosen(&report).0, "virtio");
    let virtio = report["candidates"].as_array().unwrap().iter().filter(|c| c["media"] == "virtio").count();
    assert_eq!(virtio, 2, "both copies should be candidates: {}", report["candidates"]);
    assert!(log.contains("hold the same image on the same kind of medium"), "no measured tie-break:\n{}", log.tail(40));
}

// ---------------------------------------------------------------- corrupt images (issue 8, section 2)

/// A layout `viver/<name>.squashfs` + manifest of a copy of the test root changed by
/// `change`, made with `compressor`.
fn variant_layout(name: &str, compressor: &str, change: impl FnOnce(&Path)) -> PathBuf {
    let a = artifacts();
    let root = a.dir.join(format!("{name}-root"));
    let layout = a.dir.join(format!("{name}-layout"));
    if layout.exists() {
        return layout;
    }
    qemu::run_ok(Command::new("cp").arg("-a").arg(qemu::testroot_dir()).arg(&root));
    change(&root);
    let image = layout.join(format!("viver/{name}.squashfs"));
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    qemu::kit(&["image", root.to_str().unwrap(), "-o", image.to_str().unwrap(), "--name", name, "--compressor", compressor]);
    layout
}

fn rejected(report: &Value) -> Vec<&Value> {
    report["candidates"].as_array().unwrap().iter().filter(|c| c["verdict"] == "rejected").collect()
}

/// Issue 8's case: bytes flipped throughout the virtio copy (same size, superblock and
/// manifest intact) and a good copy on a USB stick.
#[test]
fn a_copy_corrupt_throughout_is_rejected_by_its_chunks_and_the_usb_copy_boots() {
    let a = artifacts();
    let bad = a.dir.join("corrupt-throughout-layout");
    if !bad.exists() {
        qemu::run_ok(Command::new("cp").arg("-a").arg(&a.layout).arg(&bad));
        let image = bad.join("viver/testroot.squashfs");
        let mut bytes = std::fs::read(&image).unwrap();
        let len = bytes.len();
        for offset in (4096..len).step_by(8192) {
            bytes[offset] ^= 0x5a;
        }
        std::fs::write(&image, &bytes).unwrap();
        assert_eq!(std::fs::metadata(&image).unwrap().len() as usize, len);
    }
    let hdd = disk("corrupt-all", "ext4", &bad, true);
    let usb = disk("corrupt-all", "vfat", &a.layout, true);
    let (log, report) = boot_ok(vm("corrupt-all").disk_virtio(&hdd).usb_stick_xhci(&usb));
    assert!(log.contains("VIVER-TESTROOT-UP"));
    assert_eq!(chosen(&report).0, "usb", "{}", report["candidates"]);
    let rejected = rejected(&report);
    assert_eq!(rejected.len(), 1, "{}", report["candidates"]);
    assert_eq!(rejected[0]["media"], "virtio");
    let reason = rejected[0]["reason"].as_str().unwrap();
    let words: Vec<&str> = reason.split_whitespace().collect();
    assert_eq!(words[0], "chunk", "{reason}");
    assert!(words[1].parse::<u64>().is_ok() && words[2] == "(offset", "{reason}");
    assert!(reason.ends_with("does not match the manifest"), "{reason}");
    // The USB copy passed the same check.
    let v = &report["image"]["verification"];
    assert_eq!(v["level"], "boot", "{v}");
    assert!(v["files"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().contains("/bin/busybox")), "{v}");
}

/// Corruption only inside a big file init does not need: the boot goes on, the report
/// says what was checked, and reading that file fails with EIO rather than returning
/// wrong bytes. gzip is used because its zlib streams carry an adler32 the kernel
/// checks on every block (xz's CRC32 too; zstd blocks from mksquashfs carry none).
#[test]
fn corruption_in_a_file_init_does_not_need_boots_and_reading_it_gives_eio() {
    let layout = variant_layout("bigfile", "gzip", |root| {
        let text: String = (0..1_200_000u32).map(|i| format!("line {i}\n")).collect();
        std::fs::write(root.join("big.txt"), text).unwrap();
    });
    let image = layout.join("viver/bigfile.squashfs");
    // Once per artifacts directory (the layout is built once too).
    let flipped = artifacts().dir.join("bigfile.flipped");
    if !flipped.exists() {
        let mut bytes = std::fs::read(&image).unwrap();
        let offset = {
            let archive = viver::image::squashfs::Archive::open(&bytes).unwrap();
            let (_, big) = archive.lookup("/big.txt").unwrap();
            let extents = archive.extents(&big).unwrap();
            assert!(extents.len() > 20, "{extents:?}");
            let middle = extents[extents.len() / 2];
            middle.start + middle.len / 2
        };
        for i in 0..16 {
            bytes[offset as usize + i] ^= 0xff;
        }
        std::fs::write(&image, &bytes).unwrap();
        std::fs::write(&flipped, b"done\n").unwrap();
    }
    let hdd = disk("bigfile", "ext4", &layout, true);
    let (log, report) = boot_ok(vm("bigfile").disk_virtio(&hdd).append("testroot.cmd=cat,/big.txt,>/dev/null"));
    assert_eq!(chosen(&report).2, "bigfile");
    let v = &report["image"]["verification"];
    assert_eq!(v["level"], "boot", "{v}");
    assert_eq!(v["complete"], false, "{v}");
    let (verified, total) = (v["chunks_verified"].as_u64().unwrap(), v["chunks_total"].as_u64().unwrap());
    assert!(verified > 0 && verified < total, "{v}");
    assert!(v["bytes_verified"].as_u64().unwrap() < v["image_bytes"].as_u64().unwrap(), "{v}");
    assert!(!v["verified_chunks"].as_str().unwrap().is_empty(), "{v}");
    let files: Vec<&str> = v["files"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
    assert_eq!(files, ["/sbin/init", "/bin/busybox"], "{v}");
    // The damaged file: an I/O error, not wrong bytes.
    let out = log.section("CMD-BEGIN cat /big.txt >/dev/null", "CMD-END rc=1").unwrap_or_else(|| panic!("{}", log.tail(30)));
    assert!(out.iter().any(|l| l.trim() == "cat: read error: Input/output error"), "{out:?}");
}

/// The hand-over fails after the point of no return (init= names a file that exists and
/// is executable but is no program): the failure policy still runs, once.
#[test]
fn an_init_that_cannot_exec_ends_in_the_panic_policy_not_a_reboot_loop() {
    let layout = variant_layout("brokeninit", "zstd", |root| {
        std::fs::write(root.join("sbin/broken-init"), [0x13u8; 4096]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("sbin/broken-init"), std::fs::Permissions::from_mode(0o755)).unwrap();
    });
    let hdd = disk("brokeninit", "ext4", &layout, true);
    let log = vm("brokeninit")
        .disk_virtio(&hdd)
        .append(&format!("init=/sbin/broken-init {FAIL_FAST}"))
        .run(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("VIVER could not boot: the switch-root stage failed"), "{}", log.tail(30));
    assert!(log.contains("starting /sbin/broken-init: ENOEXEC"), "{}", log.tail(30));
    assert!(log.contains("Rebooting in 0 seconds"), "{}", log.tail(20));
    assert_eq!(log.text.matches("Run /init as init process").count(), 1, "booted more than once");
    assert!(!log.contains("Kernel panic"), "{}", log.tail(30));

    // With the rescue shell in the initrd, it starts although the initramfs is gone.
    let a = artifacts();
    let rescue = a.dir.join("initrd-rescue.img");
    if !rescue.exists() {
        let modules = qemu::modules_dir();
        qemu::kit(&["initrd", "--modules", modules.to_str().unwrap(), "--rescue-shell", "-o", rescue.to_str().unwrap()]);
    }
    let mut running = Vm::new("brokeninit-shell")
        .kernel(qemu::kernel())
        .initrd(&rescue)
        .memory_mb(768)
        .disk_virtio(&hdd)
        .append("init=/sbin/broken-init")
        .spawn()
        .unwrap();
    running.wait_for_line("the switch-root stage failed", BOOT_TIMEOUT).unwrap();
    running.wait_for_line("Starting the initrd's rescue shell", Duration::from_secs(60)).unwrap();
    running.wait_for_line("(viver rescue)", Duration::from_secs(60)).unwrap();
    let log = running.serial();
    assert!(!log.contains("The rescue shell could not start"), "{}", log.tail(20));
    running.kill();
}

// ---------------------------------------------------------------- PID 1 never hangs, never panics

#[test]
fn a_command_line_word_that_is_not_utf8_costs_only_that_word() {
    let disk = disk("cmdline-bytes", "ext4", &artifacts().layout, true);
    // viver.media_wait after the bad word must still apply; the bad word also reaches
    // init's environment (the kernel passes unknown key=value words on).
    let vm = vm("cmdline-bytes").disk_virtio(&disk).append_bytes(b"junk=\xff\xfe").append("viver.media_wait=1");
    let (_, report) = boot_ok(vm);
    assert_eq!(chosen(&report).1, "/dev/vda1");
    assert_eq!(report["settings"]["media_wait"], 1.0, "the words after the bad one were lost: {}", report["settings"]);
    let problems: Vec<&str> = report["problems"].as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
    assert!(
        problems.iter().any(|p| p.contains("the word \"junk=\\xff\\xfe\"") && p.contains("not UTF-8")),
        "the report does not name the word: {problems:?}"
    );
}

#[test]
fn an_initrd_for_another_kernel_release_says_which_releases_it_has() {
    // The harness kernel's modules under another release name: the kernel finds no
    // /lib/modules/$(uname -r). Debian's virtio_blk is a module, so no medium can appear:
    // the boot must fail with a report naming the initrd's releases, not stop at once.
    let dir = qemu::temp_dir("other-release");
    let other = dir.join("6.1.0-0-other");
    qemu::run_ok(Command::new("cp").arg("-al").arg(qemu::modules_dir()).arg(&other));
    let initrd = dir.join("initrd.img");
    qemu::kit(&["initrd", "--modules", other.to_str().unwrap(), "-o", initrd.to_str().unwrap()]);
    let hdd = disk("other-release", "ext4", &artifacts().layout, true);
    let log = Vm::new("other-release")
        .kernel(qemu::kernel())
        .initrd(&initrd)
        .memory_mb(768)
        .disk_virtio(&hdd)
        .append(&format!("viver.timeout=3 {FAIL_FAST}"))
        .run(BOOT_TIMEOUT)
        .unwrap();
    assert!(log.contains("VIVER could not boot: the disks stage failed"), "{}", log.tail(40));
    assert!(log.contains("it has modules for: 6.1.0-0-other"), "the report does not name the initrd's release:\n{}", log.tail(40));
    assert!(!log.contains("Kernel panic"), "{}", log.tail(40));
}

//! Tests of the QEMU harness itself, with the real Debian kernel and tiny busybox
//! initramfs images built here: they prove that booting, serial capture, the monitor
//! (device unplug), timeouts and the test root work before any VIVER boot test relies
//! on them.

mod qemu;

use qemu::{busybox_initramfs, temp_dir, Vm};
use std::time::{Duration, Instant};

/// TCG boots of the Debian kernel take ~5-10 s on a free core; generous for loaded CI.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// First lines of every test /init: busybox applets and the kernel interfaces.
const INIT_PRELUDE: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
"#;

#[test]
fn debian_kernel_boots_tiny_initramfs_and_qemu_exits() {
    let dir = temp_dir("harness-boot");
    let init = format!("{INIT_PRELUDE}echo \"HARNESS-INIT-UP uptime=$(cut -d' ' -f1 /proc/uptime)\"\npoweroff -f\n");
    let initrd = busybox_initramfs(&dir, &init, &[]);

    let started = Instant::now();
    let log = Vm::new("harness-boot").kernel(qemu::kernel()).initrd(&initrd).run(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let wall = started.elapsed();

    assert!(log.contains("Run /init as init process"), "kernel did not start /init:\n{}", log.tail(30));
    let uptime = log.line_after("HARNESS-INIT-UP uptime=").unwrap_or_else(|| panic!("marker missing:\n{}", log.tail(30)));
    // Shown with --nocapture: the TCG boot cost every VM test pays.
    eprintln!("TCG boot of the Debian kernel to /init: guest uptime {uptime} s, wall {wall:.1?} until QEMU exited");
}

#[test]
fn monitor_device_del_unplugs_usb_stick() {
    let dir = temp_dir("harness-usb-unplug");
    let stick = dir.join("stick.img");
    std::fs::write(&stick, vec![0u8; 4 * 1024 * 1024]).unwrap();
    // The guest loads xHCI + usb-storage, reports the disk, then waits for it to vanish.
    let init = format!(
        "{INIT_PRELUDE}{}",
        r#"for m in /modules/*.ko; do insmod $m || echo "INSMOD-FAILED $m"; done
n=0
until [ -e /sys/block/sda ]; do sleep 0.2; n=$((n+1)); [ $n -lt 300 ] || { echo STICK-NEVER-SEEN; poweroff -f; }; done
echo "STICK-PRESENT $(cat /sys/block/sda/size) sectors"
n=0
while [ -e /sys/block/sda ]; do sleep 0.2; n=$((n+1)); [ $n -lt 300 ] || { echo STICK-NEVER-GONE; poweroff -f; }; done
echo STICK-GONE
poweroff -f
"#
    );
    let initrd = busybox_initramfs(&dir, &init, &["xhci-pci", "usb-storage", "sd_mod"]);
    let vm = Vm::new("harness-usb-unplug").kernel(qemu::kernel()).initrd(&initrd).usb_stick_xhci(&stick);
    assert_eq!(vm.device_ids(), vec!["usbx0".to_string()]);

    let mut running = vm.spawn().unwrap_or_else(|e| panic!("{e}"));
    let present = running.wait_for_line("STICK-PRESENT", BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(present.contains("8192 sectors"), "4 MiB stick expected: {present}");

    // A device that does not exist is an error, not silence.
    assert!(running.monitor("device_del no-such-device").is_err());
    running.monitor("device_del usbx0").unwrap_or_else(|e| panic!("{e}"));

    running.wait_for_line("STICK-GONE", Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    running.wait(Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn timeout_kills_hung_vm_and_reports_log_tail() {
    let dir = temp_dir("harness-hang");
    let init = format!("{INIT_PRELUDE}echo HARNESS-HANGING-NOW\nwhile :; do sleep 1; done\n");
    let initrd = busybox_initramfs(&dir, &init, &[]);
    let mut running = Vm::new("harness-hang").kernel(qemu::kernel()).initrd(&initrd).spawn().unwrap_or_else(|e| panic!("{e}"));
    running.wait_for_line("HARNESS-HANGING-NOW", BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));

    let error = running.wait(Duration::from_secs(2)).expect_err("a hung VM must time out");
    assert!(error.contains("timeout"), "error names the timeout: {error}");
    assert!(error.contains("HARNESS-HANGING-NOW"), "error carries the serial tail: {error}");
    assert!(running.has_exited(), "QEMU must be killed after the timeout");
}

#[test]
fn run_reports_timeout_with_serial_tail() {
    // The same through the one-call API: a VM that never powers off is an Err.
    let dir = temp_dir("harness-run-timeout");
    let init = format!("{INIT_PRELUDE}echo HARNESS-RUN-HANG\nwhile :; do sleep 1; done\n");
    let initrd = busybox_initramfs(&dir, &init, &[]);
    let vm = Vm::new("harness-run-timeout").kernel(qemu::kernel()).initrd(&initrd);
    // Long enough to reach /init on a free core, short enough to keep the test cheap;
    // either way the VM never exits by itself.
    let error = vm.run(Duration::from_secs(20)).expect_err("never powers off");
    assert!(error.contains("timeout"), "{error}");
    assert!(error.contains("serial tail"), "{error}");
}

#[test]
fn bad_qemu_arguments_are_an_error_with_qemu_stderr() {
    let dir = temp_dir("harness-bad-args");
    let initrd = busybox_initramfs(&dir, "#!/bin/sh\n", &[]);
    let error = Vm::new("harness-bad-args")
        .kernel(qemu::kernel())
        .initrd(&initrd)
        .arg("-device")
        .arg("no-such-qemu-device")
        .run(Duration::from_secs(30))
        .expect_err("QEMU must refuse an unknown device");
    assert!(error.contains("QEMU failed"), "{error}");
    assert!(error.contains("no-such-qemu-device"), "QEMU's own message is shown: {error}");
}

/// The test root's /sbin/init, started the way VIVER's /init will start it: from an
/// initramfs that mounts a root, moves /proc /sys /dev /run into it and switch_roots.
/// Here the root is a tmpfs copy of qemu-harness/work/testroot.
#[test]
fn testroot_init_reports_boot_json_mounts_and_writes() {
    let dir = temp_dir("harness-testroot");
    let testroot = qemu::testroot_dir();
    let init = format!(
        "{INIT_PRELUDE}{}",
        r#"mkdir -p /run && mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/viver
echo '{"viver": "fake", "stages": [1.5, 2]}' > /run/viver/boot.json
mkdir -p /newroot
mount -t tmpfs tmpfs /newroot
cp -a /testroot/. /newroot/
for d in proc sys dev run; do mount --move /$d /newroot/$d; done
exec switch_root /newroot /sbin/init
"#
    );
    // busybox_initramfs copies only what it is told: put the test root inside it.
    let initrd = busybox_initramfs(&dir, &init, &[]);
    let root = dir.join("initramfs-root");
    let status = std::process::Command::new("cp").arg("-a").arg(&testroot).arg(root.join("testroot")).status().unwrap();
    assert!(status.success());
    qemu::make_cpio(&root, &initrd).unwrap();

    let log = Vm::new("harness-testroot")
        .kernel(qemu::kernel())
        .initrd(&initrd)
        .append("testroot.cmd=cat,/etc/hostname")
        .run(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));

    assert!(log.contains("VIVER-TESTROOT-UP"), "{}", log.tail(30));
    assert!(log.contains("VIVER-TESTROOT-DONE"), "{}", log.tail(30));
    let boot = log.boot_json().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(boot["viver"], "fake");
    let root_mount = log.mount_at("/").unwrap_or_else(|| panic!("no / in mounts:\n{}", log.tail(40)));
    assert_eq!(root_mount.fstype, "tmpfs");
    assert!(log.mount_at("/proc").is_some(), "moved /proc is visible");
    assert!(log.contains("WRITE-OK"), "{}", log.tail(30));
    assert_eq!(log.line_after("PERSIST: ").as_deref(), Some("none"));
    let hook = log.section("CMD-BEGIN cat /etc/hostname", "CMD-END rc=0").unwrap_or_else(|| panic!("{}", log.tail(30)));
    assert_eq!(hook, vec!["viver-testroot".to_string()]);
}

/// Loads the drivers of every bus the Vm builder offers, waits for `expected` block
/// devices, prints `BLOCK <name> <sectors>` for each, then runs `extra`.
fn disk_probe_init(expected: usize, extra: &str) -> String {
    format!(
        r#"{INIT_PRELUDE}for m in /modules/*.ko; do insmod $m 2>/dev/null; done
n=0
while [ $(ls /sys/block | grep -v -e '^loop' -e '^ram' | wc -l) -lt {expected} ] && [ $n -lt 300 ]; do sleep 0.2; n=$((n+1)); done
for b in /sys/block/*; do case ${{b##*/}} in loop*|ram*) ;; *) echo "BLOCK ${{b##*/}} $(cat $b/size)";; esac; done
{extra}
echo PROBE-DONE
poweroff -f
"#
    )
}

const ALL_BUS_MODULES: &[&str] = &[
    "virtio_blk",
    "virtio_pci",
    "nvme",
    "ahci",
    "ata_piix",
    "sd_mod",
    "sr_mod",
    "usb-storage",
    "ehci-pci",
    "xhci-pci",
    "sdhci-pci",
    "mmc_block",
    "ext4",
    "crc32c_generic",
    "isofs",
    "squashfs",
];

fn sized_disk(dir: &std::path::Path, name: &str, mib: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, vec![0u8; mib * 1024 * 1024]).unwrap();
    path
}

fn mkdisk(args: &[&std::ffi::OsStr]) {
    qemu::mkdisk(args).unwrap_or_else(|e| panic!("{e}"));
}

/// Every bus of the `pc` machine shows up in the guest with the disk given to it, and
/// mkdisk's images (ext4 in an MBR partition, ISO 9660, squashfs on a whole disk) are
/// readable by the real kernel.
#[test]
fn every_bus_of_pc_machine_reaches_the_guest_with_mkdisk_images() {
    let dir = temp_dir("harness-buses-pc");
    let content = dir.join("content");
    std::fs::create_dir_all(content.join("viver")).unwrap();
    std::fs::write(content.join("viver/demo.toml"), "name = \"demo\"\n").unwrap();
    let ext4 = dir.join("ext4-mbr.img");
    let iso = dir.join("media.iso");
    let squashfs_file = dir.join("content.squashfs");
    let squashfs_disk = dir.join("squashfs-disk.img");
    mkdisk(&["ext4".as_ref(), content.as_os_str(), ext4.as_os_str(), "--mbr".as_ref(), "--size".as_ref(), "24".as_ref()]);
    mkdisk(&["iso".as_ref(), content.as_os_str(), iso.as_os_str()]);
    let status = std::process::Command::new("mksquashfs").arg(&content).arg(&squashfs_file).args(["-quiet", "-noappend"]).status().unwrap();
    assert!(status.success());
    mkdisk(&["squashfs".as_ref(), squashfs_file.as_os_str(), squashfs_disk.as_os_str()]);

    // The squashfs disk is the one of 8 sectors: sdX letters depend on probe order.
    let extra = r#"sq=$(for b in /sys/block/sd*; do [ "$(cat $b/size)" = 8 ] && echo ${b##*/}; done)
for spec in vda1:ext4 sr0:iso9660 $sq:squashfs; do
  dev=${spec%%:*}; fs=${spec#*:}; mkdir -p /mnt/$dev
  if mount -t $fs -o ro /dev/$dev /mnt/$dev; then echo "READ $dev $(cat /mnt/$dev/viver/demo.toml)"; else echo "MOUNT-FAILED $dev"; fi
done"#;
    let init = disk_probe_init(7, extra);
    let initrd = busybox_initramfs(&dir, &init, ALL_BUS_MODULES);
    let vm = Vm::new("harness-buses-pc")
        .kernel(qemu::kernel())
        .initrd(&initrd)
        .disk_virtio(&ext4) // vda
        .disk_ahci(&squashfs_disk) // sdX, 8 sectors
        .disk_nvme(sized_disk(&dir, "nvme.img", 3)) // nvme0n1
        .disk_ide(sized_disk(&dir, "ide.img", 5)) // sdX
        .cdrom_ide(&iso) // sr0
        .usb_stick_ehci(sized_disk(&dir, "ehci.img", 6)) // sdX
        .sd_card(sized_disk(&dir, "sd.img", 8)); // mmcblk0
    let log = vm.run(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));

    let blocks: Vec<String> = log.lines().filter_map(|l| l.strip_prefix("BLOCK ")).map(str::to_string).collect();
    let sizes: Vec<&str> = blocks.iter().filter_map(|b| b.split_whitespace().nth(1)).collect();
    assert!(blocks.iter().any(|b| b.starts_with("vda ")), "virtio disk missing: {blocks:?}");
    assert!(blocks.iter().any(|b| b == "nvme0n1 6144"), "3 MiB NVMe disk missing: {blocks:?}");
    assert!(blocks.iter().any(|b| b == "mmcblk0 16384"), "8 MiB SD card missing: {blocks:?}");
    assert!(blocks.iter().any(|b| b.starts_with("sr0 ")), "CD-ROM missing: {blocks:?}");
    assert!(sizes.contains(&"10240"), "5 MiB IDE disk missing: {blocks:?}");
    assert!(sizes.contains(&"12288"), "6 MiB EHCI stick missing: {blocks:?}");
    assert!(sizes.contains(&"8"), "squashfs-on-AHCI disk missing: {blocks:?}");
    let read: Vec<&str> = log.lines().filter(|l| l.starts_with("READ ")).collect();
    assert_eq!(read.len(), 3, "ext4 in MBR, ISO and whole-disk squashfs all readable:\n{}", log.tail(40));
    assert!(read.iter().all(|l| l.ends_with("name = \"demo\"")), "{read:?}");
    assert!(read.iter().any(|l| l.starts_with("READ vda1 ")), "{read:?}");
}

/// q35: the built-in controller is AHCI (disk_ide lands there), plus an AHCI CD-ROM
/// and a USB 3 stick.
#[test]
fn q35_machine_disks_reach_the_guest() {
    let dir = temp_dir("harness-buses-q35");
    let init = disk_probe_init(3, "");
    let initrd = busybox_initramfs(&dir, &init, ALL_BUS_MODULES);
    let iso_dir = dir.join("iso");
    std::fs::create_dir_all(&iso_dir).unwrap();
    let iso = dir.join("empty.iso");
    mkdisk(&["iso".as_ref(), iso_dir.as_os_str(), iso.as_os_str()]);
    let log = Vm::new("harness-buses-q35")
        .machine("q35")
        .kernel(qemu::kernel())
        .initrd(&initrd)
        .disk_ide(sized_disk(&dir, "builtin.img", 5))
        .cdrom_ahci(&iso)
        .usb_stick_xhci(sized_disk(&dir, "xhci.img", 7))
        .run(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let blocks: Vec<String> = log.lines().filter_map(|l| l.strip_prefix("BLOCK ")).map(str::to_string).collect();
    let sizes: Vec<&str> = blocks.iter().filter_map(|b| b.split_whitespace().nth(1)).collect();
    assert!(sizes.contains(&"10240"), "5 MiB disk on the ICH9 AHCI missing: {blocks:?}");
    assert!(sizes.contains(&"14336"), "7 MiB xHCI stick missing: {blocks:?}");
    assert!(blocks.iter().any(|b| b.starts_with("sr0 ")), "AHCI CD-ROM missing: {blocks:?}");
}

/// The Debian root from make-debian-root boots with systemd to multi-user.target and
/// reports VIVER-DEBIAN-UP (booted here from an ext4 disk through a busybox initramfs,
/// as VIVER will boot it from an image).
#[test]
fn debian_root_boots_systemd_and_reports_up() {
    let dir = temp_dir("harness-debian");
    let root = qemu::extract_debian_root(&dir.join("root"));
    let disk = qemu::disk_ext4(&root, &dir.join("debian.ext4"), &qemu::DiskOpts::default());
    std::fs::remove_dir_all(&root).unwrap();

    let init = format!(
        "{INIT_PRELUDE}{}",
        r#"for m in /modules/*.ko; do insmod $m 2>/dev/null; done
n=0; until [ -e /dev/vda ] || [ $n -gt 100 ]; do sleep 0.2; n=$((n+1)); done
mkdir -p /newroot && mount -t ext4 /dev/vda /newroot || { echo ROOT-MOUNT-FAILED; poweroff -f; }
for d in proc sys dev; do mount --move /$d /newroot/$d; done
exec switch_root /newroot /sbin/init
"#
    );
    let initrd = busybox_initramfs(&dir, &init, &["virtio_blk", "virtio_pci", "ext4", "crc32c_generic"]);
    let mut vm =
        Vm::new("harness-debian").kernel(qemu::kernel()).initrd(&initrd).disk_virtio(&disk).spawn().unwrap_or_else(|e| panic!("{e}"));
    let state = vm.wait_for_line("SYSTEM-STATE: ", Duration::from_secs(400)).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_line("VIVER-DEBIAN-UP", Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("Debian root: {state} after {:.1?}", vm.elapsed());
    // The unit powers the system off cleanly: systemd's shutdown must finish too.
    vm.wait(Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    let log = vm.serial();
    assert!(state.ends_with("running") || state.ends_with("degraded"), "{state}");
    if state.ends_with("degraded") {
        // Say which unit failed: a degraded boot is worth looking at, not a test failure.
        eprintln!("failed units: {:?}", log.section("FAILED-UNITS-BEGIN", "FAILED-UNITS-END"));
    }
}

/// A hybrid isolinux ISO made here (as the kit will make one): kernel + tiny initramfs.
fn isolinux_hybrid_iso(dir: &std::path::Path, initrd: &std::path::Path) -> std::path::PathBuf {
    let tree = dir.join("iso-tree");
    std::fs::create_dir_all(tree.join("isolinux")).unwrap();
    std::fs::copy("/usr/lib/ISOLINUX/isolinux.bin", tree.join("isolinux/isolinux.bin")).unwrap();
    std::fs::copy("/usr/lib/syslinux/modules/bios/ldlinux.c32", tree.join("isolinux/ldlinux.c32")).unwrap();
    std::fs::copy(qemu::kernel(), tree.join("vmlinuz")).unwrap();
    std::fs::copy(initrd, tree.join("initrd.img")).unwrap();
    std::fs::write(
        tree.join("isolinux/isolinux.cfg"),
        "serial 0 115200\ndefault harness\nprompt 0\ntimeout 0\nlabel harness\n  kernel /vmlinuz\n  append initrd=/initrd.img console=ttyS0 panic=-1\n",
    )
    .unwrap();
    let iso = dir.join("hybrid.iso");
    let status = std::process::Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", "HARNESS", "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", "-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin"])
        .arg("-o")
        .arg(&iso)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(status.success(), "xorriso");
    iso
}

/// The real-media path the demo uses: SeaBIOS boots a CD-ROM (no -kernel), isolinux
/// loads the Debian kernel, whose /init prints a marker; the same hybrid image then
/// boots as a USB stick.
#[test]
fn seabios_boots_hybrid_iso_from_cdrom_and_usb() {
    let dir = temp_dir("harness-media");
    let init = format!("{INIT_PRELUDE}echo \"HARNESS-MEDIA-UP $(cat /proc/cmdline)\"\npoweroff -f\n");
    let initrd = busybox_initramfs(&dir, &init, &[]);
    let iso = isolinux_hybrid_iso(&dir, &initrd);

    let log = Vm::new("harness-media-cdrom").cdrom_ide(&iso).boot_from_cdrom().run(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let cmdline = log.line_after("HARNESS-MEDIA-UP ").unwrap_or_else(|| panic!("{}", log.tail(30)));
    assert!(cmdline.contains("initrd=/initrd.img"), "booted through isolinux: {cmdline}");

    let log = Vm::new("harness-media-usb").usb_stick_ehci(&iso).boot_from_usb().run(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("HARNESS-MEDIA-UP"), "{}", log.tail(30));

    let log = Vm::new("harness-media-usb3")
        .machine("q35")
        .usb_stick_xhci(&iso)
        .boot_from_usb()
        .run(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("HARNESS-MEDIA-UP"), "{}", log.tail(30));
}

#[test]
fn media_boot_needs_the_boot_device_and_no_kernel() {
    let iso = qemu::kernel(); // any existing file will do: QEMU is not started
    assert!(Vm::new("x").boot_from_cdrom().qemu_args().is_err(), "no CD-ROM attached");
    assert!(Vm::new("x").kernel(&iso).cdrom_ide(&iso).boot_from_cdrom().qemu_args().is_err(), "-kernel bypasses media");
    let args = Vm::new("x").disk_virtio(&iso).cdrom_ahci(&iso).boot_from_cdrom().qemu_args().unwrap().join(" ");
    assert!(args.contains("ide-cd,drive=drv-cdahci0,id=cdahci0,bus=ahcictl.0,bootindex=0"), "{args}");
    assert!(!args.contains("-kernel"), "{args}");
    assert!(args.contains("-accel tcg"), "{args}");
}

#[test]
fn serial_log_parsing_skips_interleaved_kernel_messages() {
    let log = qemu::SerialLog {
        text: "noise\r\nBOOT-JSON-BEGIN\r\n{\"a\": [1.5,\r\n[    3.141592] usb 1-1: new device\r\n 2]}\r\nBOOT-JSON-END\r\n\
               MOUNTS-BEGIN\nviver-root / overlay rw,lowerdir=/a 0 0\n[   12.000001] random\nproc /proc proc rw 0 0\nMOUNTS-END\n\
               PERSIST: boot-1 boot-2\n"
            .to_string(),
    };
    assert_eq!(log.boot_json().unwrap(), serde_json::json!({"a": [1.5, 2]}));
    let mounts = log.mounts();
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert_eq!(log.mount_at("/").unwrap().fstype, "overlay");
    assert_eq!(log.line_after("PERSIST: ").as_deref(), Some("boot-1 boot-2"));
    let empty = qemu::SerialLog { text: "BOOT-JSON-MISSING\nBOOT-JSON-BEGIN\n\nBOOT-JSON-END\n".into() };
    assert!(empty.boot_json().is_err());
}

/// The Rust wrappers of mkdisk produce what they promise (checked with blkid/sfdisk,
/// no VM needed).
#[test]
fn mkdisk_wrappers_make_the_promised_layouts() {
    let dir = temp_dir("harness-mkdisk");
    let content = dir.join("content");
    std::fs::create_dir_all(&content).unwrap();
    let image = dir.join("img.squashfs");
    let manifest = dir.join("img.toml");
    std::fs::write(&image, b"not really squashfs").unwrap();
    std::fs::write(&manifest, b"name = \"img\"\n").unwrap();
    qemu::viver_medium_dir(&image, &manifest, &content, "demo");
    assert!(content.join("viver/demo.squashfs").is_file() && content.join("viver/demo.toml").is_file());

    let blkid = |path: &std::path::Path, offset: u64| -> String {
        let out = std::process::Command::new("blkid")
            .args(["-p", "-O", &offset.to_string(), "-s", "TYPE", "-o", "value"])
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mbr = qemu::DiskOpts { mbr: true, ..Default::default() };
    let ext4 = qemu::disk_ext4(&content, &dir.join("e.img"), &mbr);
    assert_eq!(blkid(&ext4, 1024 * 1024), "ext4");
    let vfat = qemu::disk_vfat(&content, &dir.join("v.img"), &qemu::DiskOpts::default());
    assert_eq!(blkid(&vfat, 0), "vfat");
    let iso = qemu::disk_iso(&content, &dir.join("i.iso"));
    assert_eq!(blkid(&iso, 0), "iso9660");
    let garbage = qemu::disk_garbage(&dir.join("g.img"), 2, true);
    let table = std::process::Command::new("sfdisk").arg("-d").arg(&garbage).output().unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("start=        2048"), "one partition at 1 MiB");
}

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
    let log = Vm::new("harness-boot")
        .kernel(qemu::kernel())
        .initrd(&initrd)
        .run(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let wall = started.elapsed();

    assert!(log.contains("Run /init as init process"), "kernel did not start /init:\n{}", log.tail(30));
    let uptime = log
        .line_after("HARNESS-INIT-UP uptime=")
        .unwrap_or_else(|| panic!("marker missing:\n{}", log.tail(30)));
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
    let mut running =
        Vm::new("harness-hang").kernel(qemu::kernel()).initrd(&initrd).spawn().unwrap_or_else(|e| panic!("{e}"));
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

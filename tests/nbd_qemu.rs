//! The NBD building blocks against the real kernel driver: a busybox initramfs with
//! nbd.ko and the static `viver`, a SquashFS image on a virtio disk; the guest runs
//! `viver nbd attach --file /dev/vda` (netlink CONNECT + the server on a socketpair),
//! reads the device raw (throughput), mounts it as squashfs, checks a file's bytes and
//! `viver nbd detach`es it (netlink DISCONNECT, the server sees the end).

mod qemu;

use qemu::{busybox_initramfs, make_cpio, temp_dir, viver_bin, Vm};
use std::process::Command;
use std::time::Duration;

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in /modules/*.ko; do insmod $m; done
i=0; while [ ! -e /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
/bin/viver nbd attach --file /dev/vda --device /dev/nbd0 > /tmp/attach.out 2>&1 &
ATTACH=$!
i=0; while [ "$(cat /sys/block/nbd0/size 2>/dev/null)" = "0" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "NBD-SIZE-SECTORS $(cat /sys/block/nbd0/size) RO $(cat /sys/block/nbd0/ro)"
t0=$(cut -d' ' -f1 /proc/uptime)
dd if=/dev/nbd0 of=/dev/null bs=1M 2>/tmp/dd.err
t1=$(cut -d' ' -f1 /proc/uptime)
echo "NBD-RAW-READ start=$t0 end=$t1 bytes=$(blockdev --getsize64 /dev/nbd0)"
if dd if=/dev/zero of=/dev/nbd0 bs=4096 count=1 2>/dev/null; then echo NBD-WRITE-ACCEPTED; else echo NBD-WRITE-REFUSED; fi
mount -t squashfs -o ro /dev/nbd0 /mnt && echo NBD-MOUNTED
echo "NBD-HELLO $(cat /mnt/hello.txt)"
echo "NBD-BIG-SHA $(sha256sum /mnt/big.bin | cut -d' ' -f1)"
umount /mnt
# The server dies; a read waits for the dead connection's replacement (RECONFIGURE).
kill -9 $ATTACH; wait $ATTACH 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
(sleep 2; /bin/viver nbd attach --file /dev/vda --device /dev/nbd0 --reconnect > /tmp/attach2.out 2>&1) &
echo "NBD-AFTER-RECONNECT $(dd if=/dev/nbd0 bs=4096 skip=1000 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)"
echo "NBD-DIRECT $(dd if=/dev/vda bs=4096 skip=1000 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)"
/bin/viver nbd detach /dev/nbd0 && echo NBD-DETACH-OK
i=0; while [ -z "$(cat /tmp/attach2.out 2>/dev/null | grep DETACHED)" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
cat /tmp/attach.out /tmp/attach2.out
echo "NBD-SIZE-AFTER $(cat /sys/block/nbd0/size)"
echo NBD-TEST-DONE
poweroff -f
"#;

fn sha256_hex(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn nbd_attach_file_mount_squashfs_detach_in_vm() {
    let dir = temp_dir("nbd-qemu-file");
    let content = dir.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("hello.txt"), "VIVER-NBD-CONTENT-42\n").unwrap();
    // 16 MiB that do not compress: the raw read moves real bytes.
    let mut state = 0x1234_5678_9abc_def1u64;
    let big: Vec<u8> = (0..16 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(content.join("big.bin"), &big).unwrap();
    let image = dir.join("image.squashfs");
    let status =
        Command::new("mksquashfs").arg(&content).arg(&image).args(["-comp", "gzip", "-noappend", "-quiet", "-all-root"]).status().unwrap();
    assert!(status.success());
    let big_sha = sha256_hex(&content.join("big.bin"));
    let image_size = std::fs::metadata(&image).unwrap().len();

    let initrd = busybox_initramfs(&dir, INIT, &["virtio_pci", "virtio_blk", "nbd", "squashfs"]);
    std::fs::copy(viver_bin(), dir.join("initramfs-root/bin/viver")).unwrap();
    make_cpio(&dir.join("initramfs-root"), &initrd).unwrap();

    let log = Vm::new("nbd-qemu-file").kernel(qemu::kernel()).initrd(&initrd).disk_virtio(&image).run(Duration::from_secs(300)).unwrap();
    let tail = log.tail(40);
    assert!(log.contains("NBD-TEST-DONE"), "{tail}");
    assert!(log.contains("NBD-ATTACHED /dev/nbd0"), "{tail}");
    assert!(log.contains("NBD-MOUNTED"), "{tail}");
    assert_eq!(log.line_after("NBD-HELLO ").as_deref().map(str::trim), Some("VIVER-NBD-CONTENT-42"), "{tail}");
    assert_eq!(log.line_after("NBD-BIG-SHA ").as_deref().map(str::trim), Some(big_sha.as_str()), "{tail}");
    assert!(log.contains("NBD-WRITE-REFUSED"), "{tail}");
    assert!(log.contains("NBD-DETACH-OK"), "{tail}");
    let reconnected = log.line_after("NBD-AFTER-RECONNECT ").unwrap_or_default();
    assert!(!reconnected.is_empty() && Some(reconnected) == log.line_after("NBD-DIRECT "), "{tail}");
    assert!(log.contains("NBD-DETACHED"), "{tail}");
    assert_eq!(log.line_after("NBD-SIZE-AFTER ").as_deref().map(str::trim), Some("0"), "{tail}");
    let raw = log.line_after("NBD-RAW-READ ").unwrap_or_default();
    let field = |k: &str| -> f64 { raw.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    let (secs, bytes) = (field("end=") - field("start="), field("bytes="));
    assert_eq!(bytes as u64, image_size / 512 * 512, "{tail}");
    eprintln!(
        "NBD raw read in the VM (TCG): {:.1} MiB in {secs:.2} s = {:.1} MiB/s",
        bytes / 1048576.0,
        bytes / 1048576.0 / secs.max(0.01)
    );
}

const INIT_URL: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in /modules/*.ko; do insmod $m; done
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ifconfig lo up
ifconfig eth0 10.77.0.2 netmask 255.255.255.0 up
/bin/viver nbd attach --url http://10.77.0.1:8080/image.squashfs --device /dev/nbd0 > /tmp/attach.out 2>&1 &
ATTACH=$!
i=0; while [ "$(cat /sys/block/nbd0/size 2>/dev/null)" = "0" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
mount -t squashfs -o ro /dev/nbd0 /mnt && echo NBD-MOUNTED
echo "NBD-HELLO $(cat /mnt/hello.txt)"
umount /mnt
/bin/viver nbd detach /dev/nbd0 && echo NBD-DETACH-OK
i=0; while kill -0 $ATTACH 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
cat /tmp/attach.out
echo NBD-TEST-DONE
poweroff -f
"#;

fn sh(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{args:?}");
}

/// `--url` inside a private network namespace of this test (bridge + tap, busybox httpd
/// on the bridge): the guest mounts the SquashFS over HTTP and reads one small file; only
/// the chunks it touched cross the link.
#[test]
fn nbd_attach_url_lazy_in_vm() {
    let dir = temp_dir("nbd-qemu-url");
    let content = dir.join("content");
    let www = dir.join("www");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(content.join("hello.txt"), "VIVER-NBD-OVER-HTTP\n").unwrap();
    let mut state = 0x5555_1234_9abc_def1u64;
    let big: Vec<u8> = (0..24 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(content.join("big.bin"), &big).unwrap();
    let image = www.join("image.squashfs");
    let ok = Command::new("mksquashfs")
        .arg(&content)
        .arg(&image)
        .args(["-comp", "gzip", "-noappend", "-quiet", "-all-root"])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let image_size = std::fs::metadata(&image).unwrap().len();
    let initrd = busybox_initramfs(&dir, INIT_URL, &["virtio_pci", "virtio_net", "nbd", "squashfs"]);
    std::fs::copy(viver_bin(), dir.join("initramfs-root/bin/viver")).unwrap();
    make_cpio(&dir.join("initramfs-root"), &initrd).unwrap();

    // Everything below runs in a network namespace of its own thread (and its children).
    let log = std::thread::spawn(move || {
        // SAFETY: unshare of this thread's network namespace only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        sh(&["ip", "link", "set", "lo", "up"]);
        sh(&["ip", "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "addr", "add", "10.77.0.1/24", "dev", "br0"]);
        sh(&["ip", "link", "set", "br0", "up"]);
        sh(&["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"]);
        sh(&["ip", "link", "set", "tap0", "master", "br0", "up"]);
        let mut httpd = Command::new("busybox").args(["httpd", "-f", "-p", "10.77.0.1:8080", "-h"]).arg(&www).spawn().unwrap();
        let log = Vm::new("nbd-qemu-url")
            .kernel(qemu::kernel())
            .initrd(&initrd)
            .arg("-netdev")
            .arg("tap,id=n0,ifname=tap0,script=no,downscript=no")
            .arg("-device")
            .arg("virtio-net-pci,netdev=n0,mac=52:54:00:77:00:02")
            .run(Duration::from_secs(300));
        let _ = httpd.kill();
        let _ = httpd.wait();
        log
    })
    .join()
    .unwrap()
    .unwrap();
    let tail = log.tail(40);
    assert!(log.contains("NBD-TEST-DONE"), "{tail}");
    assert!(log.contains("NBD-MOUNTED"), "{tail}");
    assert_eq!(log.line_after("NBD-HELLO ").as_deref().map(str::trim), Some("VIVER-NBD-OVER-HTTP"), "{tail}");
    assert!(log.contains("NBD-DETACH-OK"), "{tail}");
    let detached = log.line_after("NBD-DETACHED ").unwrap_or_default();
    let fetched: u64 = detached.split_whitespace().find_map(|w| w.strip_prefix("fetched=")).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(fetched > 0 && fetched < image_size / 2, "lazy: fetched {fetched} of {image_size}\n{tail}");
    eprintln!("NBD over HTTP in the VM: mount + one small file fetched {fetched} of {image_size} bytes");
}

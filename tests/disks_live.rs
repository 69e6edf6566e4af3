//! The whole disks chain on a real kernel: scan `/sys`, make the node, probe, mount
//! read-only, measure, rank. It needs real block devices and root, so it runs inside
//! a QEMU guest (the qemu harness copies this static test binary into an initramfs
//! and runs it with `--ignored --nocapture`); on the build host it is ignored, visibly.
//!
//! Expectations come from the guest's environment: `VIVER_DISKS_EXPECT` lists
//! `fstype[:label]@class` entries, e.g. `ext4:VIVER_E4@virtio squashfs@nvme`: for each,
//! exactly one device of that class must carry that filesystem, and it must mount.
//! Kernel names are not used: `sda`/`sdb` swap between boots as AHCI ports probe in
//! parallel.

use std::path::Path;
use viver::disks::blockdev::{ensure_node, scan};
use viver::disks::mount::mount_readonly;
use viver::disks::rank::{measure_read_mbps, order_with_speed};
use viver::disks::superblock::probe_path;

#[test]
#[ignore = "needs real block devices and root: run inside the QEMU guest"]
fn live_scan_probe_mount_rank() {
    let expect = std::env::var("VIVER_DISKS_EXPECT").expect("VIVER_DISKS_EXPECT not set");
    let devices = scan(Path::new("/sys")).unwrap();
    let mut found = Vec::new();
    for dev in &devices {
        let node = ensure_node(dev, Path::new("/dev")).unwrap();
        let fs = probe_path(&node).unwrap();
        let mbps = measure_read_mbps(&node, 4 << 20).unwrap();
        println!(
            "LIVE {} class={} transport={} rot={} rm={} ro={} size={} parent={:?} fs={:?} mbps={mbps:.1}",
            dev.name, dev.class, dev.transport, dev.rotational, dev.removable, dev.read_only, dev.size_bytes, dev.parent, fs
        );
        found.push((dev.clone(), fs, Some(mbps)));
    }
    for entry in expect.split_whitespace() {
        let (fs_spec, class) = entry.split_once('@').unwrap();
        let (fstype, label) = fs_spec.split_once(':').map_or((fs_spec, None), |(t, l)| (t, Some(l)));
        let matching: Vec<_> = found
            .iter()
            .filter(|(d, f, _)| {
                d.class.name() == class
                    && f.as_ref().is_some_and(|f| f.kind.mount_type() == fstype && (label.is_none() || f.label.as_deref() == label))
            })
            .collect();
        assert_eq!(matching.len(), 1, "{entry}: expected one device, found {}", matching.len());
        let (dev, fs, _) = matching[0];
        let fs = fs.as_ref().unwrap();
        let name = &dev.name;
        let target = Path::new("/mnt").join(name);
        std::fs::create_dir_all(&target).unwrap();
        mount_readonly(&dev.dev_path, fs, &target).unwrap();
        let entries: Vec<_> = std::fs::read_dir(&target).unwrap().flatten().map(|e| e.file_name()).collect();
        println!("LIVE mounted {name} ({fstype}) on {}: {entries:?}", target.display());
        assert!(std::fs::write(target.join("probe-write"), b"x").is_err(), "{name} mounted writable");
        nix::mount::umount(&target).unwrap();
    }
    order_with_speed(&mut found, |(d, f, s)| (d, f.as_ref(), *s), None);
    let order: Vec<&str> = found.iter().map(|(d, _, _)| d.name.as_str()).collect();
    println!("LIVE order {order:?}");
}

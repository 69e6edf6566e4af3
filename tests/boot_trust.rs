//! Verified images at boot (issue 9): signed manifests checked against the initrd's
//! trusted keys, copies refused with their reason and the next copy tried, and the image
//! mounted through dm-verity, so a changed byte read after the hand-over is an I/O error.
//! Real kernel, real kit images, real QEMU devices; checked on the serial console and in
//! boot.json as the booted test root prints them.

mod qemu;

use qemu::{SerialLog, Vm};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use viver::image::signature::PublicKey;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

struct Artifacts {
    dir: PathBuf,
    /// No trusted keys.
    initrd_plain: PathBuf,
    /// Trusts `ours` only.
    initrd_trusting: PathBuf,
    ours: String,
    theirs: String,
    /// The test root's image, signed by ours / by theirs / unsigned (the same image
    /// bytes: only the manifests differ).
    signed_ours: PathBuf,
    signed_theirs: PathBuf,
    unsigned: PathBuf,
}

fn key_id(public: &Path) -> String {
    PublicKey::parse(&std::fs::read_to_string(public).unwrap(), "test").unwrap().id.to_string()
}

/// A layout `viver/testroot.squashfs` + manifest of `root`, made with `extra` kit options.
fn layout(dir: &Path, name: &str, root: &Path, extra: &[&str]) -> PathBuf {
    let layout = dir.join(name);
    let image = layout.join("viver/testroot.squashfs");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    let mut args = vec!["image", root.to_str().unwrap(), "-o", image.to_str().unwrap(), "--name", "testroot", "--compressor", "zstd"];
    args.extend_from_slice(extra);
    qemu::kit(&args);
    layout
}

fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let dir = qemu::temp_dir("trust-artifacts");
        let key = |name: &str| {
            qemu::kit(&["keygen", "-o", dir.join(name).to_str().unwrap()]);
            dir.join(format!("{name}.pub"))
        };
        let (ours_pub, theirs_pub) = (key("ours"), key("theirs"));
        let modules = qemu::modules_dir();
        let initrd_plain = dir.join("initrd-plain.img");
        qemu::kit(&["initrd", "--modules", modules.to_str().unwrap(), "-o", initrd_plain.to_str().unwrap()]);
        let initrd_trusting = dir.join("initrd-trusting.img");
        qemu::kit(&[
            "initrd",
            "--modules",
            modules.to_str().unwrap(),
            "-o",
            initrd_trusting.to_str().unwrap(),
            "--trust",
            ours_pub.to_str().unwrap(),
        ]);
        let root = qemu::testroot_dir();
        let ours_key = dir.join("ours.key");
        let theirs_key = dir.join("theirs.key");
        Artifacts {
            signed_ours: layout(&dir, "signed-ours", &root, &["--sign", ours_key.to_str().unwrap()]),
            signed_theirs: layout(&dir, "signed-theirs", &root, &["--sign", theirs_key.to_str().unwrap()]),
            unsigned: layout(&dir, "unsigned", &root, &[]),
            ours: key_id(&ours_pub),
            theirs: key_id(&theirs_pub),
            initrd_plain,
            initrd_trusting,
            dir,
        }
    })
}

fn disk(test: &str, kind: &str, dir: &Path) -> PathBuf {
    let out = qemu::target_dir().join("qemu-tmp").join(format!("{test}-{kind}.img"));
    qemu::mkdisk_ok(&[kind, dir.to_str().unwrap(), out.to_str().unwrap(), "--mbr"]);
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

fn rejected(report: &Value) -> Vec<(String, String)> {
    report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "rejected")
        .map(|c| (c["device"].as_str().unwrap_or_default().to_string(), c["reason"].as_str().unwrap_or_default().to_string()))
        .collect()
}

/// The image is mounted from the verity device and the report says so.
fn assert_through_verity(log: &SerialLog, report: &Value) {
    let verity = &report["image"]["trust"]["verity"];
    let device = verity["device"].as_str().unwrap_or_else(|| panic!("no verity device: {}", report["image"]));
    assert!(device.starts_with("/dev/dm-"), "{verity}");
    assert_eq!(verity["root_hash"].as_str().unwrap().len(), 64, "{verity}");
    let mount = log.mount_at("/run/viver/image").unwrap_or_else(|| panic!("image not mounted:\n{}", log.tail(40)));
    assert_eq!((mount.device.as_str(), mount.fstype.as_str()), (device, "squashfs"), "{mount:?}");
    assert!(qemu::module_loaded(report, "dm_verity"), "{}", report["hardware"]["loaded"]);
    let after = report["image"]["trust"]["checked_after_hand_over"].as_str().unwrap();
    assert!(after.starts_with("every block read, by dm-verity"), "{after}");
}

#[test]
fn a_signed_image_boots_with_its_key_in_the_initrd_through_dm_verity() {
    let a = artifacts();
    let hdd = disk("trust-signed", "ext4", &a.signed_ours);
    let (log, report) = boot_ok(vm("trust-signed", &a.initrd_trusting).disk_virtio(&hdd));
    let trust = &report["image"]["trust"];
    assert_eq!(trust["authenticated"], true, "{trust}");
    assert_eq!(trust["key_id"], a.ours.as_str(), "{trust}");
    assert_eq!(trust["trusted_keys"], serde_json::json!([a.ours]), "{trust}");
    let before: Vec<&str> = trust["checked_before_hand_over"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(before[0].starts_with(&format!("manifest signature by trusted key {}", a.ours)), "{before:?}");
    assert!(before.iter().any(|b| b.contains("against the manifest (viver.verify=boot")), "{before:?}");
    assert!(before.iter().any(|b| b.starts_with("dm-verity superblock and top hash block")), "{before:?}");
    assert_through_verity(&log, &report);
    assert!(log.contains("WRITE-OK"), "{}", log.tail(30));
}

#[test]
fn unsigned_and_foreign_copies_are_refused_and_the_signed_copy_on_a_slower_medium_boots() {
    let a = artifacts();
    let unsigned = disk("trust-refuse-unsigned", "ext4", &a.unsigned);
    let foreign = disk("trust-refuse-theirs", "ext4", &a.signed_theirs);
    let usb = disk("trust-refuse-ours", "vfat", &a.signed_ours);
    let (log, report) = boot_ok(vm("trust-refuse", &a.initrd_trusting).disk_virtio(&unsigned).disk_virtio(&foreign).usb_stick_xhci(&usb));
    assert_eq!(report["image"]["media"], "usb", "{}", report["candidates"]);
    assert_eq!(report["image"]["trust"]["key_id"], a.ours.as_str());
    let mut reasons = rejected(&report);
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, "/dev/vda1");
    assert!(reasons[0].1.starts_with("unsigned: the manifest has no [signature]"), "{reasons:?}");
    assert_eq!(reasons[1].0, "/dev/vdb1");
    assert!(reasons[1].1.starts_with(&format!("signed by unknown key {} (this initrd trusts {})", a.theirs, a.ours)), "{reasons:?}");
    assert_through_verity(&log, &report);
}

/// No keys in the initrd: any image boots, and the report says it was not authenticated.
/// One byte of a file's data changed after the kit made the tree: the chunk checks at
/// viver.verify=boot do not read it (it is neither metadata nor init's), so the boot
/// goes on; reading the file in the booted system is an I/O error. The file is random
/// (stored uncompressed), so no decompressor could notice: only dm-verity can.
/// The test root plus `/blob.bin`, 2 MB of pseudo-random bytes (incompressible, so
/// SquashFS stores its blocks as they are). Made once for the tests that share it.
fn blob_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = artifacts().dir.join("blob-root");
        if !root.exists() {
            qemu::run_ok(Command::new("cp").arg("-a").arg(qemu::testroot_dir()).arg(&root));
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let blob: Vec<u8> = (0..2_000_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            std::fs::write(root.join("blob.bin"), blob).unwrap();
        }
        root
    })
}

/// An image of [`blob_root`] made with `extra` kit options, then one byte in the middle
/// of `/blob.bin`'s data changed.
fn blob_layout(name: &str, extra: &[&str]) -> PathBuf {
    let a = artifacts();
    let layout_dir = a.dir.join(name);
    if !layout_dir.exists() {
        layout(&a.dir, name, blob_root(), extra);
        let image = layout_dir.join("viver/testroot.squashfs");
        let mut bytes = std::fs::read(&image).unwrap();
        let offset = {
            let archive = viver::image::squashfs::Archive::open(&bytes).unwrap();
            let (_, blob) = archive.lookup("/blob.bin").unwrap();
            let extents = archive.extents(&blob).unwrap();
            let middle = extents[extents.len() / 2];
            middle.start + middle.len / 2
        };
        bytes[offset as usize] ^= 0x01;
        std::fs::write(&image, &bytes).unwrap();
    }
    layout_dir
}

#[test]
fn a_changed_byte_in_file_data_boots_and_reading_the_file_gives_eio() {
    let a = artifacts();
    let layout_dir = blob_layout("blob", &[]);
    let hdd = disk("trust-eio", "ext4", &layout_dir);
    let (log, report) = boot_ok(vm("trust-eio", &a.initrd_plain).disk_virtio(&hdd).append("testroot.cmd=cat,/blob.bin,>/dev/null"));
    let trust = &report["image"]["trust"];
    assert_eq!(trust["authenticated"], false, "{trust}");
    assert!(trust["key_id"].is_null() && trust["trusted_keys"] == serde_json::json!([]), "{trust}");
    assert_eq!(report["image"]["verification"]["complete"], false, "{}", report["image"]);
    assert_through_verity(&log, &report);
    let out = log.section("CMD-BEGIN cat /blob.bin >/dev/null", "CMD-END rc=1").unwrap_or_else(|| panic!("{}", log.tail(30)));
    assert!(out.iter().any(|l| l.trim() == "cat: read error: Input/output error"), "{out:?}");
}

/// A manifest whose verity root hash is not the tree's: refused before the kernel is told
/// anything, with the reason, and the good copy on the USB stick boots.
#[test]
fn a_manifest_with_a_wrong_root_hash_is_refused_and_the_next_copy_boots() {
    let a = artifacts();
    let bad = a.dir.join("wrong-root");
    if !bad.exists() {
        qemu::run_ok(Command::new("cp").arg("-a").arg(&a.unsigned).arg(&bad));
        let manifest = bad.join("viver/testroot.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let m = viver::image::manifest::Manifest::parse(&text, "m").unwrap();
        let root = m.verity.unwrap().root;
        let wrong: String = root.chars().rev().collect();
        std::fs::write(&manifest, text.replace(&format!("root = \"{root}\""), &format!("root = \"{wrong}\""))).unwrap();
    }
    let hdd = disk("trust-wrong-root", "ext4", &bad);
    let usb = disk("trust-wrong-root", "vfat", &a.unsigned);
    let (log, report) = boot_ok(vm("trust-wrong-root", &a.initrd_plain).disk_virtio(&hdd).usb_stick_xhci(&usb));
    assert_eq!(report["image"]["media"], "usb", "{}", report["candidates"]);
    let reasons = rejected(&report);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].1.contains("is not the hash of the tree's top block"), "{reasons:?}");
    assert_through_verity(&log, &report);
}

/// The control of the test above: the same change in an image made with `--no-verity`
/// reads back without an error (different bytes, silently), so the I/O error above is
/// dm-verity's doing.
#[test]
fn without_verity_the_same_changed_byte_reads_back_silently() {
    let a = artifacts();
    let layout_dir = blob_layout("blob-noverity", &["--no-verity"]);
    let hdd = disk("trust-noverity", "ext4", &layout_dir);
    let (log, report) = boot_ok(vm("trust-noverity", &a.initrd_plain).disk_virtio(&hdd).append("testroot.cmd=cat,/blob.bin,>/dev/null"));
    assert!(report["image"]["trust"]["verity"].is_null(), "{}", report["image"]);
    assert!(report["image"]["trust"]["checked_after_hand_over"].as_str().unwrap().starts_with("nothing"));
    let out = log.section("CMD-BEGIN cat /blob.bin >/dev/null", "CMD-END rc=0");
    assert!(out.is_some_and(|o| o.is_empty()), "{}", log.tail(30));
}

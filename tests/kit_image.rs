//! `viver kit image`: what goes into the image and what stays out, the manifest, bad input.
mod kit_common;
use kit_common::*;
use sha2::{Digest, Sha256};
use viver::image::manifest::Manifest;

#[test]
fn image_leaves_out_what_must_not_travel_and_adapts_the_copy() {
    let dir = scratch("image-contents");
    let root = fake_root(&dir);
    let before_fstab = std::fs::read(root.join("etc/fstab")).unwrap();
    // The output inside ROOT must not end up inside itself.
    let out_dir = root.join("var/lib/viver");
    std::fs::create_dir_all(&out_dir).unwrap();
    let image = out_dir.join("debian.squashfs");
    run_ok(viver().arg("image").arg(&root).arg("-o").arg(&image).args(["--compressor", "gzip"]));

    let list = unsquashfs_list(&image);
    for kept in [
        "/usr/bin/hello",
        "/etc/hostname",
        "/etc/ssh/sshd_config",
        "/proc",
        "/sys",
        "/dev",
        "/run",
        "/tmp",
        "/etc/fstab",
        "/etc/machine-id",
    ] {
        assert!(list.iter().any(|l| l == kept), "{kept} missing from {list:?}");
    }
    for gone in [
        "/proc/1",
        "/sys/kernel",
        "/run/lock",
        "/tmp/junk",
        "/dev/null-ish",
        "/swapfile",
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssh/ssh_host_ed25519_key.pub",
        "/var/lib/viver/debian.squashfs",
    ] {
        assert!(!list.iter().any(|l| l == gone), "{gone} must not be in the image");
    }
    assert!(unsquashfs_cat(&image, "etc/machine-id").is_empty());
    let fstab = String::from_utf8(unsquashfs_cat(&image, "etc/fstab")).unwrap();
    assert!(fstab.contains("#UUID=1234-abcd / ext4"), "{fstab}");
    assert!(fstab.contains("#/dev/sda2 /home"), "{fstab}");
    assert!(fstab.contains("#/swapfile none swap"), "{fstab}");
    assert!(fstab.lines().any(|l| l == "tmpfs /tmp tmpfs defaults 0 0"), "{fstab}");
    assert!(fstab.contains("viver: disabled"));

    // ROOT untouched.
    assert_eq!(std::fs::read(root.join("etc/fstab")).unwrap(), before_fstab);
    assert_eq!(std::fs::read_to_string(root.join("etc/machine-id")).unwrap(), "0123456789abcdef0123456789abcdef\n");
    assert!(root.join("etc/ssh/ssh_host_ed25519_key").exists());

    // Manifest beside it, matching the bytes.
    let m = Manifest::load(&out_dir.join("debian.toml")).unwrap();
    let bytes = std::fs::read(&image).unwrap();
    let hex: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(m.checksum, format!("sha256:{hex}"));
    assert_eq!(m.id, &hex[..16]);
    assert_eq!(m.size, bytes.len() as u64);
    assert_eq!(m.name, "debian");
    assert_eq!(m.image, "debian.squashfs");
    assert_eq!(m.compressor, "gzip");
    // Format 3: BitTorrent v2 piece hashes over the whole file (the appended dm-verity
    // tree included), recomputed here from the bytes the plain way.
    assert_eq!(m.format, 3);
    assert!(m.verity.as_ref().is_some_and(|v| v.hash_offset < m.size), "{m:?}");
    let chunks = m.chunks.as_ref().expect("format 3 has [chunks]");
    assert_eq!(chunks.size, 256 << 10);
    assert_eq!(chunks.hashes.len() as u64, (bytes.len() as u64).div_ceil(chunks.size));
    let mut level: Vec<[u8; 32]> = bytes.chunks(16384).map(|b| Sha256::digest(b).into()).collect();
    level.resize(level.len().next_power_of_two(), [0; 32]);
    while level.len() > 1 {
        level = level.chunks(2).map(|p| Sha256::digest([p[0], p[1]].concat()).into()).collect();
    }
    let root: String = level[0].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(chunks.root, format!("sha256:{root}"));
    assert_eq!(m.kernels, vec!["6.1.0-0-fake".to_string()]);
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn same_tree_and_source_date_epoch_give_identical_images() {
    let dir = scratch("image-repro");
    let root = fake_root(&dir);
    let a = dir.join("a.squashfs");
    let b = dir.join("b.squashfs");
    run_ok(viver().env("SOURCE_DATE_EPOCH", "1700000000").arg("image").arg(&root).arg("-o").arg(&a));
    run_ok(viver().env("SOURCE_DATE_EPOCH", "1700000000").arg("image").arg(&root).arg("-o").arg(&b));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let m = Manifest::load(&dir.join("a.toml")).unwrap();
    assert_eq!(m.created, 1_700_000_000);
    assert_eq!(m.compressor, "zstd");
}

#[test]
fn rejects_missing_or_non_linux_roots_without_output() {
    let dir = scratch("image-bad");
    let out = dir.join("x.squashfs");
    let r = viver().arg("image").arg(dir.join("nope")).arg("-o").arg(&out).output().unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("does not exist"));
    std::fs::create_dir_all(dir.join("notlinux/etc")).unwrap();
    let r = viver().arg("image").arg(dir.join("notlinux")).arg("-o").arg(&out).output().unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("does not look like a Linux root"));
    assert!(!out.exists());
    assert!(!dir.join("x.toml").exists());
}

#[test]
fn missing_output_directory_is_refused_with_no_output() {
    let dir = scratch("image-fail");
    let root = fake_root(&dir);
    // An output directory that does not exist is refused before any work.
    let out = dir.join("missing-dir/x.squashfs");
    let r = viver().arg("image").arg(&root).arg("-o").arg(&out).output().unwrap();
    assert!(!r.status.success());
    assert!(!out.exists());
}

#[test]
fn install_image_copies_image_and_manifest() {
    let dir = scratch("install-image");
    let root = fake_root(&dir);
    let image = dir.join("sys.squashfs");
    run_ok(viver().arg("image").arg(&root).arg("-o").arg(&image));
    let stick = dir.join("stick");
    std::fs::create_dir_all(&stick).unwrap();
    run_ok(viver().arg("install-image").arg(&image).arg(&stick));
    assert_eq!(std::fs::read(stick.join("viver/sys.squashfs")).unwrap(), std::fs::read(&image).unwrap());
    Manifest::load(&stick.join("viver/sys.toml")).unwrap();
    // A corrupted image is refused.
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&image, bytes).unwrap();
    std::fs::remove_dir_all(stick.join("viver")).unwrap();
    let r = viver().arg("install-image").arg(&image).arg(&stick).output().unwrap();
    assert!(!r.status.success());
    assert!(!stick.join("viver/sys.squashfs").exists());
}

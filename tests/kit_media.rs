//! `viver kit media`: ISO listing with xorriso, raw disk with MBR boot flag and FAT + syslinux.
mod kit_common;
use kit_common::*;
use std::process::Command;

fn image_and_initrd(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = fake_root(dir);
    let image = dir.join("debian.squashfs");
    run_ok(viver().arg("image").arg(&root).arg("-o").arg(&image));
    let initrd = dir.join("initrd.img");
    std::fs::write(&initrd, b"07070100000000").unwrap();
    (image, initrd)
}

#[test]
fn iso_holds_kernel_initrd_loader_and_image() {
    let dir = scratch("media-iso");
    let (image, initrd) = image_and_initrd(&dir);
    let iso = dir.join("viver.iso");
    run_ok(
        viver()
            .args(["media", "--kind", "iso", "--append", "viver.debug"])
            .arg("--kernel")
            .arg(vmlinuz())
            .arg("--initrd")
            .arg(&initrd)
            .arg("--image")
            .arg(&image)
            .arg("-o")
            .arg(&iso),
    );
    let out = run_ok(Command::new("xorriso").arg("-indev").arg(&iso).args(["-find", "/", "-type", "f"]));
    let list = stdout(&out);
    for f in [
        "/boot/vmlinuz",
        "/boot/initrd.img",
        "/isolinux/isolinux.bin",
        "/isolinux/ldlinux.c32",
        "/isolinux/isolinux.cfg",
        "/viver/debian.squashfs",
        "/viver/debian.toml",
    ] {
        assert!(list.contains(&format!("'{f}'")), "{f} not in {list}");
    }
    let cfg = run_ok(
        Command::new("xorriso")
            .arg("-osirrox")
            .arg("on")
            .arg("-indev")
            .arg(&iso)
            .args(["-extract", "/isolinux/isolinux.cfg"])
            .arg(dir.join("isolinux.cfg")),
    );
    drop(cfg);
    let cfg = std::fs::read_to_string(dir.join("isolinux.cfg")).unwrap();
    // The medium names the image it carries, by id, so that image is booted first.
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(image.with_extension("toml")).unwrap()).unwrap();
    let id = manifest["id"].as_str().unwrap();
    assert!(cfg.contains(&format!("append initrd=/boot/initrd.img console=ttyS0 console=tty0 viver.image={id} viver.debug")), "{cfg}");
    // isohybrid: an MBR signature so the same file boots from a USB stick.
    let bytes = std::fs::read(&iso).unwrap();
    assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
}

#[test]
fn usb_disk_has_bootable_mbr_and_fat_with_syslinux() {
    let dir = scratch("media-usb");
    let (image, initrd) = image_and_initrd(&dir);
    let disk = dir.join("usb.img");
    run_ok(
        viver()
            .args(["media", "--kind", "usb"])
            .arg("--kernel")
            .arg(vmlinuz())
            .arg("--initrd")
            .arg(&initrd)
            .arg("--image")
            .arg(&image)
            .arg("-o")
            .arg(&disk),
    );
    let bytes = std::fs::read(&disk).unwrap();
    assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
    assert_eq!(bytes[446], 0x80, "partition 1 bootable");
    assert_eq!(bytes[450], 0x0c, "FAT32 LBA");
    let start = u32::from_le_bytes(bytes[454..458].try_into().unwrap()) as u64;
    let sectors = u32::from_le_bytes(bytes[458..462].try_into().unwrap()) as u64;
    assert_eq!((start + sectors) * 512, bytes.len() as u64);
    let mbr_bin = std::fs::read("/usr/lib/syslinux/mbr/mbr.bin").unwrap();
    assert_eq!(&bytes[..mbr_bin.len().min(440)], &mbr_bin[..mbr_bin.len().min(440)]);
    let spec = format!("{}@@{}", disk.display(), start * 512);
    let out = run_ok(Command::new("mdir").env("MTOOLS_SKIP_CHECK", "1").args(["-a", "-b", "-/", "-i", &spec, "::/"]));
    let list = stdout(&out).to_lowercase();
    for f in [
        "::/syslinux/ldlinux.sys",
        "::/syslinux/ldlinux.c32",
        "::/syslinux/syslinux.cfg",
        "::/boot/vmlinuz",
        "::/boot/initrd.img",
        "::/viver/debian.squashfs",
        "::/viver/debian.toml",
    ] {
        assert!(list.contains(f), "{f} not in {list}");
    }
    let size = std::fs::metadata(&image).unwrap().len() + std::fs::metadata(vmlinuz()).unwrap().len();
    assert!(bytes.len() as u64 > size);
}

#[test]
fn boot_only_sd_card_has_no_image_and_bad_input_is_refused() {
    let dir = scratch("media-sd");
    let (_image, initrd) = image_and_initrd(&dir);
    let disk = dir.join("sd.img");
    run_ok(
        viver()
            .args(["media", "--kind", "sd", "--no-image"])
            .arg("--kernel")
            .arg(vmlinuz())
            .arg("--initrd")
            .arg(&initrd)
            .arg("-o")
            .arg(&disk),
    );
    let out = run_ok(Command::new("mdir").env("MTOOLS_SKIP_CHECK", "1").args([
        "-a",
        "-b",
        "-/",
        "-i",
        &format!("{}@@1048576", disk.display()),
        "::/",
    ]));
    assert!(!stdout(&out).to_lowercase().contains("viver/"));
    // A missing kernel: clear error, no output.
    let bad = dir.join("bad.iso");
    let r = viver()
        .args(["media", "--kind", "iso", "--no-image", "--kernel", "/nonexistent/vmlinuz"])
        .arg("--initrd")
        .arg(&initrd)
        .arg("-o")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("kernel /nonexistent/vmlinuz does not exist"));
    assert!(!bad.exists());
    // An image without its manifest.
    let lone = dir.join("lone.squashfs");
    std::fs::write(&lone, b"x").unwrap();
    let r = viver()
        .args(["media", "--kind", "iso"])
        .arg("--kernel")
        .arg(vmlinuz())
        .arg("--initrd")
        .arg(&initrd)
        .arg("--image")
        .arg(&lone)
        .arg("-o")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("manifest"));
}

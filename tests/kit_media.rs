//! `viver kit media`: ISO listing with xorriso (BIOS and EFI El Torito images), raw disk
//! with an active FAT32 partition + syslinux and an EFI system partition with Debian's
//! signed shim and GRUB; the kernel signature warning, --role, the iPXE files.
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

/// The ESP (an image file, or `disk@@offset`): Debian's signed shim as the removable
/// media loader, GRUB and MokManager beside it, byte for byte from the packages, and the
/// grub.cfg where the signed GRUB reads it. Returns grub.cfg.
fn esp_layout(spec: &str) -> String {
    let out = run_ok(Command::new("mdir").env("MTOOLS_SKIP_CHECK", "1").args(["-a", "-b", "-/", "-i", spec, "::/"]));
    let list = stdout(&out).to_lowercase();
    for f in ["::/efi/boot/bootx64.efi", "::/efi/boot/grubx64.efi", "::/efi/boot/mmx64.efi", "::/efi/debian/grub.cfg"] {
        assert!(list.contains(f), "{f} not on the ESP: {list}");
    }
    let read = |path: &str| {
        let out = run_ok(Command::new("mtype").env("MTOOLS_SKIP_CHECK", "1").args(["-i", spec, path]));
        out.stdout
    };
    assert_eq!(read("::/EFI/BOOT/BOOTX64.EFI"), std::fs::read("/usr/lib/shim/shimx64.efi.signed").unwrap());
    assert_eq!(read("::/EFI/BOOT/grubx64.efi"), std::fs::read("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed").unwrap());
    assert_eq!(read("::/EFI/BOOT/mmx64.efi"), std::fs::read("/usr/lib/shim/mmx64.efi.signed").unwrap());
    let cfg = String::from_utf8(read("::/EFI/debian/grub.cfg")).unwrap();
    assert!(cfg.contains("menuentry \"VIVER: boot image debian (id "), "the menu says what it boots: {cfg}");
    assert!(cfg.contains("initrd /boot/initrd.img\n"), "{cfg}");
    cfg
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
        "/efi/efiboot.img",
        "/viver/ipxe/undionly.kpxe",
        "/viver/ipxe/ipxe.efi",
        "/viver/ipxe/snponly.efi",
    ] {
        assert!(list.contains(&format!("'{f}'")), "{f} not in {list}");
    }
    // Two El Torito boot images: isolinux for BIOS, the FAT ESP image for UEFI, and a
    // GPT naming the ESP so the ISO on a stick boots on UEFI too.
    let report = run_ok(Command::new("xorriso").arg("-indev").arg(&iso).args(["-report_el_torito", "plain"]));
    let report = format!("{}{}", stdout(&report), String::from_utf8_lossy(&report.stderr));
    assert!(report.contains("BIOS") && report.contains("UEFI") && report.contains("/efi/efiboot.img"), "{report}");
    assert!(report.contains("GPT"), "{report}");
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
    let line = format!("console=ttyS0 console=tty0 viver.image={id} viver.role=boot-server viver.debug");
    assert!(cfg.contains(&format!("append initrd=/boot/initrd.img {line}\n")), "{cfg}");
    // The ESP image holds the signed boot chain and a grub.cfg with the same line.
    let esp = dir.join("efiboot.img");
    run_ok(Command::new("xorriso").arg("-osirrox").arg("on").arg("-indev").arg(&iso).args(["-extract", "/efi/efiboot.img"]).arg(&esp));
    let grub = esp_layout(&format!("{}", esp.display()));
    assert!(grub.contains(&format!("linux /boot/vmlinuz {line}\n")), "{grub}");
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
    // Partition 2: the EFI system partition, right after partition 1, up to the end.
    assert_eq!(bytes[462], 0x00, "the ESP is not the BIOS boot partition");
    assert_eq!(bytes[466], 0xef, "partition 2 is an EFI system partition");
    let esp_start = u32::from_le_bytes(bytes[470..474].try_into().unwrap()) as u64;
    let esp_sectors = u32::from_le_bytes(bytes[474..478].try_into().unwrap()) as u64;
    assert_eq!(esp_start, start + sectors);
    assert_eq!(esp_start % 2048, 0, "MiB-aligned");
    assert_eq!((esp_start + esp_sectors) * 512, bytes.len() as u64);
    let grub = esp_layout(&format!("{}@@{}", disk.display(), esp_start * 512));
    assert!(grub.contains("viver.role=boot-server"), "{grub}");
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
        "::/viver/ipxe/undionly.kpxe",
        "::/viver/ipxe/ipxe.efi",
        "::/viver/ipxe/snponly.efi",
    ] {
        assert!(list.contains(f), "{f} not in {list}");
    }
    // GRUB finds this partition by the tag file its grub.cfg names.
    let tag = grub.lines().find_map(|l| l.strip_prefix("search --no-floppy --set=root --file /")).unwrap().to_lowercase();
    assert!(list.contains(&format!("::/{tag}")), "{tag} not in {list}");
    assert!(!list.contains("::/efi/"), "the boot chain belongs on the ESP: {list}");
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
    let list = stdout(&out).to_lowercase();
    assert!(!list.contains("viver/debian") && list.contains("viver/ipxe/ipxe.efi"), "{list}");
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

/// The harness kernel with its signature cut off: what a self-built kernel looks like.
fn unsigned_copy(dir: &std::path::Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(vmlinuz()).unwrap();
    let pe = u32::from_le_bytes(bytes[0x3c..0x40].try_into().unwrap()) as usize;
    let opt = pe + 24;
    assert_eq!(u16::from_le_bytes(bytes[opt..opt + 2].try_into().unwrap()), 0x20b, "PE32+");
    let dir_entry = opt + 112 + 8 * 4;
    let offset = u32::from_le_bytes(bytes[dir_entry..dir_entry + 4].try_into().unwrap()) as usize;
    assert!(offset > 0, "the harness kernel is signed");
    bytes.truncate(offset);
    bytes[dir_entry..dir_entry + 8].fill(0);
    let out = dir.join("vmlinuz-unsigned");
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn an_unsigned_kernel_is_warned_about_and_still_written_a_signed_one_is_not() {
    let dir = scratch("media-unsigned");
    let (_image, initrd) = image_and_initrd(&dir);
    let make = |kernel: &std::path::Path, out: &str| {
        let r = viver()
            .args(["media", "--kind", "usb", "--no-image"])
            .arg("--kernel")
            .arg(kernel)
            .arg("--initrd")
            .arg(&initrd)
            .arg("-o")
            .arg(dir.join(out))
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        String::from_utf8_lossy(&r.stderr).to_string()
    };
    let signed = make(&vmlinuz(), "signed.img");
    assert!(!signed.contains("signature"), "{signed}");
    let unsigned = unsigned_copy(&dir);
    let warned = make(&unsigned, "unsigned.img");
    assert!(warned.contains("warning: kernel") && warned.contains("carries no signature"), "{warned}");
    assert!(warned.contains("Secure Boot enforced will refuse"), "{warned}");
    assert!(dir.join("unsigned.img").is_file());
    // Not an EFI executable at all (no PE header): BIOS only, and it says so.
    let elf = dir.join("not-pe");
    std::fs::write(&elf, b"\x7fELF not a bzImage").unwrap();
    let warned = make(&elf, "not-pe.img");
    assert!(warned.contains("is not an EFI executable") && warned.contains("BIOS only"), "{warned}");
}

#[test]
fn role_none_leaves_viver_role_out_and_a_list_is_passed() {
    let dir = scratch("media-role");
    let (image, initrd) = image_and_initrd(&dir);
    let cfg_of = |role: &str, out: &str| {
        let iso = dir.join(out);
        run_ok(
            viver()
                .args(["media", "--kind", "iso", "--role", role])
                .arg("--kernel")
                .arg(vmlinuz())
                .arg("--initrd")
                .arg(&initrd)
                .arg("--image")
                .arg(&image)
                .arg("-o")
                .arg(&iso),
        );
        let cfg = dir.join(format!("{out}.cfg"));
        run_ok(
            Command::new("xorriso").arg("-osirrox").arg("on").arg("-indev").arg(&iso).args(["-extract", "/EFI/debian/grub.cfg"]).arg(&cfg),
        );
        std::fs::read_to_string(cfg).unwrap()
    };
    let none = cfg_of("none", "none.iso");
    assert!(!none.contains("viver.role"), "{none}");
    let list = cfg_of("boot-server,web", "list.iso");
    assert!(list.contains("viver.role=boot-server,web"), "{list}");
    let r = viver()
        .args(["media", "--kind", "iso", "--no-image", "--role", "a b", "--kernel"])
        .arg(vmlinuz())
        .arg("--initrd")
        .arg(&initrd)
        .arg("-o")
        .arg(dir.join("bad.iso"))
        .output()
        .unwrap();
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("--role"));
}

#[test]
fn microcode_without_microcode_files_says_where_it_looked() {
    let dir = scratch("initrd-no-ucode");
    let empty = dir.join("empty-root");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.join("initrd.img");
    let r = viver()
        .args(["initrd", "--microcode", "--microcode-root"])
        .arg(&empty)
        .arg("--modules")
        .arg(release_dir())
        .arg("--init")
        .arg(env!("CARGO_BIN_EXE_viver"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!r.status.success());
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(e.contains(&format!("{}/lib/firmware/intel-ucode", empty.display())) && e.contains("amd64-microcode"), "{e}");
    assert!(!out.exists(), "no half-made initrd");
}

//! `viver kit initrd` on the real Debian kernel tree, checked with GNU cpio, and
//! `viver kit inspect`.
mod kit_common;
use kit_common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use viver::hardware::ModuleTables;

fn build_initrd(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    run_ok(viver().arg("initrd").arg("--modules").arg(release_dir()).arg("-o").arg(&out).args(extra));
    out
}

fn gnu_cpio_extract(initrd: &Path, into: &Path) -> String {
    std::fs::create_dir_all(into).unwrap();
    let plain = std::process::Command::new("gzip").arg("-dc").arg(initrd).output().unwrap();
    assert!(plain.status.success(), "gzip -dc failed");
    let run = |args: &[&str]| {
        let mut child = Command::new("cpio")
            .args(args)
            .current_dir(into)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&plain.stdout).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "cpio {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let listing = run(&["-t", "--quiet"]);
    run(&["-id", "--quiet", "--no-absolute-filenames"]);
    listing
}

#[test]
fn initrd_is_gnu_cpio_readable_reproducible_and_carries_the_drivers() {
    let dir = scratch("initrd-main");
    let a = build_initrd(&dir, "a.img", &[]);
    let b = build_initrd(&dir, "b.img", &[]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "rebuild must be byte-identical");
    // Fixed gzip header: no mtime, no name.
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(&bytes[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0]);

    let x = dir.join("x");
    let listing = gnu_cpio_extract(&a, &x);
    let names: BTreeSet<&str> = listing.lines().collect();
    for p in ["init", "dev", "proc", "sys", "run", "tmp", "root", "etc", "bin", "sbin", "dev/console", "dev/null"] {
        assert!(names.contains(p), "{p} missing");
    }
    assert!(names.contains(format!("lib/modules/{}/modules.dep", release()).as_str()));
    let lib = x.join(format!("lib/modules/{}", release()));
    assert_eq!(std::fs::read(lib.join("modules.builtin")).unwrap(), std::fs::read(release_dir().join("modules.builtin")).unwrap());
    assert_eq!(
        std::fs::read(lib.join("modules.builtin.modinfo")).unwrap(),
        std::fs::read(release_dir().join("modules.builtin.modinfo")).unwrap()
    );
    assert_eq!(std::fs::read(x.join("init")).unwrap(), std::fs::read(env!("CARGO_BIN_EXE_viver")).unwrap());

    // The tables inside equal those built from the modules inside.
    let (inside, _) = ModuleTables::build(&lib).unwrap();
    // Same modules with the same dependency sets (within a line depmod's order follows
    // the tree it scanned, which differs between the full tree and the subset).
    let dep_sets = |text: &str| -> std::collections::BTreeMap<String, BTreeSet<String>> {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(m, deps)| (m.to_string(), deps.split_whitespace().map(str::to_string).collect()))
            .collect()
    };
    let written = std::fs::read_to_string(lib.join("modules.dep")).unwrap();
    assert_eq!(dep_sets(&written), dep_sets(&inside.modules_dep_text()));
    assert!(!written.is_empty());
    assert_eq!(std::fs::read_to_string(lib.join("modules.alias")).unwrap(), inside.modules_alias_text());
    let included: BTreeSet<String> = inside.modules().map(str::to_string).collect();
    for m in [
        "virtio_pci",
        "virtio_blk",
        "virtio_scsi",
        "nvme",
        "ahci",
        "ata_piix",
        "pata_via",
        "sd_mod",
        "sr_mod",
        "cdrom",
        "xhci_pci",
        "ehci_pci",
        "ohci_pci",
        "uhci_hcd",
        "usb_storage",
        "uas",
        "sdhci_pci",
        "mmc_block",
        "isofs",
        "ext4",
        "vfat",
        "nls_cp437",
        "nls_utf8",
        "nls_iso8859_1",
        "exfat",
        "btrfs",
        "xfs",
        "squashfs",
        "overlay",
        "loop",
        "virtio_net",
        "e1000",
        "e1000e",
        "r8169",
    ] {
        // A kernel may build some of them in (Debian 13's has virtio_pci built in).
        let builtin = std::fs::read_to_string(release_dir().join("modules.builtin")).unwrap_or_default();
        let is_builtin = builtin.lines().any(|l| l.rsplit('/').next().is_some_and(|f| f.trim_end_matches(".ko").replace('-', "_") == m));
        assert!(included.contains(m) || is_builtin, "{m} missing from the initrd");
    }
    // Dependency closure: every dependency named in modules.dep is in the archive.
    for line in std::fs::read_to_string(lib.join("modules.dep")).unwrap().lines() {
        for path in line.replace(':', " ").split_whitespace() {
            assert!(lib.join(path).is_file(), "{path} listed in modules.dep but absent");
        }
    }
    // The whole tree is not dragged in.
    assert!(included.len() < 400, "{} modules", included.len());
    // Device nodes.
    let out = run_ok(viver().arg("inspect").arg(&a));
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.starts_with("crw-------") && l.contains("5,1") && l.ends_with("dev/console")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("crw-rw-rw-") && l.contains("1,3") && l.ends_with("dev/null")));
}

#[test]
fn rescue_shell_and_added_module() {
    let dir = scratch("initrd-rescue");
    let img = build_initrd(&dir, "r.img", &["--rescue-shell", "--add-module", "dm-mod", "--compress", "none"]);
    let out = run_ok(viver().arg("inspect").arg(&img));
    let text = stdout(&out);
    assert!(text.contains("# segment at byte 0: None"));
    assert!(text.lines().any(|l| l.ends_with(" bin/busybox") && l.starts_with("-rwxr-xr-x")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("bin/sh -> busybox")), "{text}");
    assert!(text.contains("kernel/drivers/md/dm-mod.ko"));
}

#[test]
fn bad_inputs_are_refused_without_output() {
    let dir = scratch("initrd-bad");
    let out = dir.join("i.img");
    let r = viver().arg("initrd").arg("--modules").arg(dir.join("nope")).arg("-o").arg(&out).output().unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("does not exist"));
    let empty = dir.join("6.1.0-empty");
    std::fs::create_dir_all(empty.join("kernel")).unwrap();
    let r = viver().arg("initrd").arg("--modules").arg(&empty).arg("-o").arg(&out).output().unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("no kernel modules") || err.contains("nor any .ko file"), "{err}");
    assert!(!out.exists());
    let lists = dir.join("lists");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::write(lists.join("x.list"), "two words\n").unwrap();
    let r = viver().arg("initrd").arg("--modules").arg(release_dir()).arg("--lists").arg(&lists).arg("-o").arg(&out).output().unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("x.list:1"));
    assert!(!out.exists());
}

fn newc(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (name, mode, data)) in entries.iter().enumerate() {
        let w = cpio::newc::Builder::new(name).ino(i as u32 + 1).mode(*mode).nlink(1).write(out, data.len() as u32);
        let mut w = w;
        std::io::Write::write_all(&mut w, data).unwrap();
        out = w.finish().unwrap();
    }
    cpio::newc::trailer(out).unwrap()
}

#[test]
fn inspect_reads_concatenated_segments_and_refuses_escapes() {
    let dir = scratch("inspect");
    let mut data = newc(&[("kernel", 0o040755, b""), ("kernel/x86/microcode/GenuineIntel.bin", 0o100644, b"UCODE")]);
    while data.len() % 512 != 0 {
        data.push(0);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &newc(&[("init", 0o100755, b"#!/bin/sh\n")])).unwrap();
    data.extend(gz.finish().unwrap());
    let path = dir.join("concat.img");
    std::fs::write(&path, &data).unwrap();
    let out = run_ok(viver().arg("inspect").arg(&path).arg("--extract").arg(dir.join("x")));
    let text = stdout(&out);
    assert!(text.contains("# segment at byte 0: None, 2 entries"), "{text}");
    assert!(text.contains("# segment at byte 512: Gzip, 1 entries"), "{text}");
    assert_eq!(std::fs::read(dir.join("x/kernel/x86/microcode/GenuineIntel.bin")).unwrap(), b"UCODE");
    assert_eq!(std::fs::read(dir.join("x/init")).unwrap(), b"#!/bin/sh\n");

    // zstd segment through the zstd tool.
    let plain = dir.join("plain.cpio");
    std::fs::write(&plain, newc(&[("etc", 0o040755, b"")])).unwrap();
    run_ok(Command::new("zstd").arg("-q").arg("-f").arg(&plain).arg("-o").arg(dir.join("z.img")));
    let text = stdout(&run_ok(viver().arg("inspect").arg(dir.join("z.img"))));
    assert!(text.contains("Zstd, 1 entries") && text.contains(" etc"), "{text}");

    let evil = dir.join("evil.img");
    std::fs::write(&evil, newc(&[("../escape", 0o100644, b"x")])).unwrap();
    let r = viver().arg("inspect").arg(&evil).arg("--extract").arg(dir.join("y")).output().unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("escapes"));
    assert!(!dir.join("escape").exists());
    std::fs::write(&evil, b"garbage that is no initrd").unwrap();
    let r = viver().arg("inspect").arg(&evil).output().unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("unknown data at byte 0"));
}

#[test]
fn host_only_takes_the_modules_the_machine_uses_plus_filesystems() {
    let dir = scratch("initrd-host-only");
    // A captured machine: it runs e1000e and snd_hda_intel (not in any shipped list), and
    // sysfs shows btrfs; it has no NVMe.
    let host = dir.join("host");
    std::fs::create_dir_all(host.join("proc")).unwrap();
    std::fs::write(
        host.join("proc/modules"),
        "e1000e 319488 0 - Live 0x0000000000000000\nsnd_hda_intel 57344 0 - Live 0x0000000000000000\n",
    )
    .unwrap();
    for m in ["btrfs", "printk", "kernel"] {
        std::fs::create_dir_all(host.join("sys/module").join(m)).unwrap();
    }
    let img = build_initrd(&dir, "h.img", &["--host-only", "--host-root", host.to_str().unwrap(), "--compress", "none"]);
    let text = stdout(&run_ok(viver().arg("inspect").arg(&img)));
    for wanted in ["/e1000e.ko", "/snd-hda-intel.ko", "/btrfs.ko", "/ext4.ko", "/squashfs.ko", "/overlay.ko", "/isofs.ko"] {
        assert!(text.contains(wanted), "{wanted} missing from the host-only initrd:\n{text}");
    }
    for unwanted in ["/nvme.ko", "/xhci-pci.ko", "/virtio_blk.ko"] {
        assert!(!text.contains(unwanted), "{unwanted} in a host-only initrd of a machine without it");
    }
    // Smaller than the generic one.
    let generic = build_initrd(&dir, "g.img", &["--compress", "none"]);
    assert!(std::fs::metadata(&img).unwrap().len() < std::fs::metadata(&generic).unwrap().len());
}

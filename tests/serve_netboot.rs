//! A diskless QEMU client boots from `viver serve` over the network: QEMU's iPXE ROM asks
//! DHCP, gets the HTTP script from VIVER, loads kernel + initrd over HTTP; VIVER's /init
//! finds the interface named by `BOOTIF=`, gets its address from DHCP, and mounts the
//! image from `/dev/nbd0`, served by VIVER's daemon from the server over HTTP, chunk by
//! chunk as it is read; the test root comes up and reports `media: "network"`.
//! Everything runs in a network namespace created (and removed) by the test; one VM at
//! a time.

mod net;
mod qemu;

use net::{scratch, viver, wait_report, Netns, Process};
use std::time::{Duration, Instant};

const MAC: &str = "52:54:00:77:00:01";

struct Lab {
    ns: Netns,
    dir: std::path::PathBuf,
    kernel: std::path::PathBuf,
    initrd: std::path::PathBuf,
    image: std::path::PathBuf,
}

fn lab(name: &str) -> Lab {
    net::require_root();
    let dir = scratch(name);
    let (initrd, layout) = qemu::kit_initrd_and_testroot_layout(&dir);
    let image = dir.join("lan.squashfs");
    std::fs::rename(layout.join("viver/testroot.squashfs"), &image).unwrap();
    std::fs::rename(layout.join("viver/testroot.toml"), dir.join("lan.toml")).unwrap();
    let ns = Netns::new("vsb");
    ns.bridge("br0", "10.77.0.1/24");
    ns.tap("tap0", "br0");
    Lab { ns, dir, kernel: qemu::kernel(), initrd, image }
}

fn serve(lab: &Lab, extra: &[&str]) -> (Process, serde_json::Value) {
    let state = lab.dir.join("state");
    let mut cmd = lab.ns.command(viver());
    cmd.args(["serve", "--image"])
        .arg(&lab.image)
        .arg("--manifest")
        .arg(lab.dir.join("lan.toml"))
        .arg("--kernel")
        .arg(&lab.kernel)
        .arg("--initrd")
        .arg(&lab.initrd);
    cmd.args(["--interface", "br0", "--state-dir"]).arg(&state);
    cmd.args(["--survey-wait", "1", "--cmdline", "console=ttyS0 panic=-1 viver.panic=halt viver.panic_wait=0"]);
    cmd.args(extra);
    cmd.env("RUST_LOG", "info");
    let mut p = Process::spawn(cmd, &lab.dir.join("serve.log"));
    let report = wait_report(&state, &mut p, Duration::from_secs(30));
    p.wait_for_log("serve: ready", Duration::from_secs(10));
    (p, report)
}

/// The client's firmware: SeaBIOS (QEMU's default) or OVMF (UEFI, Debian's `ovmf`).
#[derive(Clone, Copy, PartialEq)]
enum Firmware {
    Bios,
    Uefi,
    /// OVMF with the NIC's iPXE option ROM taken away: OVMF's own PXE client
    /// (DHCP arch 7) loads the iPXE binary over TFTP first.
    UefiPxe,
}

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Boots the diskless client under QEMU in the namespace until the test root reported
/// (its boot.json printed); returns the serial log and the time it took.
fn boot_client(lab: &Lab, machine: &str, nic: &str, firmware: Firmware) -> (String, Duration) {
    // One VM at a time on this shared machine.
    static VM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = VM.lock().unwrap_or_else(|e| e.into_inner());
    let log = lab.dir.join("client.log");
    let mut cmd = lab.ns.command("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-machine", machine, "-m", "768", "-smp", "1", "-nodefaults", "-nographic", "-no-reboot"]);
    if firmware != Firmware::Bios {
        // The code read-only, the variables a per-VM copy (OVMF writes its boot options there).
        let vars = lab.dir.join("OVMF_VARS_4M.fd");
        std::fs::copy(OVMF_VARS, &vars).unwrap_or_else(|e| panic!("{OVMF_VARS} (package ovmf): {e}"));
        cmd.arg("-drive").arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"));
        cmd.arg("-drive").arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()));
    }
    cmd.arg("-serial").arg(format!("file:{}", log.display()));
    cmd.args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"]);
    // bootindex: OVMF takes its boot order from it (and `-boot n` for SeaBIOS).
    let rom = if firmware == Firmware::UefiPxe { ",romfile=" } else { "" };
    cmd.args(["-device", &format!("{nic},netdev=n0,mac={MAC},bootindex=1{rom}"), "-boot", "n"]);
    let mut vm = Process::spawn(cmd, &lab.dir.join("qemu.stderr"));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(240);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("PERSIST:") {
            let took = started.elapsed();
            let _ = vm.child.kill();
            return (text, took);
        }
        if let Ok(Some(status)) = vm.child.try_wait() {
            panic!("QEMU exited ({status}):\n{}\n{}", vm.log_text(), tail(&text));
        }
        assert!(Instant::now() < deadline, "client did not reach the test root in 240 s:\n{}", tail(&text));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The client booted the test root from the network: its command line came from the
/// server, its root is the overlay over the SquashFS on /dev/nbd0, its boot report says
/// `media: "network"` with the lease it got. Returns the report.
fn check_client(text: &str, server: &str, address: &str) -> serde_json::Value {
    let cmdline = text.lines().find(|l| l.contains("Kernel command line:")).unwrap_or_default();
    assert!(cmdline.contains(&format!("viver.net=http://{server}:80/image/lan.squashfs")), "{cmdline}");
    assert!(cmdline.contains("BOOTIF=01-52-54-00-77-00-01"), "{cmdline}");
    let serial = qemu::SerialLog { text: text.to_string() };
    assert!(serial.contains("VIVER-TESTROOT-UP"), "no test root:\n{}", tail(text));
    assert!(serial.contains("WRITE-OK"), "the root is not writable:\n{}", tail(text));
    let report = serial.boot_json().unwrap();
    assert_eq!(report["image"]["media"], "network", "{report}");
    assert_eq!(report["image"]["device"], "/dev/nbd0", "{report}");
    assert_eq!(report["image"]["path"], format!("http://{server}:80/image/lan.squashfs"), "{report}");
    assert_eq!(report["network"]["mac"], "52:54:00:77:00:01", "{report}");
    assert!(report["network"]["address"].as_str().unwrap().starts_with(&format!("{address}/")), "{report}");
    assert_eq!(report["network"]["server"], format!("{server}:80"), "{report}");
    let image_mount = serial.mount_at("/run/viver/image").expect("image mount");
    assert_eq!(image_mount.device, "/dev/nbd0", "{image_mount:?}");
    let fetched = report["network"]["bytes_fetched"].as_u64().unwrap();
    let size = report["image"]["size_bytes"].as_u64().unwrap();
    if report["network"]["vfield_peers"].as_array().is_some_and(|p| !p.is_empty()) {
        // Through V-FIELD (the server's script names its seed): chunks came from the
        // seed as a peer, and the node's store fills with the rest of this small image.
        // (Which of the server's two seeds, HTTP or V-FIELD, sent the four chunks of this
        // image is up to the scheduler; peers sending to peers is netboot_vfield's test.)
        assert!(text.contains("/dev/nbd0 serves http://") && text.contains("through V-FIELD"), "{}", tail(text));
        assert!(
            text.contains(&format!("V-FIELD: joining {} at [\"{server}:6881\"]", report["image"]["id"].as_str().unwrap())),
            "{}",
            tail(text)
        );
        assert!(fetched > 0, "fetched {fetched} of {size}");
    } else {
        // From the server alone, lazily: the boot read a part of the image, not all of it.
        assert!(fetched > 0 && fetched < size, "fetched {fetched} of {size}");
    }
    assert_eq!(report["image"]["verification"]["bytes_verified"].as_u64(), Some(fetched), "every byte fetched was checked: {report}");
    report
}

#[test]
fn ipxe_client_boots_viver_initrd_with_full_dhcp() {
    let lab = lab("netboot-full");
    let (server, report) = serve(&lab, &[]);
    assert_eq!(report["dhcp"]["mode"], "full", "{report}");
    assert!(report["dhcp"]["reason"].as_str().unwrap().contains("no DHCP server answered"), "{report}");
    let (text, took) = boot_client(&lab, "q35", "virtio-net-pci", Firmware::Bios);
    let report = check_client(&text, "10.77.0.1", "10.77.0.128");
    let log = server.log_text();
    assert!(log.contains("OFFER 10.77.0.128 to 52:54:00:77:00:01 (Ipxe -> http://10.77.0.1:80/boot.ipxe)"), "{log}");
    assert!(log.contains("ACK 10.77.0.128 to 52:54:00:77:00:01"), "{log}");
    assert!(log.contains("GET /vmlinuz 200") && log.contains("GET /initrd.img 200"), "{log}");
    let leases = std::fs::read_to_string(lab.dir.join("state/leases.json")).unwrap();
    assert!(leases.contains("52:54:00:77:00:01") && leases.contains("10.77.0.128"), "{leases}");
    assert!(log.contains("GET /image/lan.toml 200"), "{log}");
    eprintln!(
        "netboot (full DHCP, q35, virtio-net): QEMU start to the test root in {took:.1?}; network wait {} ms, {} KiB fetched",
        report["network"]["wait_ms"],
        report["network"]["bytes_fetched"].as_u64().unwrap() >> 10
    );
}

/// A LAN DHCP server (dnsmasq, addresses only) in its own namespace joined by veth:
/// VIVER answers as proxyDHCP only, the address comes from dnsmasq.
#[test]
fn ipxe_client_boots_with_lan_dhcp_and_viver_as_proxy() {
    let lab = lab("netboot-proxy");
    let (_lan, _dnsmasq) = net::netboot::lan_dhcp(&lab.ns, &lab.dir, "vl0", "10.77.0.2", &[]);
    // HTTP alone (no V-FIELD seed): the lazy path of a plain boot server.
    let (server, report) = serve(&lab, &["--vfield", "0"]);
    assert_eq!(report["dhcp"]["mode"], "proxy", "{report}");
    assert!(report["dhcp"]["reason"].as_str().unwrap().contains("DHCP server 10.77.0.2"), "{report}");
    let (text, took) = boot_client(&lab, "pc", "e1000", Firmware::Bios);
    // The address dnsmasq handed out (it picks one of its range by the MAC's hash).
    let dns = std::fs::read_to_string(lab.dir.join("dnsmasq.log")).unwrap_or_default();
    let acked = dns.lines().rev().find_map(|l| l.split("DHCPACK(eth0) ").nth(1)).and_then(|rest| rest.split_whitespace().next());
    let acked = acked.unwrap_or_else(|| panic!("address from dnsmasq expected:\n{dns}"));
    assert!(acked.starts_with("10.77.0.5") || acked == "10.77.0.60", "{acked} is outside dnsmasq's range:\n{dns}");
    check_client(&text, "10.77.0.1", acked);
    let log = server.log_text();
    assert!(log.contains("proxy Offer to 52:54:00:77:00:01: Ipxe -> http://10.77.0.1:80/boot.ipxe"), "{log}");
    eprintln!("netboot (LAN dnsmasq + VIVER proxyDHCP, pc, e1000): QEMU start to the test root in {took:.1?}");
}

/// A UEFI client (q35, OVMF) netboots: OVMF runs the iPXE driver of QEMU's
/// efi-virtio.rom, which asks DHCP as iPXE and is sent straight to the HTTP script;
/// the kernel (an EFI stub bzImage) and the initrd come over HTTP as for BIOS.
#[test]
fn uefi_client_boots_viver_initrd() {
    let lab = lab("netboot-uefi");
    let (server, report) = serve(&lab, &[]);
    assert_eq!(report["dhcp"]["mode"], "full", "{report}");
    let (text, took) = boot_client(&lab, "q35", "virtio-net-pci", Firmware::Uefi);
    // The firmware was OVMF (UEFI), not SeaBIOS.
    assert!(!text.contains("SeaBIOS"), "SeaBIOS ran, not OVMF:\n{}", tail(&text));
    let serial = qemu::SerialLog { text: text.clone() };
    assert!(serial.contains("efi: EFI v"), "the kernel did not start under UEFI:\n{}", tail(&text));
    let report = check_client(&text, "10.77.0.1", "10.77.0.128");
    let log = server.log_text();
    assert!(log.contains("OFFER 10.77.0.128 to 52:54:00:77:00:01 (Ipxe -> http://10.77.0.1:80/boot.ipxe)"), "{log}");
    assert!(log.contains("GET /vmlinuz 200") && log.contains("GET /initrd.img 200"), "{log}");
    eprintln!(
        "netboot (UEFI, q35, virtio-net): QEMU start to the test root in {took:.1?}; network wait {} ms, {} KiB fetched",
        report["network"]["wait_ms"],
        report["network"]["bytes_fetched"].as_u64().unwrap() >> 10
    );
}

/// Another PXE server on the segment: VIVER stays silent and says why.
#[test]
fn another_pxe_server_silences_viver() {
    let lab = lab("netboot-other-pxe");
    let (_lan, _dnsmasq) = net::netboot::lan_dhcp(
        &lab.ns,
        &lab.dir,
        "vp0",
        "10.77.0.3",
        &["--dhcp-boot=pxelinux.0", "--pxe-service=x86PC,Other boot,pxelinux"],
    );
    let (server, report) = serve(&lab, &[]);
    assert_eq!(report["dhcp"]["mode"], "silent", "{report}");
    let reason = report["dhcp"]["reason"].as_str().unwrap();
    assert!(reason.contains("another PXE server answers on this segment: 10.77.0.3"), "{reason}");
    assert!(server.log_text().contains("DHCP mode Silent: another PXE server"), "{}", server.log_text());
}

/// A UEFI client without iPXE in its NIC ROM: OVMF's own PXE asks DHCP as a UEFI PXE
/// client (arch 7), gets Debian's ipxe.efi over TFTP, which asks again as iPXE and is
/// sent to the HTTP script (no chain-loading loop).
#[test]
fn uefi_pxe_client_chains_ipxe_efi_over_tftp() {
    let lab = lab("netboot-uefi-pxe");
    let (server, _) = serve(&lab, &[]);
    let (text, took) = boot_client(&lab, "q35", "virtio-net-pci", Firmware::UefiPxe);
    check_client(&text, "10.77.0.1", "10.77.0.128");
    let log = server.log_text();
    assert!(log.contains("OFFER 10.77.0.128 to 52:54:00:77:00:01 (UefiPxe -> ipxe.efi)"), "{log}");
    let size = std::fs::metadata("/usr/lib/ipxe/ipxe.efi").unwrap().len();
    assert!(log.contains(&format!("TFTP sent ipxe.efi ({size} bytes")), "{log}");
    assert!(log.contains("(Ipxe -> http://10.77.0.1:80/boot.ipxe)"), "{log}");
    eprintln!("netboot (UEFI PXE -> ipxe.efi over TFTP, q35, virtio-net): QEMU start to the test root in {took:.1?}");
}

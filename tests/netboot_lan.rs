//! The first node boots the rest of the LAN: node A boots the kit's ISO with the role
//! `boot-server`; diskless nodes B (pc, e1000) and C (q35, virtio-net) netboot the same
//! image from it and reach the test root with `media: "network"`. Once with nobody
//! else on the segment (A gives the addresses), once beside a LAN DHCP server (dnsmasq,
//! addresses only: A answers as proxyDHCP). All inside a namespace of the test's own;
//! at most two VMs at a time.

mod net;
mod qemu;

use net::netboot::{Client, Lab};
use net::scratch;
use std::path::{Path, PathBuf};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(360);

/// Each test runs two VMs at once (A and a client): one test at a time, so no more than
/// two VMs share the machine.
fn one_lan_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LAN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LAN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The kit ISO of the test root with the boot-server role; A stays up (`testroot.stay`).
fn kit_iso(dir: &Path) -> PathBuf {
    let (initrd, layout) = qemu::kit_initrd_and_testroot_layout(dir);
    let iso = dir.join("viver.iso");
    let image = layout.join("viver/testroot.squashfs");
    qemu::kit(&[
        "media",
        "--kind",
        "iso",
        "--kernel",
        qemu::kernel().to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--append",
        "viver.role=boot-server viver.panic=halt viver.panic_wait=0 testroot.stay",
        "-o",
        iso.to_str().unwrap(),
    ]);
    iso
}

fn node_a(lab: &Lab, iso: &Path) -> Client {
    let drive = format!("file={},media=cdrom,readonly=on,if=ide", iso.display());
    let mut a = lab.vm("node-a", "tapa", "pc", "virtio-net-pci", "52:54:00:77:0a:01", 768, &["-drive", &drive, "-boot", "d"]);
    let text = a.wait_for("BOOT-JSON-END", BOOT);
    let report = qemu::SerialLog { text }.boot_json().unwrap();
    assert_eq!(report["image"]["media"], "cd", "{report}");
    assert_eq!(report["boot_server"]["started"], true, "{report}");
    assert!(report["boot_server"]["kernel"].as_str().unwrap().ends_with("/boot/vmlinuz"), "{report}");
    a
}

/// A diskless node netboots from A: the test root over /dev/nbd0, from A's address.
fn netboot(lab: &Lab, name: &str, tap: &str, machine: &str, nic: &str, mac: &str) -> serde_json::Value {
    let mut client = lab.client(name, tap, machine, nic, mac, 768);
    let text = client.wait_for("PERSIST:", BOOT);
    let serial = qemu::SerialLog { text };
    assert!(serial.contains("WRITE-OK"), "{}", client.tail(40));
    let report = serial.boot_json().unwrap();
    assert_eq!(report["image"]["media"], "network", "{report}");
    assert_eq!(report["image"]["device"], "/dev/nbd0", "{report}");
    assert_eq!(report["network"]["mac"], mac, "{report}");
    eprintln!(
        "{name} ({machine}, {nic}): test root after {:.1?}, address {} from {}, image from {}",
        client.started.elapsed(),
        report["network"]["address"],
        report["network"]["dhcp_server"],
        report["network"]["server"]
    );
    report
}

#[test]
fn the_first_node_boots_the_lan_and_gives_the_addresses() {
    net::require_root();
    let _one = one_lan_at_a_time();
    let dir = scratch("lan-full");
    let iso = kit_iso(&dir);
    let lab = Lab::bare(&dir);
    let _a = node_a(&lab, &iso);
    let b = netboot(&lab, "node-b", "tapb", "pc", "e1000", "52:54:00:77:0b:01");
    let c = netboot(&lab, "node-c", "tapc", "q35", "virtio-net-pci", "52:54:00:77:0c:01");
    // Nobody else is on the segment: A gave the addresses and serves the image.
    for report in [&b, &c] {
        let server = report["network"]["server"].as_str().unwrap().trim_end_matches(":80").to_string();
        assert_eq!(report["network"]["dhcp_server"], server.as_str(), "{report}");
        assert!(server.starts_with("10.77.0."), "{report}");
    }
    assert_ne!(b["network"]["address"], c["network"]["address"]);
}

#[test]
fn beside_a_lan_dhcp_server_the_first_node_is_only_a_proxy() {
    net::require_root();
    let _one = one_lan_at_a_time();
    let dir = scratch("lan-proxy");
    let iso = kit_iso(&dir);
    let lab = Lab::bare(&dir);
    let (_lan, _dnsmasq) = net::netboot::lan_dhcp(&lab.ns, &dir, "vd0", "10.77.0.2", &[]);
    let _a = node_a(&lab, &iso);
    let b = netboot(&lab, "node-b", "tapb", "pc", "e1000", "52:54:00:77:0b:01");
    // The address came from dnsmasq, the image from A (which took its own from dnsmasq).
    assert_eq!(b["network"]["dhcp_server"], "10.77.0.2", "{b}");
    let address = b["network"]["address"].as_str().unwrap();
    let host: u8 = address.split('/').next().unwrap().rsplit('.').next().unwrap().parse().unwrap();
    assert!((50..=60).contains(&host), "{b}");
    let server = b["network"]["server"].as_str().unwrap();
    let server_host: u8 = server.trim_end_matches(":80").rsplit('.').next().unwrap().parse().unwrap();
    assert!((50..=60).contains(&server_host), "A should have its address from dnsmasq: {b}");
}

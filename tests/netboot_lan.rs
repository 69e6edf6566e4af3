//! The first node boots the rest of the LAN: node A boots the kit's ISO with the role
//! `boot-server`; diskless nodes B (pc, e1000) and C (q35, virtio-net) netboot the same
//! image from it and reach the test root with `media: "network"`. Once with nobody
//! else on the segment (A gives the addresses), once beside a LAN DHCP server (dnsmasq,
//! addresses only: A answers as proxyDHCP). All inside a namespace of the test's own;
//! at most two VMs at a time, but for V-FIELD's test: four nodes netboot from A through
//! V-FIELD, A loses its power, one of them takes over as boot server and a fifth node
//! netboots from it, its image from the peers (five VMs at most).

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

/// The kit ISO of the test root with the boot-server role; A stays up (`testroot.stay`),
/// its clients get `clients` too.
fn kit_iso(dir: &Path, clients: &str) -> PathBuf {
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
        &format!("viver.role=boot-server viver.panic=halt viver.panic_wait=0 testroot.stay {clients}"),
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
    let iso = kit_iso(&dir, "");
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
    let iso = kit_iso(&dir, "");
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

/// Asks the swarm through `bootstrap` (from the test's namespace) until `done` says
/// what it waited for, within 3 minutes.
fn wait_swarm<T>(lab: &Lab, bootstrap: &str, done: impl Fn(&[serde_json::Value]) -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let out = lab.ns.command(net::viver()).args(["vfield", "status", "--bootstrap", bootstrap, "--json"]).output().unwrap();
        let last = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        if let Ok(status) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            if let Some(found) = done(status["peers"].as_array().map(Vec::as_slice).unwrap_or_default()) {
                return found;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the swarm at {bootstrap} did not get there within 180 s: {last}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The address in a boot report (`10.77.0.128/24` -> 10.77.0.128).
fn address_of(report: &serde_json::Value) -> std::net::Ipv4Addr {
    report["network"]["address"].as_str().unwrap().split('/').next().unwrap().parse().unwrap()
}

#[test]
fn the_lan_keeps_booting_through_v_field_after_the_first_node_is_gone() {
    net::require_root();
    let _one = one_lan_at_a_time();
    let dir = scratch("lan-vfield");
    // The clients stay up: they are the swarm, and the next boot server.
    let iso = kit_iso(&dir, "viver.clients.append=testroot.stay");
    let lab = Lab::bare(&dir);
    let a = node_a(&lab, &iso);
    let mut nodes: Vec<Client> = (1..=4u8)
        .map(|n| lab.client(&format!("node-{n}"), &format!("tapn{n}"), "pc", "virtio-net-pci", &format!("52:54:00:77:1{n}:01"), 768))
        .collect();
    let mut reports = Vec::new();
    for node in &mut nodes {
        let text = node.wait_for("VIVER-TESTROOT-DONE", BOOT);
        let report = qemu::SerialLog { text }.boot_json().unwrap();
        assert_eq!(report["image"]["media"], "network", "{report}");
        let server = report["network"]["server"].as_str().unwrap().trim_end_matches(":80").to_string();
        assert_eq!(report["network"]["vfield_peers"], serde_json::json!([format!("{server}:6881")]), "{report}");
        reports.push(report);
    }
    let addresses: Vec<std::net::Ipv4Addr> = reports.iter().map(address_of).collect();
    let booted = std::time::Instant::now();
    // Two of the nodes fetch the boot files and stand by (not all: that would double
    // what A sends each client), as the swarm says to `viver vfield status`, asked from
    // an address of the test's own on the LAN. Each node decides within 25 s of its boot.
    lab.ns.ip(&["addr", "add", "10.77.0.254/24", "dev", "br0"]);
    let standby_set = |peers: &[serde_json::Value]| -> Vec<std::net::Ipv4Addr> {
        peers.iter().filter(|p| p["boot"] == "standby").filter_map(|p| p["addr"].as_str()?.split(':').next()?.parse().ok()).collect()
    };
    wait_swarm(&lab, "10.77.0.1:6881", |peers| (standby_set(peers).len() >= 2).then_some(()));
    std::thread::sleep(Duration::from_secs(30).saturating_sub(booted.elapsed()));
    let standbys = wait_swarm(&lab, "10.77.0.1:6881", |peers| Some(standby_set(peers)));
    assert!(standbys.len() >= 2 && standbys.len() < 4, "standbys {standbys:?} of {addresses:?}");
    assert!(standbys.iter().all(|s| addresses.contains(s)), "standbys {standbys:?} of {addresses:?}");
    let elected = *standbys.iter().min().unwrap();
    eprintln!("four nodes up through V-FIELD at {addresses:?}, standbys {standbys:?}; A loses its power");
    drop(a); // QEMU killed: a power cut, nothing said to anybody

    // The swarm, asked through another node, says who serves now.
    let successor = addresses.iter().position(|a| *a == elected).unwrap();
    let observer = addresses[(successor + 1) % nodes.len()];
    let serving = wait_swarm(&lab, &format!("{observer}:6881"), |peers| {
        let serving: Vec<String> =
            peers.iter().filter(|p| p["boot"] == "serving").filter_map(|p| p["addr"].as_str().map(String::from)).collect();
        (!serving.is_empty()).then_some(serving)
    });
    assert_eq!(serving, [format!("{elected}:6881")], "{}", nodes[successor].tail(30));
    for (n, node) in nodes.iter().enumerate() {
        let took_over = node.text().contains("and takes over");
        assert_eq!(took_over, n == successor, "node {n} ({}) took over: {took_over}; elected {elected}", addresses[n]);
    }

    // A fifth node: its address, script, kernel and initrd from the successor, its image
    // from the peers (A holds none of it any more).
    let mut fifth = lab.client("node-5", "tapn5", "q35", "virtio-net-pci", "52:54:00:77:15:01", 768);
    let text = fifth.wait_for("VIVER-TESTROOT-DONE", BOOT);
    let report = qemu::SerialLog { text }.boot_json().unwrap();
    assert_eq!(report["image"]["media"], "network", "{report}");
    assert_eq!(report["network"]["dhcp_server"], elected.to_string(), "{report}");
    assert_eq!(report["network"]["server"], format!("{elected}:80"), "{report}");
    assert_eq!(report["network"]["vfield_peers"], serde_json::json!([format!("{elected}:6881")]), "{report}");
    assert!(!addresses.contains(&address_of(&report)), "the fifth node got an address in use: {report}");
    eprintln!(
        "fifth node up after {:.1?} at {} from {elected}: {} KiB fetched, {} KiB from V-FIELD peers",
        fifth.started.elapsed(),
        address_of(&report),
        report["network"]["bytes_fetched"].as_u64().unwrap_or(0) >> 10,
        report["network"]["bytes_from_peers"].as_u64().unwrap_or(0) >> 10
    );
}

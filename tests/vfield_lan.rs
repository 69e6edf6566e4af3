//! V-FIELD with no address (root): nodes in network namespaces of their own on a bridge
//! the test makes find each other by the LAN announcement (BEP 14 Local Service Discovery
//! on 239.192.152.143:6771). A joiner given nothing finds the seed and joins; a second
//! swarm on the segment makes a bare `fetch` refuse to guess, and `--image ID` picks; the
//! fetched file is the seed's byte for byte. Nothing leaves the namespaces.

mod net;

use net::{random_bytes, scratch, viver, Netns, Process};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn vfield(ns: &Netns, args: &[&str]) -> Command {
    let mut command = ns.command(viver());
    command.arg("vfield").args(args).env("RUST_LOG", "info");
    command
}

/// A node's namespace on the bridge, at 10.81.0.N.
fn node(lan: &Netns, n: u8) -> Netns {
    let ns = Netns::new("vl");
    lan.veth_to(&format!("vl{n}"), Some("br0"), &ns, "eth0", Some(&format!("10.81.0.{n}/24")));
    ns
}

/// The manifest id `viver vfield --file` gives a plain file: its SHA-256's first 16 digits.
fn id_of(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect::<String>()[..16].to_string()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path.display().to_string()
}

#[test]
fn a_node_with_no_address_finds_the_swarm_on_the_lan() {
    net::require_root();
    let dir = scratch("vfield-lan");
    let lan = Netns::new("vlb");
    lan.bridge("br0", "10.81.0.254/24");
    // Without an IGMP querier a snooping bridge may hold multicast back: flood it.
    lan.ip(&["link", "set", "br0", "type", "bridge", "mcast_snooping", "0"]);
    let (a, b, c, d) = (node(&lan, 1), node(&lan, 2), node(&lan, 3), node(&lan, 4));

    let image = random_bytes(6 << 20, 0x5eed);
    let file = write(&dir, "image.bin", &image);
    let mut seed = Process::spawn(vfield(&a, &["--file", &file, "--lan"]), &dir.join("seed.log"));
    seed.wait_for_log("LAN announcement on 10.81.0.1", Duration::from_secs(10));

    // B is given no address at all.
    let mut joiner = Process::spawn(vfield(&b, &["--store", "64"]), &dir.join("joiner.log"));
    let log = joiner.wait_for_log("store settled", Duration::from_secs(60));
    assert!(log.contains("10.81.0.1:6881"), "the joiner did not name the seed it found:\n{log}");
    assert!(log.contains(&format!("image {}", id_of(&image))), "{log}");

    // A second swarm on the segment: a bare fetch will not guess which one.
    let other = random_bytes(1 << 20, 0x07e4);
    let other_file = write(&dir, "other.bin", &other);
    let mut other_seed = Process::spawn(vfield(&d, &["--file", &other_file, "--lan"]), &dir.join("other.log"));
    other_seed.wait_for_log("LAN announcement on 10.81.0.4", Duration::from_secs(10));
    let out = dir.join("fetched.bin");
    let guess = vfield(&c, &["fetch", "-o", out.to_str().unwrap(), "--timeout", "60"]).output().unwrap();
    let err = String::from_utf8_lossy(&guess.stderr);
    assert!(!guess.status.success() && err.contains("several swarms on the LAN") && err.contains("--image"), "{err}");

    // The seed leaves; C, with only the image's id, fetches it from B.
    drop(seed);
    let fetched = vfield(&c, &["fetch", "--image", &id_of(&image), "-o", out.to_str().unwrap(), "--timeout", "60"]).output().unwrap();
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    assert!(std::fs::read(&out).unwrap() == image, "the fetched file differs from the seed's");
    drop(joiner);
    drop(other_seed);
}

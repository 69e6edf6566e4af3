//! `viver serve` on a bare interface (a boot-server node just started from a CD, no
//! address yet): with no DHCP server on the segment it gives itself an address from the
//! range it serves and hands out the rest to a real DHCP client (busybox udhcpc); with
//! Debian's dnsmasq giving addresses it takes dnsmasq's lease and answers as proxyDHCP
//! only. Each test builds its own namespaces and removes them.

mod net;

use net::{fixture, scratch, serve_args, viver, wait_report, Netns, Process};
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `busybox udhcpc` on eth0 of `ns` until it has a lease (or gives up) and returns
/// what its script saw: `bound ip=... serverid=...`.
fn udhcpc(ns: &Netns, dir: &Path) -> String {
    let script = dir.join("udhcpc.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"event=$1 ip=$ip subnet=$subnet serverid=$serverid siaddr=$siaddr boot_file=$boot_file\"\n")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = ns
        .command("busybox")
        .args(["udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "6", "-T", "1", "-s"])
        .arg(&script)
        .output()
        .expect("busybox udhcpc (package busybox-static)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines().find(|l| l.starts_with("event=bound")).map(str::to_string).unwrap_or_else(|| panic!("udhcpc got no lease:\n{text}"))
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap_or("")
}

fn start_bare(server_ns: &Netns, dir: &Path, log: &str) -> (Process, serde_json::Value) {
    let f = fixture(dir);
    let state = dir.join("state");
    // A report of an earlier run must not pass for this one's.
    let _ = std::fs::remove_file(state.join("serve.json"));
    let mut cmd = server_ns.command(viver());
    cmd.args(serve_args(&f, &state)).args(["--interface", "br0", "--address-wait", "3", "--survey-wait", "0.5"]);
    cmd.env("RUST_LOG", "info");
    let mut p = Process::spawn(cmd, &dir.join(log));
    let report = wait_report(&state, &mut p, Duration::from_secs(40));
    p.wait_for_log("serve: ready", Duration::from_secs(10));
    (p, report)
}

#[test]
fn bare_interface_without_dhcp_server_self_assigns_and_serves_addresses() {
    let server_ns = Netns::new("vbs");
    server_ns.ip(&["link", "add", "br0", "type", "bridge"]);
    server_ns.ip(&["link", "set", "br0", "down"]); // viver serve brings it up
    let client_ns = Netns::new("vbc");
    server_ns.veth_to("vc0", Some("br0"), &client_ns, "eth0", None);
    let dir = scratch("bare-self");
    let started = Instant::now();
    let (server, report) = start_bare(&server_ns, &dir, "serve.log");
    let settle = started.elapsed();
    assert_eq!(report["address_source"], "self-assigned", "{report:#}");
    assert_eq!(report["address"], "10.77.0.1");
    assert_eq!(report["prefix_len"], 24);
    assert!(report["address_reason"].as_str().unwrap().contains("no DHCP lease"), "{report:#}");
    assert_eq!(report["dhcp"]["mode"], "full");
    assert_eq!(report["dhcp"]["range"], serde_json::json!(["10.77.0.1", "10.77.0.254"]));
    let shown = server_ns.ip(&["-4", "addr", "show", "dev", "br0"]);
    assert!(shown.contains("inet 10.77.0.1/24") && shown.contains("UP"), "{shown}");

    let lease = udhcpc(&client_ns, &dir);
    assert_eq!(field(&lease, "ip"), "10.77.0.2", "{lease}\n{}", server.log_text());
    assert_eq!(field(&lease, "serverid"), "10.77.0.1", "{lease}");
    assert_eq!(field(&lease, "subnet"), "255.255.255.0", "{lease}");
    eprintln!("bare interface: address settled and served in {settle:?}");

    // A restart finds its own address on br0 and serves the same range: the client's
    // lease is still its own.
    drop(server);
    let (_again, report) = start_bare(&server_ns, &dir, "serve2.log");
    assert_eq!(report["address_source"], "self-assigned", "{report:#}");
    assert!(report["address_reason"].as_str().unwrap().contains("earlier start"), "{report:#}");
    assert_eq!(report["address"], "10.77.0.1");
    assert_eq!(report["dhcp"]["range"], serde_json::json!(["10.77.0.1", "10.77.0.254"]));
    let lease = udhcpc(&client_ns, &dir);
    assert_eq!(field(&lease, "ip"), "10.77.0.2", "{lease}");
}

#[test]
fn bare_interface_takes_the_lan_dhcp_lease_and_runs_proxy_only() {
    // The LAN: dnsmasq (addresses only) in its own namespace, joined to the segment.
    let server_ns = Netns::new("vls");
    server_ns.ip(&["link", "add", "br0", "type", "bridge"]);
    let lan_ns = Netns::new("vll");
    server_ns.veth_to("vl0", Some("br0"), &lan_ns, "eth0", Some("10.88.0.1/24"));
    let client_ns = Netns::new("vlc");
    server_ns.veth_to("vc0", Some("br0"), &client_ns, "eth0", None);
    server_ns.ip(&["link", "set", "br0", "up"]);
    let dir = scratch("bare-lan");
    let mut dnsmasq = lan_ns.command("dnsmasq");
    dnsmasq.args(["--no-daemon", "--port=0", "--interface=eth0", "--bind-interfaces", "--user=root", "--no-ping", "--log-dhcp"]);
    dnsmasq.args(["--dhcp-range=10.88.0.50,10.88.0.99,255.255.255.0,2m", "--dhcp-option=3,10.88.0.1"]);
    dnsmasq.arg(format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()));
    dnsmasq.arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()));
    let mut dnsmasq = Process::spawn(dnsmasq, &dir.join("dnsmasq.log"));
    dnsmasq.wait_for_log("DHCP, IP range 10.88.0.50", Duration::from_secs(10));

    let (server, report) = start_bare(&server_ns, &dir, "serve.log");
    assert_eq!(report["address_source"], "dhcp", "{report:#}");
    let address: std::net::Ipv4Addr = report["address"].as_str().unwrap().parse().unwrap();
    assert!((50..=99).contains(&address.octets()[3]) && address.octets()[..3] == [10, 88, 0], "{report:#}");
    assert!(report["address_reason"].as_str().unwrap().contains("DHCP server 10.88.0.1"), "{report:#}");
    assert_eq!(report["dhcp"]["mode"], "proxy", "{report:#}");
    assert!(report["dhcp"]["reason"].as_str().unwrap().contains("10.88.0.1"), "{report:#}");
    let routes = server_ns.ip(&["-4", "route", "show"]);
    assert!(routes.contains("default via 10.88.0.1 dev br0"), "{routes}");

    // An ordinary client gets its address from dnsmasq; VIVER gives none.
    let lease = udhcpc(&client_ns, &dir);
    assert_eq!(field(&lease, "serverid"), "10.88.0.1", "{lease}\n{}", server.log_text());
    let ip: std::net::Ipv4Addr = field(&lease, "ip").parse().unwrap();
    assert_ne!(ip, address);
    assert!(!server.log_text().contains("OFFER 10."), "VIVER offered an address in proxy mode:\n{}", server.log_text());
    assert!(dnsmasq.log_text().contains("DHCPACK"), "{}", dnsmasq.log_text());

    // dnsmasq's shortest lease (2 minutes) is renewed at half its time.
    let mut server = server;
    server.wait_for_log(&format!("lease of {address} renewed by 10.88.0.1"), Duration::from_secs(90));
}

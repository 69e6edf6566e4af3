//! RUNES across a LAN made by the test (root): three network namespaces on a bridge, a
//! `web` node (the README's shell plugin) and an `ip-address` node announcing themselves
//! with DNS-SD over multicast DNS, and `viver find` from the bridge's side listing who
//! provides what; a node that stops says goodbye and is no longer found. Nothing leaves
//! the namespaces.

mod net;

use net::{Netns, Process};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The README's example roles file (the README test checks they agree).
const ROLES: &str = include_str!("fixtures/runes/roles.toml");

fn viver() -> &'static str {
    env!("CARGO_BIN_EXE_viver")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/runes-tmp").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `viver node` inside `ns`, announcing on `interface`.
fn node(ns: &Netns, dir: &Path, name: &str, role: &str, interface: &str) -> Process {
    let mut command = ns.command(viver());
    command
        .args(["node", "--role", role, "--interface", interface, "--name", name, "--roles-file"])
        .arg(dir.join("roles.toml"))
        .arg("--plugins-dir")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runes"))
        .arg("--socket")
        .arg(dir.join(format!("{name}.sock")));
    Process::spawn(command, &dir.join(format!("{name}.log")))
}

/// `viver find ARGS --json` from the bridge's namespace.
fn find(lan: &Netns, args: &[&str]) -> (i32, Vec<Value>) {
    let out = lan.command(viver()).arg("find").args(args).args(["--json", "--on", "br0", "--wait-ms", "2500"]).output().unwrap();
    let found: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), found)
}

fn names(found: &[Value]) -> Vec<String> {
    found.iter().map(|f| f["node"].as_str().unwrap_or("").to_string()).collect()
}

/// Repeats `viver find` until `done` holds; panics after `limit` with what was found.
fn find_until(lan: &Netns, args: &[&str], limit: Duration, done: impl Fn(i32, &[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let (code, found) = find(lan, args);
        if done(code, &found) {
            return found;
        }
        assert!(Instant::now() < deadline, "viver find {args:?} gave {code} and {found:#?} until the deadline");
    }
}

#[test]
fn nodes_announce_what_they_provide_and_find_lists_them_until_they_leave() {
    let dir = scratch("lan");
    std::fs::write(dir.join("roles.toml"), ROLES).unwrap();
    let lan = Netns::new("rl");
    lan.bridge("br0", "10.79.0.254/24");
    // Without an IGMP querier a snooping bridge may hold multicast back: flood it.
    lan.ip(&["link", "set", "br0", "type", "bridge", "mcast_snooping", "0"]);
    let a = Netns::new("ra");
    let b = Netns::new("rb");
    lan.veth_to("pa", Some("br0"), &a, "eth0", Some("10.79.0.1/24"));
    lan.veth_to("pb", Some("br0"), &b, "eth0", Some("10.79.0.2/24"));

    let mut web = node(&a, &dir, "web-a", "web", "eth0");
    let mut plain = node(&b, &dir, "plain-b", "ip-address", "eth0");
    web.wait_for_log("announcing web-a._viver._tcp.local. on eth0 (10.79.0.1)", Duration::from_secs(20));
    plain.wait_for_log("announcing plain-b._viver._tcp.local. on eth0 (10.79.0.2)", Duration::from_secs(20));

    // Only the web node provides greeting; both provide ip-address.
    let found = find_until(&lan, &["greeting"], Duration::from_secs(30), |code, f| code == 0 && !f.is_empty());
    assert_eq!(names(&found), ["web-a"]);
    assert_eq!(found[0]["addresses"], serde_json::json!(["10.79.0.1"]));
    assert_eq!(found[0]["roles"], serde_json::json!(["web"]));
    assert_eq!(found[0]["provides"], serde_json::json!(["greeting", "ip-address"]));
    let found = find_until(&lan, &["ip-address"], Duration::from_secs(30), |_, f| f.len() == 2);
    assert_eq!(names(&found), ["plain-b", "web-a"]);
    assert_eq!(found[0]["addresses"], serde_json::json!(["10.79.0.2"]));

    // The text form: one line per node, name and address first.
    let out = lan.command(viver()).args(["find", "ip-address", "--on", "br0", "--wait-ms", "2500"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("web-a 10.79.0.1 ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("plain-b 10.79.0.2 ")), "{text}");

    // Nobody provides this: nothing printed, exit status 1.
    let (code, found) = find(&lan, &["nonesuch"]);
    assert_eq!((code, found.len()), (1, 0));

    // The web node leaves (SIGTERM: its announcement is withdrawn); the other stays.
    // SAFETY: a signal to the `ip netns exec` child this test started, which execs viver.
    unsafe { libc::kill(web.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while web.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "web-a did not stop:\n{}", web.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let found = find_until(&lan, &["ip-address"], Duration::from_secs(30), |_, f| f.len() == 1);
    assert_eq!(names(&found), ["plain-b"]);
    let (code, _) = find(&lan, &["greeting"]);
    assert_eq!(code, 1);
}

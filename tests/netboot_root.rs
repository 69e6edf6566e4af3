//! A netbooted root in use: a real Debian system (systemd) boots diskless from `viver
//! serve` to multi-user and powers off cleanly with its root still served by VIVER's
//! daemon; and a test root keeps working across a cut link: a read stalls while the
//! link is down and completes, with the right bytes, when it is back; and a boot profile
//! recorded on one node (`viver.vfield.record`), shipped with `viver-kit profile`, is
//! prefetched by the next. Each test runs in its own network namespace, one VM at a time.

mod net;
mod qemu;

use net::netboot::{Lab, SERVER};
use net::scratch;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CMDLINE: &str = "console=ttyS0 panic=-1 viver.panic=halt viver.panic_wait=0";

/// The kit initrd for the harness kernel, and the kit image of `root` as DIR/NAME.squashfs.
fn kit_initrd_and_image(dir: &Path, root: &Path, name: &str) -> (PathBuf, PathBuf) {
    let initrd = dir.join("initrd.img");
    let modules = qemu::modules_dir();
    qemu::kit(&["initrd", "--modules", modules.to_str().unwrap(), "-o", initrd.to_str().unwrap()]);
    let image = dir.join(format!("{name}.squashfs"));
    qemu::kit(&["image", root.to_str().unwrap(), "-o", image.to_str().unwrap(), "--name", name]);
    (initrd, image)
}

/// Lines of kernel messages that mean the root's block device failed a read.
fn io_errors(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains("I/O error") || (l.contains("nbd") && (l.contains("timed out") || l.contains("Receive control failed"))))
        .collect()
}

#[test]
fn a_netbooted_debian_reaches_multi_user_and_powers_off_cleanly() {
    net::require_root();
    let dir = scratch("netboot-debian");
    let root = qemu::extract_debian_root(&dir.join("root"));
    let (initrd, image) = kit_initrd_and_image(&dir, &root, "debian");
    let lab = Lab::new(&dir);
    let (_server, _) = lab.serve(&image, &qemu::kernel(), &initrd, CMDLINE);
    let mut client = lab.client("client", "tap0", "q35", "virtio-net-pci", "52:54:00:77:01:01", 1024);
    let text = client.wait_for("VIVER-DEBIAN-UP", Duration::from_secs(400));
    let up = client.started.elapsed();
    let serial = qemu::SerialLog { text: text.clone() };
    assert_eq!(serial.line_after("SYSTEM-STATE: ").as_deref(), Some("running"), "{}", client.tail(60));
    let daemons = serial.line_after("ROOT-DAEMONS: ");
    assert!(
        daemons.as_deref().is_some_and(|d| d.contains("@viver-daemon")),
        "VIVER's daemon is not running in the booted system: {daemons:?}\n{}",
        client.tail(60)
    );
    // The image came over the network, not from a disk (the VM has none).
    assert!(text.contains("/dev/nbd0 serves http://10.77.0.1:80/image/debian.squashfs"), "{}", client.tail(60));
    // The unit powers the system off: a clean shutdown ends QEMU (-no-reboot) by itself.
    let status = client.wait_exit(Duration::from_secs(180));
    let text = client.text();
    assert!(status.is_some(), "the netbooted Debian did not power off within 180 s:\n{}", client.tail(60));
    assert!(text.contains("reboot: Power down"), "no clean power-off:\n{}", client.tail(60));
    assert!(io_errors(&text).is_empty(), "read errors on the network root:\n{}", io_errors(&text).join("\n"));
    eprintln!("netbooted Debian: multi-user after {up:.1?}, powered off after {:.1?}", client.started.elapsed());
}

/// The test root plus `/data/unread.bin`, a file no boot reads; returns its SHA-256.
fn root_with_unread_file(dir: &Path) -> (PathBuf, String) {
    let root = dir.join("root");
    qemu::run_ok(Command::new("cp").arg("-a").arg(qemu::testroot_dir()).arg(&root));
    std::fs::create_dir_all(root.join("data")).unwrap();
    let data = net::random_bytes(3 << 20, 77);
    std::fs::write(root.join("data/unread.bin"), &data).unwrap();
    let want = {
        use std::io::Write;
        let mut child = Command::new("sha256sum").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(&data).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().split_whitespace().next().unwrap().to_string()
    };
    (root, want)
}

#[test]
fn a_read_stalls_while_the_link_is_cut_and_completes_when_it_is_back() {
    net::require_root();
    let dir = scratch("netboot-link-cut");
    // A file no boot reads: the read after the cut must fetch.
    let (root, want) = root_with_unread_file(&dir);
    let (initrd, image) = kit_initrd_and_image(&dir, &root, "cut");
    let lab = Lab::new(&dir);
    // From the server alone (V-FIELD's background fill would fetch the file before the cut).
    let cmdline = format!("{CMDLINE} viver.vfield=off testroot.cmd=sleep,3 testroot.cmd=sha256sum,/data/unread.bin");
    let (_server, _) = lab.serve(&image, &qemu::kernel(), &initrd, &cmdline);
    let mut client = lab.client("client", "tap0", "pc", "e1000", "52:54:00:77:02:01", 768);
    client.wait_for("CMD-BEGIN sleep 3", Duration::from_secs(300));
    lab.ns.ip(&["link", "set", "tap0", "down"]);
    let cut = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let during = client.text();
    assert!(during.contains("CMD-BEGIN sha256sum"), "the read did not start while the link was down:\n{}", client.tail(30));
    assert!(!during.contains(&want), "the file was read with the link down: it was not fetched lazily");
    lab.ns.ip(&["link", "set", "tap0", "up"]);
    let text = client.wait_for("VIVER-TESTROOT-DONE", Duration::from_secs(120));
    let resumed = cut.elapsed();
    let serial = qemu::SerialLog { text: text.clone() };
    let output = serial.section("CMD-BEGIN sha256sum /data/unread.bin", "CMD-END rc=0").unwrap_or_else(|| panic!("{}", client.tail(40)));
    assert!(output.iter().any(|l| l.starts_with(&want)), "wrong bytes after the cut: {output:?}, want {want}");
    assert!(io_errors(&text).is_empty(), "read errors on the network root:\n{}", io_errors(&text).join("\n"));
    eprintln!("link cut for 10 s: the stalled read completed {resumed:.1?} after the cut (server {SERVER})");
}

#[test]
fn toram_over_the_network_needs_no_network_afterwards() {
    net::require_root();
    let dir = scratch("netboot-toram");
    let (root, want) = root_with_unread_file(&dir);
    let (initrd, image) = kit_initrd_and_image(&dir, &root, "ram");
    let lab = Lab::new(&dir);
    let cmdline = format!("{CMDLINE} viver.toram testroot.cmd=sleep,3 testroot.cmd=sha256sum,/data/unread.bin");
    let (_server, _) = lab.serve(&image, &qemu::kernel(), &initrd, &cmdline);
    let mut client = lab.client("client", "tap0", "pc", "e1000", "52:54:00:77:03:01", 768);
    let text = client.wait_for("CMD-BEGIN sleep 3", Duration::from_secs(300));
    // The link goes away for good: everything must already be in RAM.
    lab.ns.ip(&["link", "set", "tap0", "down"]);
    let report = qemu::SerialLog { text }.boot_json().unwrap();
    assert_eq!(report["image"]["media"], "network", "{report}");
    assert_eq!(report["image"]["toram"], true, "{report}");
    assert_eq!(report["image"]["verification"]["complete"], true, "{report}");
    let text = client.wait_for("VIVER-TESTROOT-DONE", Duration::from_secs(60));
    let serial = qemu::SerialLog { text: text.clone() };
    let output = serial.section("CMD-BEGIN sha256sum /data/unread.bin", "CMD-END rc=0").unwrap_or_else(|| panic!("{}", client.tail(40)));
    assert!(output.iter().any(|l| l.starts_with(&want)), "wrong bytes from the RAM copy: {output:?}, want {want}");
    assert!(serial.mount_at("/run/viver/image").is_some_and(|m| m.device.starts_with("/dev/loop")), "{}", client.tail(30));
}

#[test]
fn a_recorded_boot_profile_is_shipped_by_the_kit_and_prefetched_by_the_next_node() {
    net::require_root();
    let dir = scratch("netboot-profile");
    // A file no boot reads: the profile must leave its chunks out.
    let (root, _) = root_with_unread_file(&dir);
    let (initrd, image) = kit_initrd_and_image(&dir, &root, "prof");
    let chunk_count = std::fs::metadata(&image).unwrap().len().div_ceil(256 << 10) as usize;
    let lab = Lab::new(&dir);
    // 1. A node records the first 15 s of its reads; its testroot prints the recording.
    //    (loglevel=4: no kernel line cuts into what `cat` prints.)
    let profile_file = "/run/viver/vfield-profile.toml";
    let cmdline = format!("{CMDLINE} loglevel=4 viver.vfield.record=15 testroot.cmd=sleep,16 testroot.cmd=cat,{profile_file}");
    let (server, _) = lab.serve(&image, &qemu::kernel(), &initrd, &cmdline);
    let mut recorder = lab.client("recorder", "tap0", "pc", "e1000", "52:54:00:77:04:01", 768);
    let text = recorder.wait_for("VIVER-TESTROOT-DONE", Duration::from_secs(300));
    let serial = qemu::SerialLog { text };
    let report = serial.boot_json().unwrap();
    assert_eq!(report["network"]["recording_seconds"], 15, "{report}");
    let recording = serial
        .section(&format!("CMD-BEGIN cat {profile_file}"), "CMD-END rc=0")
        .unwrap_or_else(|| panic!("no recording on the console:\n{}", recorder.tail(40)));
    let recording_path = dir.join("recorded.toml");
    std::fs::write(&recording_path, recording.join("\n") + "\n").unwrap();
    drop(recorder);
    drop(server);

    // 2. The kit ships it; the image's bytes stay.
    let out = qemu::kit(&["profile", image.to_str().unwrap(), recording_path.to_str().unwrap()]);
    let shipped: usize = out
        .split("boot profile of ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(shipped >= 2, "a boot reads more than {shipped} chunks: {out}");
    assert!(shipped + 8 <= chunk_count, "{shipped} of {chunk_count} chunks: the unread 3 MiB file is in the profile");

    // 3. The next node, booted from the same server, fetches the profile without being
    //    asked and its boot finds the chunks there.
    let (_server, _) = lab.serve(&image, &qemu::kernel(), &initrd, CMDLINE);
    let mut next = lab.client("next", "tap1", "pc", "e1000", "52:54:00:77:04:02", 768);
    let text = next.wait_for("VIVER-TESTROOT-DONE", Duration::from_secs(300));
    let serial = qemu::SerialLog { text: text.clone() };
    assert_eq!(serial.boot_json().unwrap()["network"]["profile_chunks"], shipped, "{}", next.tail(40));
    let held = serial
        .lines()
        .find_map(|l| l.split_once("V-FIELD: boot profile held: ").map(|(_, rest)| rest.to_string()))
        .unwrap_or_else(|| panic!("the profile was never held:\n{}", next.tail(60)));
    assert!(held.starts_with(&format!("{shipped} chunks")), "{held}");
    // The same boot reads the same chunks: at most a stray read outside the profile.
    let misses: u64 = held.split("; ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
    assert!(misses <= 2, "the boot waited for {misses} chunks the profile did not have: {held}");
    eprintln!("boot profile: {shipped} chunks recorded and shipped; the next node held them ({held})");
}

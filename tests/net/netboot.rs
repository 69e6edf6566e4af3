//! A netboot lab: a namespace with a bridge (10.77.0.1/24 on the host side), `viver
//! serve` on it, and diskless QEMU clients on taps that boot with `-boot n` (QEMU's
//! iPXE ROM). One client VM at a time per test process unless a test asks for more.

use super::{viver, wait_report, Netns, Process};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SERVER: &str = "10.77.0.1";

pub struct Lab {
    pub ns: Netns,
    pub dir: PathBuf,
}

impl Lab {
    pub fn new(dir: &Path) -> Lab {
        let ns = Netns::new("vnb");
        ns.bridge("br0", &format!("{SERVER}/24"));
        Lab { ns, dir: dir.to_path_buf() }
    }

    /// A segment with no address on the host side: only the VMs (and what a test adds)
    /// talk on it.
    pub fn bare(dir: &Path) -> Lab {
        let ns = Netns::new("vnl");
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["link", "set", "br0", "up"]);
        Lab { ns, dir: dir.to_path_buf() }
    }

    /// `viver serve` on br0 for `image` (its `.toml` beside it); returns it and serve.json.
    pub fn serve(&self, image: &Path, kernel: &Path, initrd: &Path, cmdline: &str) -> (Process, serde_json::Value) {
        let state = self.dir.join("state");
        let mut cmd = self.ns.command(viver());
        cmd.args(["serve", "--image"]).arg(image).arg("--manifest").arg(image.with_extension("toml"));
        cmd.arg("--kernel").arg(kernel).arg("--initrd").arg(initrd);
        cmd.args(["--interface", "br0", "--state-dir"]).arg(&state);
        cmd.args(["--survey-wait", "1", "--cmdline", cmdline]);
        cmd.env("RUST_LOG", "info");
        let mut p = Process::spawn(cmd, &self.dir.join("serve.log"));
        let report = wait_report(&state, &mut p, Duration::from_secs(30));
        p.wait_for_log("serve: ready", Duration::from_secs(10));
        (p, report)
    }

    /// A diskless client on a new tap `tap`: `machine` (pc, q35), `nic` (e1000,
    /// virtio-net-pci), serial console to `DIR/NAME.log`.
    pub fn client(&self, name: &str, tap: &str, machine: &str, nic: &str, mac: &str, memory_mb: u32) -> Client {
        self.vm(name, tap, machine, nic, mac, memory_mb, &["-boot", "n"])
    }

    /// A VM on a new tap with `extra` QEMU arguments (disks, `-boot`).
    #[allow(clippy::too_many_arguments)]
    pub fn vm(&self, name: &str, tap: &str, machine: &str, nic: &str, mac: &str, memory_mb: u32, extra: &[&str]) -> Client {
        self.ns.tap(tap, "br0");
        let log = self.dir.join(format!("{name}.log"));
        let mut cmd = self.ns.command("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-machine", machine, "-m", &memory_mb.to_string(), "-smp", "1"]);
        cmd.args(["-nodefaults", "-nographic", "-no-reboot", "-vga", "none"]);
        cmd.arg("-serial").arg(format!("file:{}", log.display()));
        cmd.args(["-netdev", &format!("tap,id=n0,ifname={tap},script=no,downscript=no")]);
        cmd.args(["-device", &format!("{nic},netdev=n0,mac={mac}")]).args(extra);
        let process = Process::spawn(cmd, &self.dir.join(format!("{name}.stderr")));
        Client { process, log, started: Instant::now() }
    }
}

pub struct Client {
    pub process: Process,
    pub log: PathBuf,
    pub started: Instant,
}

impl Client {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    pub fn tail(&self, n: usize) -> String {
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until the serial log contains `needle`; panics with the log's tail after
    /// `timeout` or when QEMU exits first.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            if let Ok(Some(status)) = self.process.child.try_wait() {
                panic!("QEMU exited ({status}) before {needle:?}:\n{}\n{}", self.process.log_text(), self.tail(60));
            }
            assert!(Instant::now() < deadline, "no {needle:?} within {timeout:?}:\n{}", self.tail(60));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for QEMU to exit by itself (the guest powered off; `-no-reboot`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.process.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

/// The LAN's own DHCP server: dnsmasq (addresses 10.77.0.50-60 only, plus `extra`
/// options) in a namespace of its own at `address`, joined to the bridge `br0` of `ns`
/// by the veth `veth`. Its log goes to `DIR/dnsmasq.log`. Keep both alive while needed.
pub fn lan_dhcp(ns: &Netns, dir: &Path, veth: &str, address: &str, extra: &[&str]) -> (Netns, Process) {
    let lan = Netns::new("vld");
    ns.veth_to(veth, Some("br0"), &lan, "eth0", Some(&format!("{address}/24")));
    let mut dnsmasq = lan.command("dnsmasq");
    dnsmasq.args([
        "--keep-in-foreground",
        "--no-daemon",
        "--port=0",
        "--no-resolv",
        "--no-hosts",
        "--no-ping",
        "--interface=eth0",
        "--bind-interfaces",
        "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,1h",
        "--dhcp-leasefile=/dev/null",
        "--log-dhcp",
    ]);
    dnsmasq.args(extra);
    let process = Process::spawn(dnsmasq, &dir.join("dnsmasq.log"));
    std::thread::sleep(Duration::from_millis(500));
    (lan, process)
}

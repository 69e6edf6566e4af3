//! Network namespaces, veth pairs, bridges and taps for the serve tests, and a
//! `viver serve` process. Everything is created with unique names and removed on
//! drop (also when the test panics). Not root: the test fails and says so.
#![allow(dead_code)]

pub mod netboot;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn require_root() {
    assert!(nix_uid() == 0, "this test creates network namespaces and must run as root (it skips nothing silently)");
}

fn nix_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique short name (interface names are limited to 15 bytes).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id() % 100000, COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// A network namespace, deleted on drop with everything in it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        require_root();
        let name = unique(prefix);
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// A command run inside the namespace (`ip netns exec NS PROGRAM`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// A bridge `name` in the namespace with `address` (CIDR), up.
    pub fn bridge(&self, name: &str, address: &str) {
        self.ip(&["link", "add", name, "type", "bridge"]);
        self.ip(&["addr", "add", address, "dev", name]);
        self.ip(&["link", "set", name, "up"]);
    }

    /// A tap for a VM, attached to `bridge`.
    pub fn tap(&self, name: &str, bridge: &str) {
        self.ip(&["tuntap", "add", "dev", name, "mode", "tap"]);
        self.ip(&["link", "set", name, "master", bridge, "up"]);
    }

    /// A veth pair: `here` in this namespace on `bridge` (if any), `there` in `other`
    /// with `address` (CIDR), both up.
    pub fn veth_to(&self, here: &str, bridge: Option<&str>, other: &Netns, there: &str, address: Option<&str>) {
        self.ip(&["link", "add", here, "type", "veth", "peer", "name", there, "netns", &other.name]);
        if let Some(bridge) = bridge {
            self.ip(&["link", "set", here, "master", bridge]);
        }
        self.ip(&["link", "set", here, "up"]);
        if let Some(address) = address {
            other.ip(&["addr", "add", address, "dev", there]);
        }
        other.ip(&["link", "set", there, "up"]);
    }

    /// Runs `f` on a thread inside the namespace (sockets it creates stay there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this thread only, with a valid namespace fd.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside would keep interfaces alive: kill them first.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: plain kill of a process inside our own test namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A child process killed (and reaped) on drop; its stderr goes to `log`.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(mut command: Command, log: &Path) -> Process {
        let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = file.try_clone().unwrap();
        let child = command.stdin(Stdio::null()).stdout(file).stderr(err).spawn().unwrap_or_else(|e| panic!("{command:?}: {e}"));
        Process { child, log: log.to_path_buf() }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.log_text();
            if text.contains(needle) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("process exited ({status}) before logging {needle:?}:\n{text}");
            }
            assert!(Instant::now() < deadline, "no {needle:?} in {} within {timeout:?}:\n{text}", self.log.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release binary (built by `cargo test --release` for the integration tests).
pub fn viver() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let bin = target.join("x86_64-unknown-linux-gnu/release/viver");
    assert!(bin.is_file(), "missing {}: cargo build --release", bin.display());
    bin
}

/// A fresh scratch directory `target/serve-tmp/NAME`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/serve-tmp").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Files to serve: kernel, initrd, image, manifest and fake iPXE binaries of
/// pseudo-random bytes (sizes chosen to end inside, and exactly on, block edges).
pub struct Fixture {
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub image: PathBuf,
    pub manifest: PathBuf,
    pub ipxe_dir: PathBuf,
}

pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn fixture(dir: &Path) -> Fixture {
    let f = Fixture {
        dir: dir.to_path_buf(),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        image: dir.join("demo.squashfs"),
        manifest: dir.join("demo.toml"),
        ipxe_dir: dir.join("ipxe"),
    };
    std::fs::create_dir_all(&f.ipxe_dir).unwrap();
    std::fs::write(&f.kernel, random_bytes(300_001, 1)).unwrap();
    std::fs::write(&f.initrd, random_bytes(100_000, 2)).unwrap();
    std::fs::write(&f.image, random_bytes(3_000_000, 3)).unwrap();
    std::fs::write(&f.manifest, "name = \"demo\"\n").unwrap();
    std::fs::write(f.ipxe_dir.join("undionly.kpxe"), random_bytes(70_123, 4)).unwrap();
    std::fs::write(f.ipxe_dir.join("ipxe.efi"), random_bytes(1_048_576, 5)).unwrap();
    std::fs::write(f.ipxe_dir.join("snponly.efi"), random_bytes(512 * 300, 6)).unwrap();
    f
}

/// `viver serve` arguments for a fixture.
pub fn serve_args(f: &Fixture, state: &Path) -> Vec<String> {
    [
        "serve",
        "--image",
        f.image.to_str().unwrap(),
        "--kernel",
        f.kernel.to_str().unwrap(),
        "--initrd",
        f.initrd.to_str().unwrap(),
        "--manifest",
        f.manifest.to_str().unwrap(),
        "--ipxe-dir",
        f.ipxe_dir.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Waits for `STATE/serve.json` with a settled DHCP mode and returns it.
pub fn wait_report(state: &Path, server: &mut Process, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(state.join("serve.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if v["dhcp"]["reason"] != "starting" {
                    return v;
                }
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("viver serve exited ({status}):\n{}", server.log_text());
        }
        assert!(Instant::now() < deadline, "no serve.json within {timeout:?}:\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free port on 127.0.0.1 (TCP and UDP both checked).
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

//! Shared helpers of the kit tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn viver() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_viver"));
    c.arg("kit");
    c
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("command starts");
    assert!(out.status.success(), "{:?} failed: {}\n{}", cmd, String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[path = "../kernel/mod.rs"]
mod kernel;
pub use kernel::TestKernel;

/// The unpacked harness kernel (see `tests/kernel/mod.rs`: VIVER_KERNEL_ROOT or the cache).
pub fn kernel_root() -> PathBuf {
    TestKernel::main().root
}

pub fn release() -> String {
    TestKernel::main().release
}

pub fn release_dir() -> PathBuf {
    TestKernel::main().modules_dir()
}

pub fn vmlinuz() -> PathBuf {
    TestKernel::main().vmlinuz()
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kit-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small Linux-looking root with everything the image must leave out or adapt.
pub fn fake_root(dir: &Path) -> PathBuf {
    let r = dir.join("root");
    for d in ["etc/ssh", "usr/bin", "proc/1", "sys/kernel", "dev", "run/lock", "tmp", "lib/modules/6.1.0-0-fake", "var/lib"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("usr/bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
    std::fs::write(r.join("etc/fstab"), "# static file system information\nUUID=1234-abcd / ext4 errors=remount-ro 0 1\n/dev/sda2 /home ext4 defaults 0 2\n/swapfile none swap sw 0 0\ntmpfs /tmp tmpfs defaults 0 0\n").unwrap();
    std::fs::write(r.join("etc/machine-id"), "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(r.join("etc/hostname"), "source\n").unwrap();
    std::fs::write(r.join("etc/ssh/ssh_host_ed25519_key"), "SECRET").unwrap();
    std::fs::write(r.join("etc/ssh/ssh_host_ed25519_key.pub"), "PUBLIC").unwrap();
    std::fs::write(r.join("etc/ssh/sshd_config"), "Port 22\n").unwrap();
    std::fs::write(r.join("proc/1/status"), "x").unwrap();
    std::fs::write(r.join("sys/kernel/x"), "x").unwrap();
    std::fs::write(r.join("run/lock/x"), "x").unwrap();
    std::fs::write(r.join("tmp/junk"), "x").unwrap();
    std::fs::write(r.join("dev/null-ish"), "x").unwrap();
    std::fs::write(r.join("swapfile"), vec![0u8; 4096]).unwrap();
    r
}

pub fn unsquashfs_list(image: &Path) -> Vec<String> {
    let out = run_ok(Command::new("unsquashfs").arg("-l").arg("-d").arg("").arg(image));
    stdout(&out).lines().map(|l| l.trim().to_string()).filter(|l| l.starts_with('/')).collect()
}

pub fn unsquashfs_cat(image: &Path, path: &str) -> Vec<u8> {
    run_ok(Command::new("unsquashfs").arg("-cat").arg(image).arg(path)).stdout
}

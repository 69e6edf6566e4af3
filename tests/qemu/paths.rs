//! Where things are: the repository, the harness kernel and modules, the viver
//! binary, the test roots, per-test scratch directories.

use std::fs;
use std::path::PathBuf;

/// Root of the repository (the crate's manifest directory).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_dir().join("target"),
    }
}

#[path = "../kernel/mod.rs"]
mod kernel;
pub use kernel::TestKernel;

/// The unpacked harness kernel package (see `tests/kernel/mod.rs` for the rule).
/// Panics (failing the test) with the fix when it is missing: a test that needs the
/// kernel must not pass silently without it.
pub fn kernel_root() -> PathBuf {
    TestKernel::main().root
}

/// Kernel release of the harness kernel, e.g. `6.1.0-57-amd64`.
pub fn kernel_version() -> String {
    TestKernel::main().release
}

/// The harness kernel image (`boot/vmlinuz-<version>`).
pub fn kernel() -> PathBuf {
    TestKernel::main().vmlinuz()
}

/// `lib/modules/<version>` of the harness kernel (read-only: copy before depmod).
pub fn modules_dir() -> PathBuf {
    TestKernel::main().modules_dir()
}

/// One module file of the harness kernel, found by name (`-` and `_` are the same).
pub fn module_path(name: &str) -> PathBuf {
    TestKernel::main().module_path(name)
}

/// The static release binary (`/init` of the initramfs). Panics with the fix if absent.
pub fn viver_bin() -> PathBuf {
    let path = target_dir().join("x86_64-unknown-linux-gnu/release/viver");
    assert!(path.is_file(), "missing {}: run `cargo build --release` first", path.display());
    path
}

/// `qemu-harness/work`: test roots and other artifacts built by the harness scripts.
pub fn work_dir() -> PathBuf {
    repo_dir().join("qemu-harness/work")
}

/// The busybox test root built by `qemu-harness/make-testroot`.
pub fn testroot_dir() -> PathBuf {
    let dir = work_dir().join("testroot");
    assert!(dir.join("sbin/init").is_file(), "missing {}: run qemu-harness/make-testroot first", dir.display());
    dir
}

/// The Debian 12 root tarball built by `qemu-harness/make-debian-root`.
pub fn debian_root_tarball() -> PathBuf {
    let path = work_dir().join("debian-root.tar.zst");
    assert!(path.exists(), "missing {}: run qemu-harness/make-debian-root first", path.display());
    path
}

/// A fresh, empty directory for one test: `target/qemu-tmp/<name>`. Wiped on creation
/// rather than on drop, so a failed test's files stay there to be looked at.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = target_dir().join("qemu-tmp").join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("cannot wipe {}: {e}", dir.display()));
    }
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

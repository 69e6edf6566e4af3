//! Where things are: the repository, the harness kernel and modules, the viver
//! binary, the test roots, per-test scratch directories.

use std::fs;
use std::path::{Path, PathBuf};

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

/// The unpacked Debian kernel package: `$VIVER_KERNEL_ROOT` or the harness cache.
/// Panics (failing the test) with the fix when it is missing: a test that needs the
/// kernel must not pass silently without it.
pub fn kernel_root() -> PathBuf {
    let root = match std::env::var_os("VIVER_KERNEL_ROOT") {
        Some(dir) => PathBuf::from(dir),
        None => repo_dir().join("qemu-harness/cache/kernel/root"),
    };
    assert!(
        root.join("boot").is_dir() && root.join("lib/modules").is_dir(),
        "no kernel at {} (boot/ and lib/modules/ expected): run qemu-harness/setup first",
        root.display()
    );
    root
}

/// Kernel release of the harness kernel, e.g. `6.1.0-56-amd64` (the one directory
/// under `lib/modules`).
pub fn kernel_version() -> String {
    let modules = kernel_root().join("lib/modules");
    let mut versions: Vec<String> = fs::read_dir(&modules)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", modules.display()))
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "no kernel version under {}: run qemu-harness/setup first",
            modules.display()
        )
    })
}

/// The harness kernel image (`boot/vmlinuz-<version>`).
pub fn kernel() -> PathBuf {
    let path = kernel_root()
        .join("boot")
        .join(format!("vmlinuz-{}", kernel_version()));
    assert!(
        path.is_file(),
        "missing {}: run qemu-harness/setup first",
        path.display()
    );
    path
}

/// `lib/modules/<version>` of the harness kernel (read-only: copy before depmod).
pub fn modules_dir() -> PathBuf {
    kernel_root().join("lib/modules").join(kernel_version())
}

/// One module file of the harness kernel, found by name (`-` and `_` are the same).
pub fn module_path(name: &str) -> PathBuf {
    let wanted = format!("{}.ko", name.replace('-', "_"));
    find_file(&modules_dir().join("kernel"), &|file_name: &str| {
        file_name.replace('-', "_") == wanted
    })
    .unwrap_or_else(|| panic!("module {name} not found under {}", modules_dir().display()))
}

fn find_file(dir: &Path, matches: &dyn Fn(&str) -> bool) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, matches) {
                return Some(found);
            }
        } else if matches(&entry.file_name().to_string_lossy()) {
            return Some(path);
        }
    }
    None
}

/// The static release binary (`/init` of the initramfs). Panics with the fix if absent.
pub fn viver_bin() -> PathBuf {
    let path = target_dir().join("x86_64-unknown-linux-gnu/release/viver");
    assert!(
        path.is_file(),
        "missing {}: run `cargo build --release` first",
        path.display()
    );
    path
}

/// `qemu-harness/work`: test roots and other artifacts built by the harness scripts.
pub fn work_dir() -> PathBuf {
    repo_dir().join("qemu-harness/work")
}

/// The busybox test root built by `qemu-harness/make-testroot`.
pub fn testroot_dir() -> PathBuf {
    let dir = work_dir().join("testroot");
    assert!(
        dir.join("sbin/init").is_file(),
        "missing {}: run qemu-harness/make-testroot first",
        dir.display()
    );
    dir
}

/// The Debian 12 root tarball built by `qemu-harness/make-debian-root`.
pub fn debian_root_tarball() -> PathBuf {
    let path = work_dir().join("debian-root.tar.zst");
    assert!(
        path.exists(),
        "missing {}: run qemu-harness/make-debian-root first",
        path.display()
    );
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

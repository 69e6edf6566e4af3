//! Shared helpers for the hardware tests: the real Debian kernel tree and a
//! depmod-generated copy of its tables (the reference we must equal).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const RELEASE: &str = "6.1.0-56-amd64";

/// The unpacked Debian kernel root (VIVER_KERNEL_ROOT or qemu-harness/cache/kernel/root).
pub fn kernel_root() -> PathBuf {
    let root = std::env::var_os("VIVER_KERNEL_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-harness/cache/kernel/root"));
    assert!(root.join("lib/modules").join(RELEASE).is_dir(), "kernel tree missing at {}: run qemu-harness/setup first", root.display());
    root
}

pub fn release_dir() -> PathBuf {
    kernel_root().join("lib/modules").join(RELEASE)
}

/// A private root whose lib/modules/<release> links to the real module files and
/// holds depmod's output (the real tree is never written to). Made once per test binary.
pub fn depmod_reference() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("depmod-ref-{}", std::process::id()));
        let rel = base.join("lib/modules").join(RELEASE);
        std::fs::create_dir_all(&rel).unwrap();
        let src = release_dir();
        std::os::unix::fs::symlink(src.join("kernel"), rel.join("kernel")).unwrap();
        for f in ["modules.builtin", "modules.order", "modules.builtin.modinfo"] {
            if src.join(f).exists() {
                std::fs::copy(src.join(f), rel.join(f)).unwrap();
            }
        }
        let st = Command::new("depmod").arg("-b").arg(&base).arg(RELEASE).status().expect("depmod (kmod) must be installed");
        assert!(st.success(), "depmod failed");
        rel
    })
    .clone()
}

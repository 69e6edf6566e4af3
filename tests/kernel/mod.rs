//! The test kernels, for every test crate (`tests/qemu/paths.rs`, `tests/hardware_common`,
//! `tests/kit_common` include this file). One rule, the same as `qemu-harness/lib.sh`:
//!
//! - the tree is `$VIVER_KERNEL_ROOT`, else `qemu-harness/cache/kernel/root` (the second
//!   generation: `$VIVER_KERNEL2_ROOT`, else `qemu-harness/cache/kernel-trixie/root`);
//! - its release and module directory are the ones `qemu-harness/fetch-kernel` recorded
//!   in `kernel.env` beside the tree; a tree without that record (one pointed at by hand)
//!   must hold exactly one `lib/modules/RELEASE` or `usr/lib/modules/RELEASE`.
//!
//! Whatever is missing fails the test with what is missing and what to run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// One unpacked Debian kernel package.
#[derive(Debug, Clone)]
pub struct TestKernel {
    /// The unpacked package (`boot/`, `lib/modules/` or `usr/lib/modules/`).
    pub root: PathBuf,
    /// e.g. `6.1.0-57-amd64`.
    pub release: String,
    /// `lib/modules/<release>` or `usr/lib/modules/<release>`, relative to `root`.
    pub modules_rel: PathBuf,
}

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl TestKernel {
    /// The harness kernel (Debian 12's, from the machine's own suite).
    pub fn main() -> TestKernel {
        static ONCE: std::sync::OnceLock<TestKernel> = std::sync::OnceLock::new();
        ONCE.get_or_init(|| {
            let root = std::env::var_os("VIVER_KERNEL_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_dir().join("qemu-harness/cache/kernel/root"));
            TestKernel::at(&root, "qemu-harness/setup")
        })
        .clone()
    }

    /// The second kernel generation (Debian 13's 6.12: `.ko.xz` under `usr/lib/modules`).
    pub fn second() -> TestKernel {
        static ONCE: std::sync::OnceLock<TestKernel> = std::sync::OnceLock::new();
        ONCE.get_or_init(|| {
            let root = std::env::var_os("VIVER_KERNEL2_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_dir().join("qemu-harness/cache/kernel-trixie/root"));
            TestKernel::at(&root, "qemu-harness/fetch-kernel trixie (qemu-harness/setup does it)")
        })
        .clone()
    }

    /// The kernel tree at `root`, by the rule above; `fix` is the command that makes it.
    pub fn at(root: &Path, fix: &str) -> TestKernel {
        assert!(
            root.is_dir(),
            "no kernel tree at {}: run {fix} (or set VIVER_KERNEL_ROOT to an unpacked linux-image package)",
            root.display()
        );
        let record = root.parent().map(|p| p.join("kernel.env"));
        let recorded = record
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| text.lines().find_map(|l| l.strip_prefix("KERNEL_MODULES=")).map(|v| PathBuf::from(v.trim())));
        let modules_rel = match recorded {
            Some(rel) => {
                assert!(
                    root.join(&rel).is_dir(),
                    "{} names {} but {} is missing: run {fix}",
                    record.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    rel.display(),
                    root.join(&rel).display()
                );
                rel
            }
            None => {
                let found = release_dirs(root);
                assert!(
                    found.len() == 1,
                    "{} has no kernel.env beside it and {} module directories (lib/modules/RELEASE or usr/lib/modules/RELEASE: {:?}), \
                     one expected: run {fix}, or point VIVER_KERNEL_ROOT at a tree with one release",
                    root.display(),
                    found.len(),
                    found
                );
                found.into_iter().next().unwrap_or_default()
            }
        };
        let release = modules_rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let kernel = TestKernel { root: root.to_path_buf(), release, modules_rel };
        assert!(kernel.vmlinuz().is_file(), "missing {}: run {fix}", kernel.vmlinuz().display());
        kernel
    }

    /// `<root>/lib/modules/<release>` (or `usr/lib/modules`): read-only, copy before depmod.
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join(&self.modules_rel)
    }

    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join("boot").join(format!("vmlinuz-{}", self.release))
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("boot").join(format!("config-{}", self.release))
    }

    /// One module file, found by name (`-` and `_` alike; `.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`).
    pub fn module_path(&self, name: &str) -> PathBuf {
        let wanted = name.replace('-', "_");
        find_file(&self.modules_dir().join("kernel"), &|file_name: &str| {
            let base = ["", ".xz", ".zst", ".gz"].iter().find_map(|ext| file_name.strip_suffix(&format!(".ko{ext}")));
            base.is_some_and(|b| b.replace('-', "_") == wanted)
        })
        .unwrap_or_else(|| panic!("module {name} not found under {}", self.modules_dir().display()))
    }
}

/// `lib/modules/*` and `usr/lib/modules/*` directories holding `modules.order` or `kernel/`.
fn release_dirs(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for base in ["lib/modules", "usr/lib/modules"] {
        let Ok(entries) = std::fs::read_dir(root.join(base)) else {
            continue;
        };
        let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for name in names {
            let rel = Path::new(base).join(&name);
            let dir = root.join(&rel);
            // With merged /usr, lib may be a link to usr/lib: count the directory once.
            if (dir.join("modules.order").is_file() || dir.join("kernel").is_dir())
                && !found.iter().any(|f: &PathBuf| root.join(f).canonicalize().ok() == dir.canonicalize().ok())
            {
                found.push(rel);
            }
        }
    }
    found
}

fn find_file(dir: &Path, matches: &dyn Fn(&str) -> bool) -> Option<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
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

//! Tiny busybox initramfs images for testing the harness itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::paths::module_path;

/// Pack a directory into a newc initramfs with the `cpio` tool (like the kernel
/// expects: relative paths, `.` first).
pub fn make_cpio(dir: &Path, out: &Path) -> Result<(), String> {
    let file = fs::File::create(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let script = "find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0";
    let status = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .stdout(file)
        .status()
        .map_err(|e| format!("run cpio in {}: {e}", dir.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cpio of {} failed: {status}", dir.display()))
    }
}

/// The harness kernel's modules needed to load `names`, dependencies first (resolved
/// with `modinfo -F depends`, since the package ships no modules.dep).
pub fn modules_with_deps(names: &[&str]) -> Vec<PathBuf> {
    fn visit(name: &str, seen: &mut Vec<String>, out: &mut Vec<PathBuf>) {
        let key = name.replace('-', "_");
        if seen.contains(&key) {
            return;
        }
        seen.push(key);
        let path = module_path(name);
        let output = Command::new("modinfo")
            .args(["-F", "depends"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("modinfo {}: {e} (apt-get install kmod)", path.display()));
        let depends = String::from_utf8_lossy(&output.stdout).into_owned();
        for dep in depends.trim().split(',').filter(|d| !d.is_empty()) {
            visit(dep, seen, out);
        }
        out.push(path);
    }
    let (mut seen, mut out) = (Vec::new(), Vec::new());
    for name in names {
        visit(name, &mut seen, &mut out);
    }
    out
}

/// The static busybox of the host (package busybox-static).
pub fn busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no busybox: run qemu-harness/setup (busybox-static)"))
}

/// A minimal initramfs for testing the harness itself: busybox at /bin/busybox with
/// /bin/sh, `init_script` as /init, and `modules` (plus their dependencies) as
/// /modules/NNN-<name>.ko, numbered in load order so that
/// `for m in /modules/*.ko; do insmod $m; done` loads them right.
/// Built in `dir` (which must be fresh, see [`temp_dir`]); returns the cpio path.
pub fn busybox_initramfs(dir: &Path, init_script: &str, modules: &[&str]) -> PathBuf {
    let root = dir.join("initramfs-root");
    for sub in ["bin", "modules", "proc", "sys", "dev", "mnt", "tmp"] {
        fs::create_dir_all(root.join(sub)).unwrap_or_else(|e| panic!("mkdir in {}: {e}", root.display()));
    }
    fs::copy(busybox(), root.join("bin/busybox")).unwrap_or_else(|e| panic!("copy busybox: {e}"));
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap_or_else(|e| panic!("symlink sh: {e}"));
    for (i, module) in modules_with_deps(modules).iter().enumerate() {
        let name = module.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        fs::copy(module, root.join("modules").join(format!("{i:03}-{name}"))).unwrap_or_else(|e| panic!("copy {}: {e}", module.display()));
    }
    let init = root.join("init");
    fs::write(&init, init_script).unwrap_or_else(|e| panic!("write {}: {e}", init.display()));
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("chmod init: {e}"));
    let cpio = dir.join("initramfs.cpio");
    make_cpio(&root, &cpio).unwrap_or_else(|e| panic!("{e}"));
    cpio
}

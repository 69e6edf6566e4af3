//! Running the project's own commands from a test: the kit (with a fixed
//! SOURCE_DATE_EPOCH, so images are reproducible) and any helper that must succeed.

use super::paths::viver_bin;
use std::process::Command;

/// Runs `command`, panics with its output unless it succeeds, returns its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let shown = format!("{command:?}");
    let output = command.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `viver kit ARGS...` with the release binary.
pub fn kit(args: &[&str]) -> String {
    run_ok(Command::new(viver_bin()).arg("kit").args(args).env("SOURCE_DATE_EPOCH", "1764316800"))
}

/// `qemu-harness/mkdisk ARGS...`, which must succeed.
pub fn mkdisk_ok(args: &[&str]) {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    super::disks::mkdisk(&args).unwrap_or_else(|e| panic!("{e}"));
}

/// The kit's generic initrd for the harness kernel and a medium's contents holding the
/// test root's image (`LAYOUT/viver/testroot.squashfs` + `.toml`), built in `dir`.
/// Returns (initrd, layout).
pub fn kit_initrd_and_testroot_layout(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let initrd = dir.join("initrd.img");
    let modules = super::paths::modules_dir();
    kit(&["initrd", "--modules", modules.to_str().unwrap(), "-o", initrd.to_str().unwrap()]);
    let layout = dir.join("layout");
    let image = layout.join("viver/testroot.squashfs");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    let root = super::paths::testroot_dir();
    kit(&["image", root.to_str().unwrap(), "-o", image.to_str().unwrap(), "--name", "testroot"]);
    (initrd, layout)
}

//! The `modprobe` personality, run as the kernel runs it (a link named modprobe to the
//! viver binary), in dry-run mode against the real Debian module tree with depmod's
//! tables: what it would insmod, in which order, and modprobe's exit status.

mod hardware_common;

use hardware_common::{depmod_reference, release};
use std::path::PathBuf;
use std::process::{Command, Output};

fn modprobe(args: &[&str]) -> Output {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("modprobe-link-{}", std::process::id()));
    let link = dir.join("modprobe");
    if !link.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        // Tests run in parallel: another one may have made the link a moment ago.
        match std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_viver"), &link) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => panic!("symlink {}: {e}", link.display()),
            _ => {}
        }
    }
    // depmod_reference() is ROOT/lib/modules/RELEASE.
    let root = depmod_reference().parent().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    Command::new(&link).arg("-d").arg(&root).arg("-S").arg(release()).args(args).output().unwrap()
}

fn insmods(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("insmod "))
        .map(|l| l.split_whitespace().next().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn kernel_crypto_request_resolves_to_a_crc32c_driver() {
    let out = modprobe(&["-n", "-q", "--", "crypto-crc32c"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mods = insmods(&out);
    assert!(mods.iter().any(|m| m.starts_with("crc32c")), "{mods:?}");
}

#[test]
fn dependencies_come_before_the_module_and_parameters_go_to_it() {
    let out = modprobe(&["-n", "btrfs", "check_int=0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mods = insmods(&out);
    assert_eq!(mods.last().map(String::as_str), Some("btrfs.ko"), "{mods:?}");
    assert!(mods.iter().any(|m| m == "libcrc32c.ko"), "{mods:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let btrfs_line = text.lines().last().unwrap();
    assert!(btrfs_line.ends_with("check_int=0"), "{text}");
    assert!(!text.lines().next().unwrap().contains("check_int"), "{text}");
}

#[test]
fn fs_alias_and_unknown_names_exit_like_modprobe() {
    let out = modprobe(&["-n", "fs-xfs"]);
    assert!(out.status.success());
    assert_eq!(insmods(&out).last().map(String::as_str), Some("xfs.ko"));

    let out = modprobe(&["-n", "no-such-module-anywhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-module-anywhere"));
    let out = modprobe(&["-n", "-q", "no-such-module-anywhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.is_empty(), "-q must be quiet: {}", String::from_utf8_lossy(&out.stderr));

    let out = modprobe(&["--remove", "loop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--remove"));
}

#[test]
fn a_builtin_is_already_there() {
    // ext4 is a module in Debian; unix (af_unix) is built in.
    let out = modprobe(&["-n", "-v", "unix"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(insmods(&out).is_empty());
    assert!(String::from_utf8_lossy(&out.stdout).contains("builtin unix"));
}

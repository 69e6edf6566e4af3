//! `viver kit check-kernel` against the real Debian config and a broken one.
mod kit_common;
use kit_common::*;

#[test]
fn debian_kernel_has_everything() {
    let config = TestKernel::main().config();
    let out = run_ok(viver().arg("check-kernel").arg(&config));
    assert!(stdout(&out).contains("everything VIVER needs"));
}

#[test]
fn missing_options_are_named_and_exit_1() {
    let dir = scratch("check-kernel");
    let text = std::fs::read_to_string(TestKernel::main().config()).unwrap();
    let broken: String = text
        .lines()
        .filter(|l| !l.starts_with("CONFIG_OVERLAY_FS=") && !l.starts_with("CONFIG_SQUASHFS_"))
        .map(|l| if l == "CONFIG_DEVTMPFS=y" { "CONFIG_DEVTMPFS=m" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("config");
    std::fs::write(&path, broken).unwrap();
    let out = viver().arg("check-kernel").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("CONFIG_OVERLAY_FS"), "{text}");
    assert!(text.contains("CONFIG_DEVTMPFS=m, needs =y"), "{text}");
    assert!(text.contains("CONFIG_SQUASHFS_ZSTD"), "{text}");
    assert!(!text.contains("CONFIG_BLK_DEV_LOOP"), "{text}");
    std::fs::write(&path, "hello\n").unwrap();
    let out = viver().arg("check-kernel").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

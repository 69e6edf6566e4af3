//! Support for tests that boot VIVER (or anything else) under QEMU.
//!
//! Used from `tests/qemu_*.rs` with `mod qemu;`. Every VM runs with `-accel tcg` (CI
//! machines have no KVM), one CPU and 512 MB unless told otherwise, no network, and
//! its serial console (ttyS0) appended to `target/qemu-logs/<name>.log`, whose first
//! line is the QEMU command line: after a failure, that file is the whole story.
//!
//! Devices get predictable ids so a test can unplug them through the monitor:
//! `virtio<N>`, `nvme<N>`, `ahci<N>`, `ide<N>`, `cdide<N>`, `cdahci<N>`, `usbx<N>`
//! (stick on xHCI), `usbe<N>` (stick on EHCI), `sd<N>`, N counting from 0 per kind.
//! [`Vm::device_ids`] lists them.
// Each test file uses its own subset of this module.
#![allow(dead_code, unused_imports)]

mod commands;
mod disks;
mod initramfs;
mod paths;
mod running;
mod serial;
mod vm;

pub use commands::*;
pub use disks::*;
pub use initramfs::*;
pub use paths::*;
pub use running::*;
pub use serial::*;
pub use vm::*;

/// Did VIVER load `module` (exact name) without an error, by the boot report's
/// `hardware.loaded` records? (A substring of the JSON would take `libahci` for `ahci`
/// and a failed load for a loaded module.)
pub fn module_loaded(report: &serde_json::Value, module: &str) -> bool {
    report["hardware"]["loaded"].as_array().is_some_and(|loaded| loaded.iter().any(|l| l["module"] == module && l["error"].is_null()))
}

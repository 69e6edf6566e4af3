//! VIVER's daemon: the one process that outlives the initramfs.
//!
//! `/init` starts it before the hand-over ([`spawn`]) and gives it work over a control
//! socket ([`control`]): serve the netbooted root as `/dev/nbd0`, serve the LAN as boot
//! server. When `/init` execs the real init, its end of the socket closes (close-on-exec)
//! and the daemon knows the hand-over happened; it goes on alone.
//!
//! Rules it lives by, because the root filesystem depends on it:
//! - its `argv[0]` starts with `@` (systemd's convention for root storage daemons), so
//!   neither the switch to the real root nor systemd's final kill at shutdown stops it;
//! - its memory is locked (a page it needs must never wait for the disk it serves);
//! - it logs to the kernel log ([`kmsg_log`]), it has no terminal and no files;
//! - it never opens a path after the hand-over: everything it serves was opened before.

pub mod boot_server;
pub mod control;
pub mod kmsg_log;
pub mod process;
pub mod standby;
pub mod work;

pub use process::{spawn, DaemonHandle, SpawnError};

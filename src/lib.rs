//! VIVER: boot any PC diskless from one read-only image of an installed Linux.
//!
//! The crate is one binary with two faces. As `/init` (PID 1 of the initramfs) it runs
//! [`boot`]; from a shell it is the `viver` command (hardware probing, the kit).
//!
//! The folders follow the boot:
//! - [`boot`]: the stages PID 1 walks through, the command line and `viver.conf`,
//!   logging, the boot report, the failure policy and the final switch_root.
//! - [`hardware`]: the kernel's module tables, modalias matching, uevents and the
//!   parallel module loader (no udev, no modprobe).
//! - [`disks`]: block devices, their transport and speed class, filesystem superblocks,
//!   mounting media, ranking.
//! - [`image`]: the disk image on a medium: manifest, checks, loop device,
//!   copy-on-write overlay.
//! - [`kit`]: building images, initrds and boot media from an installed system.
//! - [`serve`]: the boot server of a LAN (`viver serve`: DHCP/proxyDHCP, TFTP, HTTP).
//! - [`nbd`]: the netbooted node's image as `/dev/nbdN`, served from a file or over HTTP.
//! - [`net`]: the node's own network setup: link, address, DHCP client.
//! - [`daemon`]: the process that outlives the initramfs and serves the root (NBD) and
//!   the LAN.
//! - [`runes`]: roles, plugins and the interfaces they talk through (`viver node`).

pub mod boot;
pub mod cli;
pub mod cmdline;
pub mod daemon;
pub mod disks;
pub mod hardware;
pub mod image;
pub mod kit;
pub mod nbd;
pub mod net;
pub mod runes;
pub mod serve;
pub mod sys;
pub mod vfield;

//! Disks: find every block device, tell what kind of medium it is, read which
//! filesystem it carries, mount it read-only, and rank the candidates so PID 1 looks
//! for the image on the fastest medium first.
//!
//! - [`blockdev`]: the block devices `/sys/class/block` lists, with their attributes.
//! - [`class`]: transport (NVMe, virtio, SATA, IDE, SCSI, USB, MMC) and media class
//!   derived from where the device sits in the sysfs device tree.
//! - [`kinds`]: the transport and media class names.
//! - [`controllers`]: the one table from a PCI storage controller to the media it brings.
//! - [`superblock`]: filesystem detection by superblock (no libblkid in the initramfs).
//! - [`mount`]: read-only mount of a detected filesystem.
//! - [`selector`]: the user's `viver.media=` override.
//! - [`rank`]: the order in which media are searched.

pub mod blockdev;
pub mod class;
pub mod controllers;
pub mod error;
pub mod kinds;
pub mod mount;
pub mod rank;
pub mod selector;
pub mod superblock;

pub use error::DiskError;

//! The kit: building what VIVER boots from an installed system.
//! - [`image`]: a root directory -> SquashFS image + manifest.
//! - [`initrd`]: the initramfs (static /init, selected modules, regenerated tables).
//! - [`media`]: ISO / USB / HDD / SD boot media (BIOS and UEFI, Secure Boot included).
//! - [`microcode`]: the early microcode cpio `initrd --microcode` prepends.
//! - [`check_kernel`]: does a kernel config have what VIVER needs?
//! - [`inspect`]: list or unpack any initrd.
//! - [`profile`]: ship a recorded boot profile in an image's manifest.

pub mod atomic;
pub mod check_kernel;
pub mod cli;
pub mod cpio_archive;
pub mod error;
pub mod fstab;
pub mod image;
pub mod initrd;
pub mod inspect;
pub mod media;
pub mod microcode;
pub mod profile;
pub mod selection;
pub mod tools;

pub use error::KitError;

//! Kernel interfaces nix does not cover, kept apart from the logic that uses them:
//! the structs mirror the kernel's UAPI headers field for field.

pub mod loop_uapi;
pub mod netlink;
pub mod stop_signals;

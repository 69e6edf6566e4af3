//! The disk image on a medium: its manifest, the checks it must pass, the loop device
//! that exposes it, and the copy-on-write overlay that becomes the new root.

pub mod candidate;
pub mod choose;
pub mod chunks;
pub mod cow;
pub mod loopdev;
pub mod manifest;
pub mod needs;
pub mod squashfs;
pub mod verify;

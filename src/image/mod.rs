//! The disk image on a medium: its manifest, the checks it must pass, the loop device
//! that exposes it, the signatures and dm-verity tree that authenticate it, and the
//! copy-on-write overlay that becomes the new root.

pub mod candidate;
pub mod choose;
pub mod chunks;
pub mod cow;
pub mod dm;
pub mod loopdev;
pub mod manifest;
pub mod needs;
pub mod profile;
pub mod signature;
pub mod squashfs;
pub mod trust;
pub mod verify;
pub mod verity;
pub mod verity_tree;

//! The disk image on a medium: its manifest, the checks it must pass, the loop device
//! that exposes it, and the copy-on-write overlay that becomes the new root.

pub mod manifest;

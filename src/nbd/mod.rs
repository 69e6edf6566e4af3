//! A network block device served from inside VIVER: the kernel's NBD driver, configured
//! over generic netlink ([`netlink`]), talks to [`server`] through a local socketpair
//! (no handshake: netlink hands the kernel the connected socket), and the server reads
//! from a [`source::BlockSource`]: a local file, or an image on an HTTP server fetched
//! lazily by range and kept in RAM.

pub mod attach;
pub mod cli;
pub mod netlink;
pub mod server;
pub mod source;
pub mod wire;

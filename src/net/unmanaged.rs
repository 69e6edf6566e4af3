//! Keeps the booted distribution's network configuration off the interface that carries
//! the root (a netbooted node's `/dev/nbd0`): a DHCP client restarting on it, or an
//! `ifdown` at shutdown, would cut the root away while the system still reads it.
//!
//! Everything goes into `/run`, which VIVER's `/init` hands to the system as it is
//! (nothing is written into the image or its copy-on-write layer), in the places each
//! network manager reads at start:
//! - systemd-networkd: a `.network` matching the MAC with `Unmanaged=yes`;
//! - NetworkManager: `unmanaged-devices=mac:…` in a `conf.d` file;
//! - ifupdown: the interface marked as already configured (so `ifup -a` leaves it) and
//!   `networking.service`'s stop told to exclude it (so `ifdown -a` at shutdown does not
//!   take it down).

use std::path::{Path, PathBuf};

/// The files written, relative to the `/run` given, with their contents.
pub fn files(ifname: &str, mac: &str) -> Vec<(PathBuf, String)> {
    let why = "# Written by VIVER: this interface carries the network root; leave it alone.\n";
    vec![
        (PathBuf::from("systemd/network/10-viver-boot.network"), format!("{why}[Match]\nMACAddress={mac}\n\n[Link]\nUnmanaged=yes\n")),
        (PathBuf::from("NetworkManager/conf.d/90-viver-boot.conf"), format!("{why}[keyfile]\nunmanaged-devices=mac:{mac}\n")),
        (PathBuf::from(format!("network/ifstate.{ifname}")), format!("{ifname}\n")),
        (
            PathBuf::from("systemd/system/networking.service.d/90-viver-boot.conf"),
            format!("{why}[Service]\nExecStop=\nExecStop=/sbin/ifdown -a --read-environment --exclude=lo --exclude={ifname}\n"),
        ),
    ]
}

/// Writes [`files`] under `run` (normally `/run`).
pub fn write(run: &Path, ifname: &str, mac: &str) -> std::io::Result<()> {
    for (relative, text) in files(ifname, mac) {
        let path = run.join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, text)?;
    }
    // ifupdown's summary of configured interfaces, one `NAME=NAME` line each.
    let state = run.join("network/ifstate");
    let mut text = std::fs::read_to_string(&state).unwrap_or_default();
    if !text.lines().any(|l| l.split('=').next() == Some(ifname)) {
        text.push_str(&format!("{ifname}={ifname}\n"));
        std::fs::write(&state, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_manager_gets_its_file_once() {
        let run = std::env::temp_dir().join(format!("viver-unmanaged-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        write(&run, "eth0", "52:54:00:77:00:01").unwrap();
        write(&run, "eth0", "52:54:00:77:00:01").unwrap();
        let read = |p: &str| std::fs::read_to_string(run.join(p)).unwrap();
        assert!(read("systemd/network/10-viver-boot.network").contains("MACAddress=52:54:00:77:00:01\n\n[Link]\nUnmanaged=yes"));
        assert!(read("NetworkManager/conf.d/90-viver-boot.conf").contains("unmanaged-devices=mac:52:54:00:77:00:01"));
        assert_eq!(read("network/ifstate"), "eth0=eth0\n");
        assert!(read("systemd/system/networking.service.d/90-viver-boot.conf").contains("--exclude=eth0\n"));
        let _ = std::fs::remove_dir_all(&run);
    }
}

//! The few socket and interface calls the node and the boot server need that std lacks: UDP sockets
//! bound to one interface with SO_REUSEADDR/SO_BROADCAST, the interface's IPv4 address
//! and MAC (getifaddrs), and an ARP probe (RFC 5227) over a packet socket.

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// One IPv4 interface as getifaddrs reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Interface {
    pub name: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: Option<[u8; 6]>,
    pub index: u32,
}

impl Interface {
    pub fn netmask(&self) -> Ipv4Addr {
        prefix_mask(self.prefix_len)
    }
}

pub fn prefix_mask(prefix_len: u8) -> Ipv4Addr {
    let bits = if prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix_len.min(32))) };
    Ipv4Addr::from(bits)
}

fn setsockopt_int(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: fd is a valid socket; the option value is a live i32 of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn bind_to_device(fd: &OwnedFd, device: &str) -> io::Result<()> {
    let name = CString::new(device).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let bytes = name.as_bytes_with_nul();
    // SAFETY: fd is a valid socket; the name buffer lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            bytes.as_ptr() as *const libc::c_void,
            bytes.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A UDP socket on `address:port`, optionally tied to `device` (it then only hears and
/// sends on that interface: a DHCP server must not answer on the wrong segment), with
/// SO_REUSEADDR (a host DHCP client may hold port 68 too) and SO_BROADCAST.
pub fn udp_socket(address: Ipv4Addr, port: u16, device: Option<&str>) -> io::Result<UdpSocket> {
    // SAFETY: plain socket(2) call; the result is checked and owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_BROADCAST, 1)?;
    if let Some(device) = device {
        bind_to_device(&fd, device)?;
    }
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(address).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: sin is a valid sockaddr_in of the size passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sin as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UdpSocket::from(fd))
}

/// Every interface with an IPv4 address (the first address of each), with its MAC.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills head with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut v4: Vec<Interface> = Vec::new();
    let mut macs: Vec<(String, [u8; 6])> = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: cursor walks the list getifaddrs returned; every field is read-only.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) }.to_string_lossy().into_owned();
        // SAFETY: ifa_addr is non-null; its family says which struct it is.
        let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
        if family == libc::AF_INET {
            // SAFETY: AF_INET addresses are sockaddr_in.
            let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
            let address = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let prefix_len = if entry.ifa_netmask.is_null() {
                32
            } else {
                // SAFETY: the netmask of an AF_INET entry is a sockaddr_in too.
                let mask = unsafe { &*(entry.ifa_netmask as *const libc::sockaddr_in) };
                u32::from_be(mask.sin_addr.s_addr).count_ones() as u8
            };
            if !v4.iter().any(|i| i.name == name) {
                let index = CString::new(name.clone()).map(|c| unsafe { libc::if_nametoindex(c.as_ptr()) }).unwrap_or(0);
                v4.push(Interface { name, address, prefix_len, mac: None, index });
            }
        } else if family == libc::AF_PACKET {
            // SAFETY: AF_PACKET addresses are sockaddr_ll.
            let sll = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_ll) };
            if sll.sll_halen == 6 {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&sll.sll_addr[..6]);
                macs.push((name, mac));
            }
        }
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    for interface in &mut v4 {
        interface.mac = macs.iter().find(|(n, _)| *n == interface.name).map(|(_, m)| *m);
    }
    Ok(v4)
}

/// True when some host answers an ARP probe for `target` on `interface` within
/// `wait` (RFC 5227: sender address 0.0.0.0, so no host's ARP cache learns anything).
pub fn arp_in_use(interface: &Interface, target: Ipv4Addr, wait: Duration) -> io::Result<bool> {
    let mac = interface.mac.ok_or_else(|| io::Error::other("interface has no MAC address"))?;
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: plain socket(2); checked and owned at once.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, i32::from(proto)) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: zeroed sockaddr_ll is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = interface.index as i32;
    // SAFETY: sll is a valid sockaddr_ll.
    let rc =
        unsafe { libc::bind(fd.as_raw_fd(), &sll as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut arp = Vec::with_capacity(28);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet, IPv4, request
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[0, 0, 0, 0]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target.octets());
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: arp and sll live across the call.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            arp.as_ptr() as *const libc::c_void,
            arp.len(),
            0,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 128];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
        if ready <= 0 {
            continue;
        }
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n < 28 {
            continue;
        }
        let reply = &buf[..n as usize];
        // An ARP reply (or another host's probe/announcement) from the target address.
        if reply[6..8] == [0, 2] && reply[14..18] == target.octets() {
            return Ok(true);
        }
        if reply[6..8] == [0, 1] && reply[24..28] == target.octets() && reply[8..14] != mac {
            return Ok(true); // someone else probes for it right now
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(prefix_mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(prefix_mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(prefix_mask(32), Ipv4Addr::new(255, 255, 255, 255));
    }

    #[test]
    fn loopback_is_listed() {
        let all = interfaces().unwrap();
        assert!(all.iter().any(|i| i.address == Ipv4Addr::LOCALHOST), "{all:?}");
    }
}

/// A physical Ethernet interface as `/sys/class/net` shows it (it may have no address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ethernet {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`, lower case.
    pub mac: String,
}

/// The physical Ethernet interfaces (a `device` link, type 1) under `sys_class_net`
/// (`/sys/class/net`), sorted by name: no loopback, bridge, tap or veth.
pub fn physical_ethernet(sys_class_net: &std::path::Path) -> Vec<Ethernet> {
    let mut found: Vec<Ethernet> = std::fs::read_dir(sys_class_net)
        .map(|dir| {
            dir.flatten()
                .filter_map(|entry| {
                    let path = entry.path();
                    let read = |f: &str| std::fs::read_to_string(path.join(f)).map(|s| s.trim().to_string()).unwrap_or_default();
                    if read("type") != "1" || !path.join("device").exists() {
                        return None;
                    }
                    Some(Ethernet { name: entry.file_name().to_string_lossy().into_owned(), mac: read("address").to_ascii_lowercase() })
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

#[cfg(test)]
mod ethernet_tests {
    #[test]
    fn lists_physical_ethernet_only() {
        let dir = std::env::temp_dir().join(format!("viver-net-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, kind, physical) in [("eth1", "1", true), ("eth0", "1", true), ("lo", "772", false), ("br0", "1", false)] {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(d.join("address"), "52:54:00:AA:00:01\n").unwrap();
            if physical {
                std::fs::create_dir_all(d.join("device")).unwrap();
            }
        }
        let found = super::physical_ethernet(&dir);
        assert_eq!(found.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["eth0", "eth1"]);
        assert_eq!(found[0].mac, "52:54:00:aa:00:01");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

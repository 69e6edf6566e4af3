//! Bringing an interface up and giving it an address and a default route, over
//! rtnetlink (`NETLINK_ROUTE`) with the shared codec of [`crate::sys::netlink`]: each
//! request is answered by an ACK or an error.

use crate::sys::netlink::{Message, Socket, SocketError, NETLINK_ROUTE, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST};
use std::net::Ipv4Addr;
use std::time::Duration;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_DHCP: u8 = 16;
const RTN_UNICAST: u8 = 1;
const IFF_UP: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no interface {0}")]
    NoInterface(String),
    #[error("rtnetlink socket: {0}")]
    Socket(std::io::Error),
    #[error("rtnetlink {what}: {source}")]
    Request { what: &'static str, source: std::io::Error },
}

impl From<SocketError> for LinkError {
    fn from(e: SocketError) -> LinkError {
        match e {
            SocketError::Open(e) => LinkError::Socket(e),
            SocketError::Io { what, source } | SocketError::Refused { what, source } => LinkError::Request { what, source },
            SocketError::Malformed { what, detail } => LinkError::Request { what, source: std::io::Error::other(detail) },
        }
    }
}

fn message(kind: u16, flags: u16, seq: u32, header: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut msg = Message::new(kind, flags | NLM_F_REQUEST | NLM_F_ACK, seq, header);
    for (t, v) in attrs {
        msg.attr(*t, v);
    }
    msg.finish()
}

/// RTM_NEWLINK setting IFF_UP on interface `index`.
pub fn link_up_message(seq: u32, index: u32) -> Vec<u8> {
    let mut ifinfo = [0u8; 16]; // family, pad, type, index, flags, change
    ifinfo[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    ifinfo[8..12].copy_from_slice(&IFF_UP.to_ne_bytes());
    ifinfo[12..16].copy_from_slice(&IFF_UP.to_ne_bytes());
    message(RTM_NEWLINK, 0, seq, &ifinfo, &[])
}

/// RTM_NEWADDR `address/prefix` on interface `index`.
pub fn address_message(seq: u32, index: u32, address: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut ifaddr = [0u8; 8]; // family, prefixlen, flags, scope, index
    ifaddr[0] = libc::AF_INET as u8;
    ifaddr[1] = prefix;
    ifaddr[4..8].copy_from_slice(&index.to_ne_bytes());
    let octets = address.octets();
    message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq, &ifaddr, &[(IFA_LOCAL, &octets), (IFA_ADDRESS, &octets)])
}

/// RTM_NEWROUTE: the default route via `gateway` out of interface `index`.
pub fn default_route_message(seq: u32, index: u32, gateway: Ipv4Addr) -> Vec<u8> {
    // family, dst_len, src_len, tos, table, protocol, scope, type, flags(u32)
    let rtmsg = [libc::AF_INET as u8, 0, 0, 0, RT_TABLE_MAIN, RTPROT_DHCP, 0, RTN_UNICAST, 0, 0, 0, 0];
    let oif = index.to_ne_bytes();
    let gw = gateway.octets();
    message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq, &rtmsg, &[(RTA_GATEWAY, &gw), (RTA_OIF, &oif)])
}

/// A netmask's prefix length (255.255.255.0 -> 24); a non-contiguous mask counts its ones.
pub fn prefix_len(mask: Ipv4Addr) -> u8 {
    u32::from(mask).count_ones() as u8
}

pub fn index_of(ifname: &str) -> Result<u32, LinkError> {
    let name = std::ffi::CString::new(ifname).map_err(|_| LinkError::NoInterface(ifname.into()))?;
    // SAFETY: `name` is a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(LinkError::NoInterface(ifname.into()));
    }
    Ok(index)
}

/// The interface's MAC from sysfs.
pub fn mac_of(ifname: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address")).ok()?;
    let bytes: Vec<u8> = text.trim().split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    bytes.try_into().ok()
}

/// An rtnetlink socket of the calling thread's network namespace.
pub struct Rtnl {
    socket: Socket,
}

impl Rtnl {
    pub fn open() -> Result<Rtnl, LinkError> {
        Ok(Rtnl { socket: Socket::open(NETLINK_ROUTE, Duration::from_secs(5))? })
    }

    pub fn link_up(&mut self, index: u32) -> Result<(), LinkError> {
        let seq = self.socket.next_seq();
        self.request(&link_up_message(seq, index), "link up")
    }

    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> Result<(), LinkError> {
        let seq = self.socket.next_seq();
        self.request(&address_message(seq, index, address, prefix), "add address")
    }

    pub fn default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), LinkError> {
        let seq = self.socket.next_seq();
        self.request(&default_route_message(seq, index, gateway), "default route")
    }

    fn request(&mut self, msg: &[u8], what: &'static str) -> Result<(), LinkError> {
        self.socket.transact(msg, what)?;
        Ok(())
    }
}

/// Up, address, default route: what a DHCP lease asks of the interface.
pub fn configure(ifname: &str, address: Ipv4Addr, netmask: Ipv4Addr, router: Option<Ipv4Addr>) -> Result<(), LinkError> {
    let index = index_of(ifname)?;
    let mut rtnl = Rtnl::open()?;
    rtnl.link_up(index)?;
    rtnl.add_address(index, address, prefix_len(netmask))?;
    if let Some(gateway) = router {
        rtnl.default_route(index, gateway)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn messages_are_byte_exact() {
        assert_eq!(
            hex(&link_up_message(1, 2)),
            concat!("20000000", "1000", "0500", "01000000", "00000000", "00000000", "02000000", "01000000", "01000000")
        );
        assert_eq!(
            hex(&address_message(2, 3, Ipv4Addr::new(10, 77, 0, 9), 24)),
            concat!(
                "28000000", "1400", "0505", "02000000", "00000000", "02180000", "03000000", "0800", "0200", "0a4d0009", "0800", "0100",
                "0a4d0009"
            )
        );
        assert_eq!(
            hex(&default_route_message(3, 3, Ipv4Addr::new(10, 77, 0, 1))),
            concat!(
                "2c000000",
                "1800",
                "0505",
                "03000000",
                "00000000",
                "02000000fe100001",
                "00000000",
                "0800",
                "0500",
                "0a4d0001",
                "0800",
                "0400",
                "03000000"
            )
        );
        assert_eq!(prefix_len(Ipv4Addr::new(255, 255, 240, 0)), 20);
    }

    /// In a fresh network namespace of this thread (needs CAP_SYS_ADMIN; skipped without).
    #[test]
    fn configures_lo_in_a_private_namespace() {
        let result = std::thread::spawn(|| {
            // SAFETY: unshare of this thread's network namespace only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                eprintln!("skipped: unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
                return None;
            }
            configure("lo", Ipv4Addr::new(10, 9, 9, 9), Ipv4Addr::new(255, 255, 255, 0), Some(Ipv4Addr::new(10, 9, 9, 1))).unwrap();
            let bound = std::net::UdpSocket::bind("10.9.9.9:0").is_ok();
            let routes = std::fs::read_to_string("/proc/thread-self/net/route").unwrap_or_default();
            Some((bound, routes))
        })
        .join()
        .unwrap();
        if let Some((bound, routes)) = result {
            assert!(bound, "the address is on lo");
            assert!(routes.lines().any(|l| l.starts_with("lo\t00000000\t0109090A")), "{routes}");
        }
    }
}

//! The kernel's uevent netlink socket (NETLINK_KOBJECT_UEVENT, group 1): devices
//! that appear while drivers load (a USB stick behind a freshly loaded xhci, a SCSI
//! disk behind usb-storage, an SD card behind sdhci) arrive here with their MODALIAS.

use super::error::HwError;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{bind, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// One kernel uevent: "ACTION@DEVPATH\0KEY=VAL\0...".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    pub devpath: String,
    pub vars: Vec<(String, String)>,
}

impl Uevent {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn modalias(&self) -> Option<&str> {
        self.get("MODALIAS").filter(|m| !m.is_empty())
    }
}

/// Parses one datagram. None for udev's own re-broadcasts ("libudev" header) and
/// for anything that is not a kernel uevent.
pub fn parse_uevent(buf: &[u8]) -> Option<Uevent> {
    let mut fields = buf.split(|b| *b == 0);
    let head = String::from_utf8_lossy(fields.next()?).to_string();
    let (action, devpath) = head.split_once('@')?;
    if action.is_empty() || !devpath.starts_with('/') {
        return None;
    }
    let mut vars = Vec::new();
    for f in fields.filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(f);
        if let Some((k, v)) = text.split_once('=') {
            vars.push((k.to_string(), v.to_string()));
        }
    }
    Some(Uevent { action: action.to_string(), devpath: devpath.to_string(), vars })
}

pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    /// Opens and binds the socket. Done before the sysfs walk, so an event for a
    /// device that appears during the walk is queued here rather than lost.
    pub fn open() -> Result<UeventSocket, HwError> {
        let fd = socket(AddressFamily::Netlink, SockType::Datagram, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkKObjectUEvent)
            .map_err(HwError::Netlink)?;
        // A burst of events while modules load must not overflow the queue.
        if setsockopt(&fd, sockopt::RcvBufForce, &(8 << 20)).is_err() {
            let _ = setsockopt(&fd, sockopt::RcvBuf, &(8 << 20));
        }
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, 1)).map_err(HwError::Netlink)?;
        Ok(UeventSocket { fd })
    }

    /// Waits up to `timeout` for one event. Ok(None) on timeout or a message that is not a uevent.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Uevent>, HwError> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
            Ok(0) | Err(Errno::EINTR) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(HwError::Netlink(e)),
        }
        let mut buf = vec![0u8; 64 * 1024];
        match recv(std::os::fd::AsRawFd::as_raw_fd(&self.fd), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => Ok(buf.get(..n).and_then(parse_uevent)),
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(None),
            // ENOBUFS: events were dropped; the caller's sysfs rescan catches up.
            Err(e) => Err(HwError::Netlink(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_message_is_parsed() {
        let msg = b"add@/devices/pci0000:00/0000:00:04.0/usb1/1-1\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:04.0/usb1/1-1\0SUBSYSTEM=usb\0MODALIAS=usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00\0SEQNUM=1234\0";
        let ev = parse_uevent(msg).unwrap();
        assert_eq!(ev.action, "add");
        assert_eq!(ev.devpath, "/devices/pci0000:00/0000:00:04.0/usb1/1-1");
        assert_eq!(ev.modalias(), Some("usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"));
        assert_eq!(ev.get("SEQNUM"), Some("1234"));
    }

    #[test]
    fn udev_and_garbage_are_ignored() {
        assert!(parse_uevent(b"libudev\0\xfe\xed\xca\xfe").is_none());
        assert!(parse_uevent(b"").is_none());
        assert!(parse_uevent(b"add@relative\0").is_none());
        let ev = parse_uevent(b"remove@/devices/x\0NOEQUALS\0").unwrap();
        assert!(ev.vars.is_empty() && ev.modalias().is_none());
    }
}

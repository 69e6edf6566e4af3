//! The control socket between `/init` and the daemon: a `SOCK_SEQPACKET` socketpair, one
//! JSON message per packet, file descriptors passed beside a message (`SCM_RIGHTS`).
//!
//! `/init` sends a [`Command`], the daemon answers with one [`Reply`]. Messages are
//! small (paths and numbers, never an image's bytes), so one packet always holds one.

use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;

/// The largest message either side sends or accepts.
pub const MAX_MESSAGE: usize = 64 << 10;
/// File descriptors that may come with one message.
const MAX_FDS: usize = 8;

/// What `/init` asks of the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// Serve the image at `url` as `/dev/nbd<index>`, every chunk checked against the
    /// manifest at `manifest` (a file `/init` fetched and accepted, read at once).
    /// With `vfield`, the chunks come through V-FIELD: from the swarm's peers and from
    /// `url` as a web seed. With `record`, the boot profile is recorded for that many
    /// seconds into `/run/viver` (`viver.vfield.record`).
    AttachNbd {
        url: String,
        manifest: String,
        index: u32,
        fill: bool,
        #[serde(default)]
        vfield: Option<VfieldJoin>,
        #[serde(default)]
        record: Option<u64>,
    },
    /// Serve the LAN as its boot server (role `boot-server`): the image at `image` (and
    /// its `manifest`), the kernel and initrd found on the medium at `medium` or in the
    /// image, clients' extra command-line words `cmdline`; state and `serve.json` in
    /// `state_dir`. Everything is opened before the reply; the server starts when a
    /// network interface appears.
    Serve {
        image: String,
        manifest: Option<String>,
        medium: Option<String>,
        cmdline: String,
        state_dir: String,
        interface: Option<String>,
        dhcp: String,
        range: Option<String>,
    },
    /// Stand by as the LAN's next boot server (a node netbooted through V-FIELD): fetch
    /// the boot files from `server` (HTTP `ADDRESS:PORT`) now, take over when it is gone
    /// (see [`crate::daemon::standby`]).
    Standby { interface: String, address: String, server: String, image_name: String, cmdline: String, dhcp: String, vfield_port: u16 },
    /// Disconnect `/dev/nbd<index>` (the image was copied to RAM).
    DetachNbd { index: u32 },
    /// How much the NBD source fetched so far (for the boot report).
    Stats,
}

/// How a netbooted node takes part in V-FIELD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VfieldJoin {
    /// Peers to join through (`ADDRESS:PORT`).
    pub peers: Vec<String>,
    /// More HTTP servers holding the image file.
    pub web_seeds: Vec<String>,
    /// Bytes held for the swarm (`None`: a quarter of the RAM, at most the image).
    pub store: Option<u64>,
    pub replicas: u32,
    /// The port this node serves its chunks on.
    pub port: u16,
    /// A disk or partition the user named to hold the store (`viver.vfield.disk`).
    #[serde(default)]
    pub disk: Option<String>,
}

/// The daemon's answer to one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    Attached {
        device: String,
        size: u64,
    },
    Detached,
    Serving {
        kernel: String,
        initrd: String,
    },
    StandingBy,
    /// `from_peers`: of `bytes_fetched`, the bytes V-FIELD peers sent (the rest came from
    /// HTTP servers).
    Stats {
        bytes_fetched: u64,
        chunks_verified: u64,
        requests: u64,
        verify_failures: u64,
        #[serde(default)]
        from_peers: u64,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("control socket: {0}")]
    Sys(#[from] nix::Error),
    #[error("control message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("control socket closed")]
    Closed,
    #[error("control message of {0} bytes is too large")]
    TooLarge(usize),
}

/// A connected socketpair, both ends close-on-exec.
pub fn pair() -> Result<(UnixDatagram, UnixDatagram), ControlError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    // SAFETY: fresh descriptors we own; a SEQPACKET socket behaves as a datagram socket
    // for send/recv of whole messages.
    Ok(unsafe { (UnixDatagram::from_raw_fd(into_raw(a)), UnixDatagram::from_raw_fd(into_raw(b))) })
}

fn into_raw(fd: OwnedFd) -> RawFd {
    use std::os::fd::IntoRawFd;
    fd.into_raw_fd()
}

/// Sends `message` (and `fds`) as one packet.
pub fn send<T: Serialize>(socket: &UnixDatagram, message: &T, fds: &[RawFd]) -> Result<(), ControlError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let bytes = serde_json::to_vec(message)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(ControlError::TooLarge(bytes.len()));
    }
    let iov = [IoSlice::new(&bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(socket.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one packet: the message and the descriptors that came with it. `Closed`
/// when the other end is gone.
pub fn receive<T: for<'de> Deserialize<'de>>(socket: &UnixDatagram) -> Result<(T, Vec<OwnedFd>), ControlError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: the kernel just installed these descriptors for us.
                fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        (msg.bytes, fds)
    };
    if len == 0 {
        return Err(ControlError::Closed);
    }
    Ok((serde_json::from_slice(&buf[..len])?, fds))
}

/// Parses one message as the daemon does (the fuzz target's entry point).
pub fn parse_command(bytes: &[u8]) -> Result<Command, ControlError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(ControlError::TooLarge(bytes.len()));
    }
    Ok(serde_json::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_and_a_descriptor_cross_the_pair() {
        let (a, b) = pair().unwrap();
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let command = Command::AttachNbd {
            url: "http://10.0.0.1/image/x.squashfs".into(),
            manifest: "/run/x.toml".into(),
            index: 0,
            fill: true,
            vfield: None,
            record: Some(120),
        };
        send(&a, &command, &[file.as_raw_fd()]).unwrap();
        let (got, fds): (Command, _) = receive(&b).unwrap();
        assert_eq!(got, command);
        assert_eq!(fds.len(), 1);
        drop(a);
        assert!(matches!(receive::<Command>(&b), Err(ControlError::Closed)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_command(b"{\"command\":\"attach-nbd\"}").is_err());
        assert!(parse_command(b"\xff\xfe").is_err());
        assert!(matches!(parse_command(b"{\"command\":\"stats\"}"), Ok(Command::Stats)));
    }
}

//! One device attached to one source: the socketpair, the netlink CONNECT, the serving
//! thread, the clean DISCONNECT.

use super::netlink::{ConnectConfig, NbdNetlink, NetlinkError};
use super::server::{self, Ended, ServeStats, ServerError};
use super::source::BlockSource;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("socketpair: {0}")]
    SocketPair(std::io::Error),
    #[error("{0}")]
    Netlink(#[from] NetlinkError),
    #[error("image of {0} bytes: an NBD device needs at least 512")]
    TooSmall(u64),
}

/// A connected `/dev/nbdN`, served by a thread until disconnected.
pub struct Attached {
    pub index: u32,
    pub stats: Arc<ServeStats>,
    netlink: NbdNetlink,
    thread: Option<JoinHandle<Result<Ended, ServerError>>>,
}

/// Connects device `index` (or the kernel's choice) to `source`, read-only.
pub fn attach(
    index: Option<u32>,
    source: Arc<dyn BlockSource>,
    tune: impl FnOnce(&mut ConnectConfig),
    workers: usize,
) -> Result<Attached, AttachError> {
    let size = source.size();
    if size < 512 {
        return Err(AttachError::TooSmall(size));
    }
    let mut netlink = NbdNetlink::open()?;
    let (kernel_end, our_end) = UnixStream::pair().map_err(AttachError::SocketPair)?;
    let mut config = ConnectConfig::read_only(index, size);
    tune(&mut config);
    let stats = Arc::new(ServeStats::default());
    // Serve before connecting: the kernel reads the partition table at once.
    let thread = {
        let stats = stats.clone();
        std::thread::spawn(move || server::serve(our_end, source, workers, stats))
    };
    let index = netlink.connect(&config, &[kernel_end.as_raw_fd()])?;
    // The kernel holds its own reference to the socket now.
    drop(kernel_end);
    Ok(Attached { index, stats, netlink, thread: Some(thread) })
}

/// Hands device `index`, whose server died (a crashed or restarted daemon), a new socket
/// served from `source` (NBD_CMD_RECONFIGURE, within the dead-connection timeout); the
/// reads that waited meanwhile then complete.
pub fn reattach(index: u32, source: Arc<dyn BlockSource>, workers: usize) -> Result<Attached, AttachError> {
    let mut netlink = NbdNetlink::open()?;
    let (kernel_end, our_end) = UnixStream::pair().map_err(AttachError::SocketPair)?;
    let stats = Arc::new(ServeStats::default());
    let thread = {
        let stats = stats.clone();
        std::thread::spawn(move || server::serve(our_end, source, workers, stats))
    };
    netlink.reconfigure(index, &[kernel_end.as_raw_fd()])?;
    drop(kernel_end);
    Ok(Attached { index, stats, netlink, thread: Some(thread) })
}

impl Attached {
    /// True once the serving thread ended (the device was disconnected elsewhere).
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// NBD_CMD_DISCONNECT, then waits for the server to see the socket close.
    pub fn detach(mut self) -> Result<Option<Ended>, AttachError> {
        let sent = if self.finished() { Ok(()) } else { self.netlink.disconnect(self.index) };
        let ended = match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(ended))) => Some(ended),
            Some(Ok(Err(e))) => {
                log::warn!("nbd{}: server ended with {e}", self.index);
                None
            }
            _ => None,
        };
        sent?;
        Ok(ended)
    }
}

/// NBD_CMD_DISCONNECT of device `index` from any process (`viver nbd detach`).
pub fn detach_index(index: u32) -> Result<(), AttachError> {
    NbdNetlink::open()?.disconnect(index)?;
    Ok(())
}

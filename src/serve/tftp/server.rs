//! The TFTP server: one socket on port 69 (or the one given) takes read requests;
//! each transfer runs in its own thread on its own socket (a new TID, RFC 1350),
//! bounded in number and in time. Writes, unknown names and path tricks get ERROR.

use super::session::{negotiate, Action, Session};
use super::wire::{code, Packet};
use crate::serve::ServeError;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAX_SESSIONS: usize = 32;
pub const MAX_SESSION_TIME: Duration = Duration::from_secs(300);

/// TFTP name -> contents (loaded once at start: iPXE binaries are about 1 MB).
pub type Files = Arc<BTreeMap<String, Arc<Vec<u8>>>>;

/// What a requested name refers to: a served file or the ERROR to answer.
pub fn lookup(files: &Files, name: &str) -> Result<Arc<Vec<u8>>, (u16, String)> {
    let clean = name.trim_start_matches('/');
    if clean.contains("..") || clean.contains('\\') || clean.contains('\0') {
        return Err((code::ACCESS_VIOLATION, "access violation".into()));
    }
    files.get(clean).cloned().ok_or((code::NOT_FOUND, "file not found".into()))
}

pub struct TftpServer {
    socket: UdpSocket,
    files: Files,
    active: Arc<AtomicUsize>,
}

impl TftpServer {
    pub fn bind(address: SocketAddr, files: Files) -> Result<TftpServer, ServeError> {
        let socket = UdpSocket::bind(address).map_err(|source| ServeError::Bind { what: format!("TFTP {address}"), source })?;
        Ok(TftpServer { socket, files, active: Arc::new(AtomicUsize::new(0)) })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// Serves until `stop` (the socket wakes twice a second to look).
    pub fn run(self, stop: &crate::serve::Stop) {
        let mut buf = [0u8; 2048];
        let _ = self.socket.set_read_timeout(Some(Duration::from_millis(500)));
        loop {
            if stop.is_stopped() {
                return;
            }
            let (n, peer) = match self.socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(e) => {
                    log::warn!("serve: TFTP receive: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            // Refusals come from a new TID, as a transfer would (clients such as curl
            // expect the answer of a request from another port than 69).
            let refuse = |code: u16, message: &str| {
                let packet = Packet::Error { code, message: message.into() }.encode();
                let fresh = self.socket.local_addr().and_then(|a| UdpSocket::bind(SocketAddr::new(a.ip(), 0)));
                match fresh {
                    Ok(fresh) => {
                        let _ = fresh.send_to(&packet, peer);
                    }
                    Err(_) => {
                        let _ = self.socket.send_to(&packet, peer);
                    }
                }
            };
            match Packet::parse(&buf[..n]) {
                Ok(Packet::Rrq { file, mode, options }) => {
                    if mode != "octet" && mode != "netascii" {
                        log::warn!("serve: TFTP {peer} asked {file:?} in mode {mode:?}: refused");
                        refuse(code::ILLEGAL_OPERATION, "only octet mode");
                        continue;
                    }
                    let data = match lookup(&self.files, &file) {
                        Ok(data) => data,
                        Err((code, message)) => {
                            log::warn!("serve: TFTP {peer} asked {file:?}: {message}");
                            refuse(code, &message);
                            continue;
                        }
                    };
                    if self.active.load(Ordering::SeqCst) >= MAX_SESSIONS {
                        log::warn!("serve: TFTP {peer} asked {file:?}: {MAX_SESSIONS} transfers already running");
                        refuse(code::UNDEFINED, "server busy");
                        continue;
                    }
                    let local = match self.socket.local_addr() {
                        Ok(SocketAddr::V4(v4)) => SocketAddr::from((*v4.ip(), 0)),
                        Ok(other) => SocketAddr::new(other.ip(), 0),
                        Err(_) => continue,
                    };
                    let active = self.active.clone();
                    active.fetch_add(1, Ordering::SeqCst);
                    let spawned = std::thread::Builder::new().name("viver-tftp".into()).spawn(move || {
                        transfer(local, peer, &file, data, &options);
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                    if spawned.is_err() {
                        self.active.fetch_sub(1, Ordering::SeqCst);
                        refuse(code::UNDEFINED, "server busy");
                    }
                }
                Ok(Packet::Wrq { file }) => {
                    log::warn!("serve: TFTP {peer} tried to write {file:?}: refused (read-only server)");
                    refuse(code::ACCESS_VIOLATION, "read-only server");
                }
                Ok(other) => {
                    log::debug!("serve: TFTP {peer}: {other:?} outside a transfer");
                    refuse(code::UNKNOWN_TID, "no transfer with this TID");
                }
                Err(e) => {
                    log::warn!("serve: TFTP packet of {n} bytes from {peer} refused: {e}");
                    refuse(code::ILLEGAL_OPERATION, "malformed request");
                }
            }
        }
    }
}

fn transfer(local: SocketAddr, peer: SocketAddr, file: &str, data: Arc<Vec<u8>>, options: &[(String, String)]) {
    let started = Instant::now();
    let socket = match UdpSocket::bind(local).and_then(|s| s.connect(peer).map(|_| s)) {
        Ok(s) => s,
        Err(e) => return log::warn!("serve: TFTP {peer}: no socket for the transfer: {e}"),
    };
    let size = data.len();
    let mut session = Session::new(data, negotiate(options, size as u64));
    let timeout = session.negotiated.timeout;
    let _ = socket.set_read_timeout(Some(timeout));
    let send = |packets: &[Packet]| {
        for p in packets {
            if let Err(e) = socket.send(&p.encode()) {
                log::debug!("serve: TFTP {peer}: send: {e}");
            }
        }
    };
    let mut action = session.start();
    let mut buf = vec![0u8; 2048];
    loop {
        match action {
            Action::Send(packets) => send(&packets),
            Action::Wait => {}
            Action::Done => {
                let secs = started.elapsed().as_secs_f64();
                log::info!(
                    "serve: TFTP sent {file} ({size} bytes, blksize {}, windowsize {}) to {peer} in {secs:.2} s",
                    session.negotiated.blksize,
                    session.negotiated.windowsize
                );
                return;
            }
            Action::Abort(packets, why) => {
                send(&packets);
                log::warn!("serve: TFTP {file} to {peer} abandoned: {why}");
                return;
            }
        }
        if started.elapsed() > MAX_SESSION_TIME {
            send(&[Packet::Error { code: code::UNDEFINED, message: "transfer too long".into() }]);
            log::warn!("serve: TFTP {file} to {peer} abandoned after {MAX_SESSION_TIME:?}");
            return;
        }
        action = match socket.recv(&mut buf) {
            Ok(n) => match Packet::parse(&buf[..n]) {
                Ok(p) => session.on_packet(p),
                Err(e) => {
                    log::debug!("serve: TFTP {peer}: bad packet: {e}");
                    Action::Wait
                }
            },
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => session.on_timeout(),
            Err(e) => Action::Abort(Vec::new(), format!("receive: {e}")),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_refuses_tricks() {
        let files: Files = Arc::new([("ipxe.efi".to_string(), Arc::new(vec![1u8]))].into_iter().collect());
        assert!(lookup(&files, "/ipxe.efi").is_ok());
        assert_eq!(lookup(&files, "../etc/passwd").unwrap_err().0, code::ACCESS_VIOLATION);
        assert_eq!(lookup(&files, "/etc/passwd").unwrap_err().0, code::NOT_FOUND);
        assert_eq!(lookup(&files, "a\\b").unwrap_err().0, code::ACCESS_VIOLATION);
    }
}

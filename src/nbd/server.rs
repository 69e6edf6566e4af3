//! The NBD server side of the kernel's socket: reads requests, answers them from a
//! [`BlockSource`], read-only and bounds-checked.
//!
//! One thread reads requests; READs go to a few worker threads (so a slow fetch of one
//! range does not hold up reads already in RAM) which write their replies under a lock.
//! The loop ends on NBD_CMD_DISC or when the kernel closes the socket (NBD_CMD_DISCONNECT).

use super::source::BlockSource;
use super::wire::{self, Command, Request};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reading a request from the kernel: {0}")]
    Read(std::io::Error),
    #[error("writing a reply to the kernel: {0}")]
    Write(std::io::Error),
    #[error("cannot duplicate the socket for the workers: {0}")]
    Clone(std::io::Error),
    #[error("{0}")]
    Protocol(#[from] wire::WireError),
}

/// What a request gets: the reply header and, for a successful READ, the data.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub error: u32,
    pub handle: [u8; 8],
    pub data: Option<Vec<u8>>,
}

/// How one request is answered, without any I/O on the socket (WRITE payloads are the
/// caller's to drain). Never panics, whatever the request says.
pub fn answer(request: &Request, source: &dyn BlockSource) -> Answer {
    let fail = |error| Answer { error, handle: request.handle, data: None };
    match request.command {
        Command::Read => {
            if request.length > wire::MAX_REQUEST {
                return fail(wire::NBD_EINVAL);
            }
            match request.offset.checked_add(u64::from(request.length)) {
                Some(end) if end <= source.size() => {}
                _ => return fail(wire::NBD_EINVAL),
            }
            let mut data = vec![0u8; request.length as usize];
            match source.read_at(request.offset, &mut data) {
                Ok(()) => Answer { error: 0, handle: request.handle, data: Some(data) },
                Err(e) => {
                    log::warn!("nbd: read of {} bytes at {} failed: {e}", request.length, request.offset);
                    fail(wire::NBD_EIO)
                }
            }
        }
        Command::Write | Command::Trim => fail(wire::NBD_EPERM),
        Command::Flush => fail(0),
        Command::Disc => fail(0),
        Command::Other(_) => fail(wire::NBD_EINVAL),
    }
}

/// Counters of one serving session.
#[derive(Debug, Default)]
pub struct ServeStats {
    pub requests: AtomicU64,
    pub bytes_read: AtomicU64,
    pub errors: AtomicU64,
}

/// How the session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// NBD_CMD_DISC.
    Disconnect,
    /// The kernel closed the socket.
    Closed,
}

/// Serves `stream` until the kernel disconnects; `workers` READs run at once.
pub fn serve(stream: UnixStream, source: Arc<dyn BlockSource>, workers: usize, stats: Arc<ServeStats>) -> Result<Ended, ServerError> {
    let writer = Arc::new(Mutex::new(stream.try_clone().map_err(ServerError::Clone)?));
    let (tx, rx) = mpsc::channel::<Request>();
    let rx = Arc::new(Mutex::new(rx));
    let mut handles = Vec::new();
    for _ in 0..workers.max(1) {
        let (rx, writer, source, stats) = (rx.clone(), writer.clone(), source.clone(), stats.clone());
        handles.push(std::thread::spawn(move || loop {
            let next = match rx.lock() {
                Ok(guard) => guard.recv(),
                Err(_) => return,
            };
            let Ok(request) = next else { return };
            let answer = answer(&request, source.as_ref());
            if send(&writer, &answer, &stats).is_err() {
                return;
            }
        }));
    }
    let result = read_loop(stream, &tx, &writer, &stats);
    drop(tx);
    for handle in handles {
        let _ = handle.join();
    }
    result
}

fn read_loop(
    mut stream: UnixStream,
    tx: &mpsc::Sender<Request>,
    writer: &Mutex<UnixStream>,
    stats: &ServeStats,
) -> Result<Ended, ServerError> {
    let mut header = [0u8; wire::REQUEST_LEN];
    loop {
        match read_full(&mut stream, &mut header) {
            Ok(true) => {}
            Ok(false) => return Ok(Ended::Closed),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(Ended::Closed),
            Err(e) => return Err(ServerError::Read(e)),
        }
        let request = Request::parse(&header)?;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        match request.command {
            Command::Read => {
                if tx.send(request).is_err() {
                    return Ok(Ended::Closed);
                }
            }
            Command::Disc => return Ok(Ended::Disconnect),
            Command::Write => {
                // Keep the stream in step: swallow the payload, then refuse.
                let mut payload = (&mut stream).take(u64::from(request.length));
                let drained = std::io::copy(&mut payload, &mut std::io::sink()).map_err(ServerError::Read)?;
                if drained < u64::from(request.length) {
                    return Ok(Ended::Closed);
                }
                send(writer, &Answer { error: wire::NBD_EPERM, handle: request.handle, data: None }, stats)?;
            }
            _ => {
                // Flush, trim, unknown: no payload, answered at once.
                struct Nothing;
                impl BlockSource for Nothing {
                    fn size(&self) -> u64 {
                        0
                    }
                    fn read_at(&self, _: u64, _: &mut [u8]) -> Result<(), super::source::SourceError> {
                        Ok(())
                    }
                }
                send(writer, &answer(&request, &Nothing), stats)?;
            }
        }
    }
}

fn send(writer: &Mutex<UnixStream>, answer: &Answer, stats: &ServeStats) -> Result<(), ServerError> {
    let header = wire::simple_reply(answer.error, answer.handle);
    if answer.error != 0 {
        stats.errors.fetch_add(1, Ordering::Relaxed);
    }
    let mut stream = writer.lock().map_err(|_| ServerError::Write(std::io::Error::other("writer lock poisoned")))?;
    stream.write_all(&header).map_err(ServerError::Write)?;
    if let Some(data) = &answer.data {
        stream.write_all(data).map_err(ServerError::Write)?;
        stats.bytes_read.fetch_add(data.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Fills `buf`; false on a clean EOF before the first byte.
fn read_full(stream: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::source::MemSource;

    fn req(command: Command, offset: u64, length: u32, h: u8) -> Request {
        Request { command, flags: 0, handle: [h; 8], offset, length }
    }

    fn mem(n: usize) -> MemSource {
        MemSource::new((0..n).map(|i| (i % 251) as u8).collect())
    }

    #[test]
    fn answers_reads_writes_and_bounds() {
        let src = mem(10_000);
        let a = answer(&req(Command::Read, 100, 10, 1), &src);
        assert_eq!(a.error, 0);
        assert_eq!(a.data.unwrap(), (100..110).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        assert_eq!(answer(&req(Command::Read, 9_995, 10, 1), &src).error, wire::NBD_EINVAL);
        assert_eq!(answer(&req(Command::Read, u64::MAX - 2, 10, 1), &src).error, wire::NBD_EINVAL);
        assert_eq!(answer(&req(Command::Read, 0, wire::MAX_REQUEST + 1, 1), &src).error, wire::NBD_EINVAL);
        assert_eq!(answer(&req(Command::Read, 10_000, 0, 1), &src).error, 0);
        assert_eq!(answer(&req(Command::Write, 0, 10, 1), &src).error, wire::NBD_EPERM);
        assert_eq!(answer(&req(Command::Trim, 0, 10, 1), &src).error, wire::NBD_EPERM);
        assert_eq!(answer(&req(Command::Flush, 0, 0, 1), &src).error, 0);
        assert_eq!(answer(&req(Command::Other(9), 0, 0, 1), &src).error, wire::NBD_EINVAL);
    }

    fn reply(stream: &mut UnixStream) -> ([u8; 16], Vec<u8>) {
        let mut header = [0u8; 16];
        stream.read_exact(&mut header).unwrap();
        (header, Vec::new())
    }

    #[test]
    fn serves_a_socket_until_disc() {
        let (kernel, server) = UnixStream::pair().unwrap();
        let stats = Arc::new(ServeStats::default());
        let thread = {
            let stats = stats.clone();
            std::thread::spawn(move || serve(server, Arc::new(mem(1 << 20)), 3, stats))
        };
        let mut k = kernel;
        // A write with payload (refused, stream stays in step), then reads.
        k.write_all(&req(Command::Write, 0, 5, 9).encode()).unwrap();
        k.write_all(b"hello").unwrap();
        let (h, _) = reply(&mut k);
        assert_eq!(h, wire::simple_reply(wire::NBD_EPERM, [9; 8]));
        let mut want = std::collections::HashMap::new();
        for i in 0..20u8 {
            let off = u64::from(i) * 4096 + 7;
            k.write_all(&req(Command::Read, off, 4096, i).encode()).unwrap();
            want.insert([i; 8], off);
        }
        for _ in 0..20 {
            let (h, _) = reply(&mut k);
            assert_eq!(&h[0..8], &wire::simple_reply(0, [0; 8])[0..8]);
            let handle: [u8; 8] = h[8..16].try_into().unwrap();
            let off = want.remove(&handle).unwrap();
            let mut data = vec![0u8; 4096];
            k.read_exact(&mut data).unwrap();
            assert!(data.iter().enumerate().all(|(j, b)| *b == ((off as usize + j) % 251) as u8));
        }
        k.write_all(&req(Command::Read, 1 << 20, 1, 42).encode()).unwrap();
        assert_eq!(reply(&mut k).0, wire::simple_reply(wire::NBD_EINVAL, [42; 8]));
        k.write_all(&req(Command::Disc, 0, 0, 0).encode()).unwrap();
        assert_eq!(thread.join().unwrap().unwrap(), Ended::Disconnect);
        assert_eq!(stats.requests.load(Ordering::Relaxed), 23);
        assert_eq!(stats.bytes_read.load(Ordering::Relaxed), 20 * 4096);
    }

    #[test]
    fn closed_socket_and_bad_magic_end_the_session() {
        let (kernel, server) = UnixStream::pair().unwrap();
        drop(kernel);
        let stats = Arc::new(ServeStats::default());
        assert_eq!(serve(server, Arc::new(mem(10)), 1, stats.clone()).unwrap(), Ended::Closed);
        let (mut kernel, server) = UnixStream::pair().unwrap();
        kernel.write_all(&[0u8; 28]).unwrap();
        assert!(matches!(serve(server, Arc::new(mem(10)), 1, stats), Err(ServerError::Protocol(_))));
    }
}

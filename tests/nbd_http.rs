//! HttpSource against real HTTP servers on 127.0.0.1: a small Range-capable server in
//! this file (which can be stopped, restarted and made to lie) and busybox httpd.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use viver::nbd::source::http::Sha256Chunks;
use viver::nbd::source::{BlockSource, HttpSource, HttpSourceOptions, SourceError};

fn image(len: usize) -> Arc<Vec<u8>> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    Arc::new(
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect(),
    )
}

/// A keep-alive HTTP/1.1 server of one file that honours `Range: bytes=a-b`.
struct Server {
    port: u16,
    data: Arc<Vec<u8>>,
    corrupt: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(port: u16, data: Arc<Vec<u8>>) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let mut server = Server {
            port,
            data,
            corrupt: Arc::new(AtomicBool::new(false)),
            requests: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            thread: None,
        };
        let (data, corrupt, requests, stop, conns) =
            (server.data.clone(), server.corrupt.clone(), server.requests.clone(), server.stop.clone(), server.conns.clone());
        server.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        conns.lock().unwrap().push(stream.try_clone().unwrap());
                        let (data, corrupt, requests) = (data.clone(), corrupt.clone(), requests.clone());
                        std::thread::spawn(move || serve(stream, &data, &corrupt, &requests));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/image.squashfs", self.port)
    }

    /// Closes the listener and every open connection.
    fn stop(mut self) -> (u16, Arc<Vec<u8>>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        (self.port, self.data.clone())
    }
}

fn serve(stream: TcpStream, data: &[u8], corrupt: &AtomicBool, requests: &AtomicU64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut range = None;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some(r) = h.strip_prefix("Range: bytes=") {
                let (a, b) = r.split_once('-').unwrap();
                range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let (a, b) = range.unwrap_or((0, data.len() - 1));
        let b = b.min(data.len() - 1);
        let mut body = data[a..=b].to_vec();
        if corrupt.load(Ordering::SeqCst) {
            body[0] ^= 0xff;
        }
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}\r\nContent-Length: {}\r\n\r\n",
            data.len(),
            body.len()
        );
        if out.write_all(head.as_bytes()).and_then(|_| out.write_all(&body)).is_err() {
            return;
        }
    }
}

fn options() -> HttpSourceOptions {
    HttpSourceOptions {
        io_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        max_backoff: Duration::from_millis(200),
        give_up_after: Some(Duration::from_secs(30)),
        ..Default::default()
    }
}

const CHUNK: u64 = 256 << 10;

#[test]
fn exact_bytes_fetched_lazily_each_chunk_once() {
    let data = image(8 << 20 | 12345);
    let server = Server::start(0, data.clone());
    let src = Arc::new(HttpSource::open(&server.url(), options()).unwrap());
    assert_eq!(src.size(), data.len() as u64);
    let mut buf = vec![0u8; 100];
    src.read_at(3 << 20, &mut buf).unwrap();
    assert_eq!(buf, data[3 << 20..(3 << 20) + 100]);
    assert_eq!(src.stats.bytes_fetched.load(Ordering::SeqCst), CHUNK, "one chunk for a small read");
    src.read_at((3 << 20) + 1000, &mut buf).unwrap();
    assert_eq!(src.stats.bytes_fetched.load(Ordering::SeqCst), CHUNK, "a cached chunk is not fetched again");
    // Across a chunk boundary, and the short last chunk.
    let mut buf = vec![0u8; 300_000];
    src.read_at(CHUNK * 5 - 10, &mut buf).unwrap();
    assert_eq!(buf, data[(CHUNK * 5 - 10) as usize..(CHUNK * 5 - 10) as usize + 300_000]);
    let mut tail = vec![0u8; 12345];
    src.read_at(8 << 20, &mut tail).unwrap();
    assert_eq!(tail, data[8 << 20..]);
    assert_eq!(src.stats.bytes_fetched.load(Ordering::SeqCst), 4 * CHUNK + 12345);
    assert!(src.read_at(data.len() as u64 - 5, &mut [0u8; 10]).is_err());

    // Eight readers of one chunk: one fetch.
    let before = server.requests.load(Ordering::SeqCst);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let src = src.clone();
            std::thread::spawn(move || {
                let mut b = vec![0u8; 4096];
                src.read_at(CHUNK * 20 + i * 4096, &mut b).unwrap();
                b
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let off = (CHUNK * 20) as usize + i * 4096;
        assert_eq!(t.join().unwrap(), data[off..off + 4096]);
    }
    assert_eq!(server.requests.load(Ordering::SeqCst) - before, 1);

    let lazy = src.stats.bytes_fetched.load(Ordering::SeqCst);
    eprintln!("lazy: {lazy} bytes fetched of {} for {} reads", data.len(), 13);
    src.fill().unwrap();
    assert_eq!(src.stats.bytes_fetched.load(Ordering::SeqCst), data.len() as u64);
    use sha2::Digest;
    src.verify_whole(&sha2::Sha256::digest(data.as_slice()).into()).unwrap();
    assert!(src.verify_whole(&[0; 32]).is_err());
    server.stop();
}

#[test]
fn a_stopped_server_stalls_the_read_until_it_returns() {
    let data = image(4 << 20);
    let server = Server::start(0, data.clone());
    let src = Arc::new(HttpSource::open(&server.url(), HttpSourceOptions { give_up_after: None, ..options() }).unwrap());
    let mut first = vec![0u8; 10];
    src.read_at(0, &mut first).unwrap();
    let (port, data) = server.stop();
    let started = Instant::now();
    let reader = {
        let src = src.clone();
        std::thread::spawn(move || {
            let mut b = vec![0u8; 600_000];
            src.read_at(1 << 20, &mut b).map(|_| b)
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!reader.is_finished(), "the read must stall while the server is away");
    let server = Server::start(port, data.clone());
    let got = reader.join().unwrap().unwrap();
    assert_eq!(got, data[1 << 20..(1 << 20) + 600_000]);
    assert!(src.stats.retries.load(Ordering::SeqCst) > 0);
    eprintln!("stalled read completed after {:?}", started.elapsed());
    // stop() releases a stalled read with an error.
    let (_port, _) = server.stop();
    let reader = {
        let src = src.clone();
        std::thread::spawn(move || src.read_at(3 << 20, &mut [0u8; 10]))
    };
    std::thread::sleep(Duration::from_millis(300));
    src.stop();
    assert!(matches!(reader.join().unwrap(), Err(SourceError::Stopped)));
}

#[test]
fn wrong_bytes_are_rejected_by_chunk_hashes() {
    let data = image(2 << 20);
    let server = Server::start(0, data.clone());
    let verifier = Arc::new(Sha256Chunks::of(&data, CHUNK));
    let src = HttpSource::open(&server.url(), HttpSourceOptions { verifier: Some(verifier), ..options() }).unwrap();
    let mut b = vec![0u8; 1000];
    src.read_at(0, &mut b).unwrap();
    assert_eq!(b, data[..1000]);
    server.corrupt.store(true, Ordering::SeqCst);
    match src.read_at(CHUNK * 3, &mut b) {
        Err(SourceError::Verify { index: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(src.stats.verify_failures.load(Ordering::SeqCst), 3);
    // Cached, checked chunks are still served; the bad one is fetched again once fixed.
    src.read_at(0, &mut b).unwrap();
    server.corrupt.store(false, Ordering::SeqCst);
    src.read_at(CHUNK * 3, &mut b).unwrap();
    assert_eq!(b, data[(CHUNK * 3) as usize..(CHUNK * 3) as usize + 1000]);
    server.stop();
}

#[test]
fn busybox_httpd_serves_ranges() {
    let dir = std::env::temp_dir().join(format!("viver-nbd-httpd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = image(1 << 20 | 777);
    std::fs::write(dir.join("image.squashfs"), data.as_slice()).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut httpd = std::process::Command::new("busybox")
        .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
        .arg(&dir)
        .spawn()
        .expect("busybox httpd (package busybox-static)");
    let url = format!("http://127.0.0.1:{port}/image.squashfs");
    let result = std::panic::catch_unwind(|| {
        let src = HttpSource::open(&url, options()).unwrap();
        assert_eq!(src.size(), data.len() as u64);
        let mut b = vec![0u8; 5000];
        src.read_at(CHUNK * 3 - 100, &mut b).unwrap();
        assert_eq!(b, data[(CHUNK * 3 - 100) as usize..(CHUNK * 3 - 100) as usize + 5000]);
        src.fill().unwrap();
        let mut all = vec![0u8; data.len()];
        src.read_at(0, &mut all).unwrap();
        assert_eq!(all, *data);
    });
    let _ = httpd.kill();
    let _ = httpd.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
}

#[test]
fn a_server_without_range_is_refused_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        }
    });
    let started = Instant::now();
    let err = HttpSource::open(&format!("http://127.0.0.1:{port}/x"), options()).err().unwrap();
    assert!(err.to_string().contains("ignores Range"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

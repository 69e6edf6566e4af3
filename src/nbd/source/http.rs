//! An image on an HTTP server, read lazily by byte ranges and kept in RAM.
//!
//! The image is cut into aligned chunks (256 KiB by default, or the manifest's chunk
//! size). A read fetches the chunks it touches that are not in RAM yet, each once: readers
//! of a chunk being fetched wait for that fetch. Every fetched chunk is checked by the
//! [`ChunkVerifier`] when one is given before any byte of it is served. A background
//! fill may fetch the rest. The client is plain HTTP/1.1 over `std::net::TcpStream`
//! with keep-alive and `Range: bytes=`; a network error is retried with backoff, for
//! ever unless `give_up_after` is set: a cut link stalls the read, and it completes
//! when the server answers again (the kernel's NBD timeout is off, so it waits too).

use super::{BlockSource, SourceError};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Checks a fetched chunk before it is used (the manifest's chunk hashes).
pub trait ChunkVerifier: Send + Sync {
    /// Bytes per chunk the hashes cover (the cache uses the same size).
    fn chunk_size(&self) -> u64;
    fn verify(&self, index: u64, data: &[u8]) -> Result<(), String>;
}

/// Plain SHA-256 per chunk (tests; the manifest's BEP 52 hashes plug in the same way).
pub struct Sha256Chunks {
    pub chunk: u64,
    pub hashes: Vec<[u8; 32]>,
}

impl Sha256Chunks {
    pub fn of(data: &[u8], chunk: u64) -> Sha256Chunks {
        use sha2::Digest;
        let hashes = data.chunks(chunk.max(1) as usize).map(|c| sha2::Sha256::digest(c).into()).collect();
        Sha256Chunks { chunk, hashes }
    }
}

impl ChunkVerifier for Sha256Chunks {
    fn chunk_size(&self) -> u64 {
        self.chunk
    }
    fn verify(&self, index: u64, data: &[u8]) -> Result<(), String> {
        use sha2::Digest;
        let want = self.hashes.get(index as usize).ok_or_else(|| format!("no hash for chunk {index}"))?;
        let got: [u8; 32] = sha2::Sha256::digest(data).into();
        if &got == want {
            Ok(())
        } else {
            Err("SHA-256 differs from the manifest's".into())
        }
    }
}

#[derive(Clone)]
pub struct HttpSourceOptions {
    pub chunk_size: u64,
    pub connect_timeout: Duration,
    /// Longest silence inside one response before the connection counts as lost.
    pub io_timeout: Duration,
    /// `None`: retry network errors for ever (the read stalls until the server is back).
    pub give_up_after: Option<Duration>,
    pub max_backoff: Duration,
    /// Fetches of a chunk whose bytes fail the check before the read fails.
    pub verify_attempts: u32,
    pub verifier: Option<Arc<dyn ChunkVerifier>>,
    /// The image size when known (manifest); otherwise asked from the server.
    pub size: Option<u64>,
}

impl Default for HttpSourceOptions {
    fn default() -> Self {
        HttpSourceOptions {
            chunk_size: 256 << 10,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(15),
            give_up_after: None,
            max_backoff: Duration::from_secs(5),
            verify_attempts: 3,
            verifier: None,
            size: None,
        }
    }
}

/// `http://host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let rest = text.strip_prefix("http://").ok_or_else(|| format!("{text}: only http:// URLs are served"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("{text}: bad host or path"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| format!("{text}: bad port {p:?}"))?)
            }
            _ => (authority, 80),
        };
        Ok(Url { host: host.to_string(), port, path: path.to_string() })
    }

    fn addr(&self) -> Result<SocketAddr, String> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        // Names need the resolver (not in /init: the boot passes addresses).
        (host, self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))
    }
}

/// One parsed response head plus body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_range: Option<(u64, u64, Option<u64>)>,
    pub close: bool,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad response: {0}")]
    Protocol(String),
    #[error("HTTP {status} with a body of {length} bytes, at most {max} asked for")]
    TooLarge { status: u16, length: u64, max: u64 },
}

const MAX_HEAD: usize = 16 << 10;

/// Reads one response; the body must have a Content-Length no larger than `max_body`.
/// Hostile input gets an error, never a panic or an unbounded allocation.
/// One whole small file (a manifest): GET `url`, retried until `deadline` while the
/// server cannot be reached; a 4xx, or a body over `max_body`, fails at once.
pub fn get_file(url: &str, max_body: u64, deadline: Duration) -> Result<Vec<u8>, String> {
    let parsed = Url::parse(url)?;
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < deadline {
        let attempt = (|| -> Result<Vec<u8>, (bool, String)> {
            let addr = parsed.addr().map_err(|e| (false, e))?;
            let left = deadline.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
            let stream =
                TcpStream::connect_timeout(&addr, left.min(Duration::from_secs(3))).map_err(|e| (true, format!("connect {addr}: {e}")))?;
            stream.set_read_timeout(Some(left)).and_then(|_| stream.set_write_timeout(Some(left))).map_err(|e| (true, e.to_string()))?;
            let mut conn = BufReader::new(stream);
            let head = format!(
                "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: viver\r\nConnection: close\r\n\r\n",
                parsed.path, parsed.host, parsed.port
            );
            conn.get_mut().write_all(head.as_bytes()).map_err(|e| (true, format!("send: {e}")))?;
            let response = read_response(&mut conn, max_body).map_err(|e| (matches!(e, HttpError::Io(_)), e.to_string()))?;
            match response.status {
                200 => Ok(response.body),
                status @ 500..=599 => Err((true, format!("HTTP {status}"))),
                status => Err((false, format!("HTTP {status}"))),
            }
        })();
        match attempt {
            Ok(body) => return Ok(body),
            Err((false, why)) => return Err(format!("{url}: {why}")),
            Err((true, why)) => last = why,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("{url}: no answer within {:.0} s (last: {last})", deadline.as_secs_f64()))
}

pub fn read_response(reader: &mut impl BufRead, max_body: u64) -> Result<Response, HttpError> {
    let bad = |s: String| HttpError::Protocol(s);
    let mut head_len = 0usize;
    let mut line = Vec::new();
    let mut next_line = |reader: &mut dyn BufRead| -> Result<String, HttpError> {
        line.clear();
        let n = reader.take((MAX_HEAD - head_len.min(MAX_HEAD)) as u64 + 1).read_until(b'\n', &mut line)?;
        head_len += n;
        if n == 0 {
            return Err(HttpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if head_len > MAX_HEAD || !line.ends_with(b"\n") {
            return Err(HttpError::Protocol("response head too long or cut".into()));
        }
        Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string())
    };
    let status_line = next_line(reader)?;
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("status line {status_line:?}")));
    }
    let status: u16 = words.next().and_then(|s| s.parse().ok()).ok_or_else(|| bad(format!("status line {status_line:?}")))?;
    let mut close = version == "HTTP/1.0";
    let mut length: Option<u64> = None;
    let mut content_range = None;
    loop {
        let header = next_line(reader)?;
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(bad(format!("header {header:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n = value.parse().map_err(|_| bad(format!("Content-Length {value:?}")))?;
                if length.is_some_and(|l| l != n) {
                    return Err(bad("two different Content-Length".into()));
                }
                length = Some(n);
            }
            "content-range" => content_range = Some(parse_content_range(value).ok_or_else(|| bad(format!("Content-Range {value:?}")))?),
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    close = true;
                } else if v.contains("keep-alive") {
                    close = false;
                }
            }
            "transfer-encoding" => return Err(bad(format!("Transfer-Encoding {value} (a file has a length)"))),
            _ => {}
        }
    }
    let length = match length {
        Some(n) => n,
        None if status == 304 || status == 204 => 0,
        None => return Err(bad("no Content-Length".into())),
    };
    if length > max_body {
        return Err(HttpError::TooLarge { status, length, max: max_body });
    }
    let mut body = vec![0u8; length as usize];
    reader.read_exact(&mut body)?;
    Ok(Response { status, content_range, close, body })
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`), END inclusive.
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = if total.trim() == "*" { None } else { Some(total.trim().parse().ok()?) };
    let (a, b) = range.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b && total.is_none_or(|t| b < t)).then_some((a, b, total))
}

enum Slot {
    Empty,
    Fetching,
    Ready(Arc<Vec<u8>>),
}

/// Counters of what went over the network.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub bytes_fetched: AtomicU64,
    pub requests: AtomicU64,
    pub chunks_ready: AtomicU64,
    pub retries: AtomicU64,
    pub verify_failures: AtomicU64,
}

pub struct HttpSource {
    url: Url,
    size: u64,
    chunk: u64,
    options: HttpSourceOptions,
    pool: Mutex<Vec<BufReader<TcpStream>>>,
    slots: Mutex<Vec<Slot>>,
    ready: Condvar,
    stop: AtomicBool,
    pub stats: HttpStats,
}

enum Failure {
    /// Worth another try: the link, the server restarting, a 5xx.
    Transient(String),
    Fatal(String),
}

impl HttpSource {
    /// Connects (with the usual retries) to learn the size unless given, and sets up the
    /// empty cache.
    pub fn open(url: &str, options: HttpSourceOptions) -> Result<HttpSource, SourceError> {
        let url = Url::parse(url).map_err(SourceError::Http)?;
        let chunk = match &options.verifier {
            Some(v) => v.chunk_size(),
            None => options.chunk_size,
        };
        if chunk == 0 || chunk > (64 << 20) {
            return Err(SourceError::Http(format!("chunk size {chunk} out of range")));
        }
        let mut source = HttpSource {
            url,
            size: options.size.unwrap_or(0),
            chunk,
            options,
            pool: Mutex::new(Vec::new()),
            slots: Mutex::new(Vec::new()),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
            stats: HttpStats::default(),
        };
        if source.options.size.is_none() {
            source.size = source.with_retries("size probe", |s| s.probe_size())?;
        }
        let count = source.size.div_ceil(chunk) as usize;
        let slots = (0..count).map(|_| Slot::Empty).collect();
        source.slots = Mutex::new(slots);
        Ok(source)
    }

    pub fn chunk_size(&self) -> u64 {
        self.chunk
    }

    pub fn chunk_count(&self) -> u64 {
        self.size.div_ceil(self.chunk)
    }

    /// Makes every waiting or retrying read fail with [`SourceError::Stopped`].
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.ready.notify_all();
    }

    /// Fetches every chunk not yet in RAM, in order, on one thread; returns when done or
    /// stopped. Reads keep being served meanwhile (they fetch what they need first).
    pub fn fill(&self) -> Result<(), SourceError> {
        for index in 0..self.chunk_count() {
            if self.stop.load(Ordering::SeqCst) {
                return Err(SourceError::Stopped);
            }
            self.chunk_data(index)?;
        }
        Ok(())
    }

    /// The SHA-256 of the whole image equals `expected` (for toram without chunk hashes);
    /// fetches whatever is missing.
    pub fn verify_whole(&self, expected: &[u8; 32]) -> Result<(), SourceError> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for index in 0..self.chunk_count() {
            hasher.update(self.chunk_data(index)?.as_slice());
        }
        let got: [u8; 32] = hasher.finalize().into();
        if &got == expected {
            Ok(())
        } else {
            Err(SourceError::Verify { index: 0, detail: "the whole image's SHA-256 differs".into() })
        }
    }

    fn chunk_data(&self, index: u64) -> Result<Arc<Vec<u8>>, SourceError> {
        let i = index as usize;
        let poisoned = || SourceError::Http("cache lock poisoned".into());
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(SourceError::Stopped);
            }
            match slots.get(i) {
                None => return Err(SourceError::OutOfRange { offset: index * self.chunk, len: 0, size: self.size }),
                Some(Slot::Ready(data)) => return Ok(data.clone()),
                Some(Slot::Fetching) => {
                    slots = self.ready.wait_timeout(slots, Duration::from_millis(200)).map_err(|_| poisoned())?.0;
                }
                Some(Slot::Empty) => {
                    slots[i] = Slot::Fetching;
                    break;
                }
            }
        }
        drop(slots);
        let result = self.fetch_chunk(index);
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        slots[i] = match &result {
            Ok(data) => {
                self.stats.chunks_ready.fetch_add(1, Ordering::Relaxed);
                Slot::Ready(data.clone())
            }
            Err(_) => Slot::Empty,
        };
        drop(slots);
        self.ready.notify_all();
        result
    }

    /// Chunk `index` from the server, with the retries and checks of the options, not
    /// kept in this source's cache (V-FIELD's web seed keeps chunks in its own store).
    pub fn fetch_chunk(&self, index: u64) -> Result<Arc<Vec<u8>>, SourceError> {
        let start = index * self.chunk;
        let end = (start + self.chunk).min(self.size);
        let mut bad_bytes = 0;
        loop {
            let data = self.with_retries("chunk fetch", |s| s.get_range(start, end))?;
            match &self.options.verifier {
                None => return Ok(Arc::new(data)),
                Some(v) => match v.verify(index, &data) {
                    Ok(()) => return Ok(Arc::new(data)),
                    Err(detail) => {
                        self.stats.verify_failures.fetch_add(1, Ordering::Relaxed);
                        bad_bytes += 1;
                        log::warn!("nbd: chunk {index} from {}: {detail}", self.url.path);
                        if bad_bytes >= self.options.verify_attempts.max(1) {
                            return Err(SourceError::Verify { index, detail });
                        }
                    }
                },
            }
        }
    }

    /// Runs `op` until it succeeds, with backoff on transient failures, for ever unless
    /// `give_up_after` is set or the source is stopped.
    fn with_retries<T>(&self, what: &str, op: impl Fn(&HttpSource) -> Result<T, Failure>) -> Result<T, SourceError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        let mut logged = false;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(SourceError::Stopped);
            }
            match op(self) {
                Ok(v) => {
                    if logged {
                        log::info!("nbd: {} answers again", self.url.host);
                    }
                    return Ok(v);
                }
                Err(Failure::Fatal(msg)) => return Err(SourceError::Http(msg)),
                Err(Failure::Transient(msg)) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    if self.options.give_up_after.is_some_and(|limit| started.elapsed() >= limit) {
                        return Err(SourceError::Http(format!("{what}: {msg} (gave up after {:?})", started.elapsed())));
                    }
                    if !logged {
                        log::warn!("nbd: {what} from {}:{}: {msg}; retrying until it answers", self.url.host, self.url.port);
                        logged = true;
                    }
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20).min(backoff));
                    }
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
    }

    fn connection(&self) -> Result<BufReader<TcpStream>, Failure> {
        if let Some(conn) = self.pool.lock().ok().and_then(|mut p| p.pop()) {
            return Ok(conn);
        }
        let addr = self.url.addr().map_err(Failure::Transient)?;
        let stream = TcpStream::connect_timeout(&addr, self.options.connect_timeout)
            .map_err(|e| Failure::Transient(format!("connect {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(self.options.io_timeout))
            .and_then(|_| stream.set_write_timeout(Some(self.options.io_timeout)))
            .map_err(|e| Failure::Transient(format!("socket timeouts: {e}")))?;
        Ok(BufReader::with_capacity(64 << 10, stream))
    }

    /// One ranged GET of `[start, end)` on a pooled or new connection.
    fn request(&self, start: u64, end: u64) -> Result<Response, Failure> {
        let mut conn = self.connection()?;
        let head = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nRange: bytes={}-{}\r\nUser-Agent: viver-nbd\r\nConnection: keep-alive\r\n\r\n",
            self.url.path,
            self.url.host,
            self.url.port,
            start,
            end - 1
        );
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        conn.get_mut().write_all(head.as_bytes()).map_err(|e| Failure::Transient(format!("send: {e}")))?;
        let response = read_response(&mut conn, end - start).map_err(|e| match e {
            HttpError::Io(e) => Failure::Transient(format!("receive: {e}")),
            HttpError::Protocol(m) => Failure::Transient(m),
            HttpError::TooLarge { status: 200, .. } => {
                Failure::Fatal(format!("{} ignores Range requests (HTTP 200 with the whole file)", self.url.host))
            }
            e @ HttpError::TooLarge { .. } => Failure::Transient(e.to_string()),
        })?;
        if !response.close {
            if let Ok(mut pool) = self.pool.lock() {
                pool.push(conn);
            }
        }
        Ok(response)
    }

    fn probe_size(&self) -> Result<u64, Failure> {
        // bytes=0-1, not 0-0: busybox httpd reads an end of 0 as "to the end".
        let response = self.request(0, 2)?;
        match (response.status, response.content_range) {
            (206, Some((_, _, Some(total)))) => Ok(total),
            (200, _) => Err(Failure::Fatal(format!("{} ignores Range requests", self.url.host))),
            (status, _) => Err(classify(status, &self.url.path)),
        }
    }

    fn get_range(&self, start: u64, end: u64) -> Result<Vec<u8>, Failure> {
        let response = self.request(start, end)?;
        if response.status != 206 {
            return Err(classify(response.status, &self.url.path));
        }
        match response.content_range {
            Some((a, b, total)) if a == start && b + 1 == end && total.is_none_or(|t| t == self.size) => {}
            other => return Err(Failure::Transient(format!("asked bytes {start}-{}, got Content-Range {other:?}", end - 1))),
        }
        if response.body.len() as u64 != end - start {
            return Err(Failure::Transient(format!("short body: {} of {}", response.body.len(), end - start)));
        }
        self.stats.bytes_fetched.fetch_add(end - start, Ordering::Relaxed);
        Ok(response.body)
    }
}

fn classify(status: u16, path: &str) -> Failure {
    match status {
        408 | 429 | 500..=599 => Failure::Transient(format!("HTTP {status} for {path}")),
        _ => Failure::Fatal(format!("HTTP {status} for {path}")),
    }
}

impl BlockSource for HttpSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let end = offset.checked_add(buf.len() as u64).filter(|e| *e <= self.size).ok_or(SourceError::OutOfRange {
            offset,
            len: buf.len(),
            size: self.size,
        })?;
        if buf.is_empty() {
            return Ok(());
        }
        let mut pos = offset;
        while pos < end {
            let index = pos / self.chunk;
            let data = self.chunk_data(index)?;
            let in_chunk = (pos - index * self.chunk) as usize;
            let take = ((end - pos) as usize).min(data.len().saturating_sub(in_chunk));
            if take == 0 {
                return Err(SourceError::Http(format!("chunk {index} is short")));
            }
            let at = (pos - offset) as usize;
            buf[at..at + take].copy_from_slice(&data[in_chunk..in_chunk + take]);
            pos += take as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            Url::parse("http://10.0.0.1:8080/img/a.squashfs").unwrap(),
            Url { host: "10.0.0.1".into(), port: 8080, path: "/img/a.squashfs".into() }
        );
        assert_eq!(Url::parse("http://server").unwrap().port, 80);
        assert!(Url::parse("https://x/").is_err());
        assert!(Url::parse("http://x:99999/").is_err());
        assert!(Url::parse("http://x/a b").is_err());
        assert!(Url::parse("http:///a").is_err());
    }

    #[test]
    fn parses_responses() {
        let text = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 10-14/100\r\nContent-Length: 5\r\n\r\nabcdeNEXT";
        let mut r = &text[..];
        let resp = read_response(&mut r, 5).unwrap();
        assert_eq!(resp, Response { status: 206, content_range: Some((10, 14, Some(100))), close: false, body: b"abcde".to_vec() });
        assert_eq!(r, b"NEXT");
        let mut r = &b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"[..];
        assert!(read_response(&mut r, 10).unwrap().close);
        for bad in [
            &b"HTTP/1.1 206 X\r\nContent-Length: 50\r\n\r\nshort"[..],
            b"HTTP/1.1 206 X\r\nContent-Length: 500\r\n\r\n",
            b"HTTP/1.1 206 X\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 206 X\r\nContent-Range: bytes 9-3/10\r\nContent-Length: 0\r\n\r\n",
            b"SMTP 220\r\n\r\n",
            b"HTTP/1.1 206 X\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ] {
            assert!(read_response(&mut &bad[..], 100).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert!(read_response(&mut long.as_bytes(), 100).is_err());
    }

    #[test]
    fn mutated_responses_never_panic() {
        let seed = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/20\r\nConnection: keep-alive\r\nContent-Length: 10\r\n\r\n0123456789".to_vec();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..20_000 {
            let mut v = seed.clone();
            for _ in 0..(next() % 6) {
                let i = (next() as usize) % (v.len() + 1);
                match next() % 3 {
                    0 if i < v.len() => v[i] = next() as u8,
                    1 => v.insert(i, b"0123456789:-/ \r\n"[(next() % 16) as usize]),
                    _ => v.truncate(i),
                }
            }
            let _ = read_response(&mut &v[..], 64);
        }
    }
}

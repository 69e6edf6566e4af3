//! The HTTP/1.1 server: GET and HEAD of the catalogue's paths, keep-alive, single byte
//! ranges (206/416), bounded connections, a deadline for each request head
//! (slowloris) and for idle keep-alive connections.

use super::request::{head_end, parse_range, Range, Request, RequestError, MAX_HEAD};
use crate::serve::files::Catalogue;
use crate::serve::ServeError;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAX_CONNECTIONS: usize = 64;

#[derive(Clone, Debug)]
pub struct Limits {
    /// A request head must arrive whole within this (and an idle connection closes).
    pub head_timeout: Duration,
    /// A single write of the answer may block this long.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { head_timeout: Duration::from_secs(10), write_timeout: Duration::from_secs(60) }
    }
}

pub struct HttpServer {
    listener: TcpListener,
    catalogue: Arc<Catalogue>,
    limits: Limits,
    active: Arc<AtomicUsize>,
}

impl HttpServer {
    pub fn bind(address: SocketAddr, catalogue: Arc<Catalogue>, limits: Limits) -> Result<HttpServer, ServeError> {
        let listener = TcpListener::bind(address).map_err(|source| ServeError::Bind { what: format!("HTTP {address}"), source })?;
        Ok(HttpServer { listener, catalogue, limits, active: Arc::new(AtomicUsize::new(0)) })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Accepts until `stop` (checked after each accept: [`crate::serve::Running`] wakes
    /// the accept with a connection of its own).
    pub fn run(self, stop: &crate::serve::Stop) {
        loop {
            let accepted = self.listener.accept();
            if stop.is_stopped() {
                return;
            }
            let (mut stream, peer) = match accepted {
                Ok(got) => got,
                Err(e) => {
                    log::warn!("serve: HTTP accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if self.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                log::warn!("serve: HTTP {peer}: {MAX_CONNECTIONS} connections already open: refused");
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = stream.write_all(&simple(503, "busy", false));
                continue;
            }
            let (catalogue, limits, active) = (self.catalogue.clone(), self.limits.clone(), self.active.clone());
            active.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new().name("viver-http".into()).spawn(move || {
                connection(stream, peer, &catalogue, &limits);
                active.fetch_sub(1, Ordering::SeqCst);
            });
            if spawned.is_err() {
                self.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A short text answer (errors).
fn simple(status: u16, body: &str, keep_alive: bool) -> Vec<u8> {
    let body = format!("{body}\n");
    let mut head = format!("HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n", reason(status), body.len());
    if status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str(if keep_alive { "\r\n" } else { "Connection: close\r\n\r\n" });
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

enum Head {
    Got(Vec<u8>),
    /// The peer closed (or stayed idle) between requests: no answer owed.
    Closed,
    TooSlow,
    TooLarge,
}

/// Reads one request head, keeping bytes after it in `pending`.
fn read_head(stream: &mut TcpStream, pending: &mut Vec<u8>, limits: &Limits) -> Head {
    let deadline = Instant::now() + limits.head_timeout;
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = head_end(pending) {
            let head: Vec<u8> = pending.drain(..end).collect();
            return Head::Got(head);
        }
        if pending.len() > MAX_HEAD {
            return Head::TooLarge;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return if pending.is_empty() { Head::Closed } else { Head::TooSlow };
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) => return Head::Closed,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Head::Closed,
        }
    }
}

fn connection(mut stream: TcpStream, peer: SocketAddr, catalogue: &Catalogue, limits: &Limits) {
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    let _ = stream.set_nodelay(true);
    let mut pending = Vec::new();
    loop {
        let head = match read_head(&mut stream, &mut pending, limits) {
            Head::Got(head) => head,
            Head::Closed => return,
            Head::TooSlow => {
                log::warn!("serve: HTTP {peer}: request head not complete within {:?}: closed", limits.head_timeout);
                let _ = stream.write_all(&simple(408, "request timeout", false));
                return;
            }
            Head::TooLarge => {
                log::warn!("serve: HTTP {peer}: request head over {MAX_HEAD} bytes: refused");
                let _ = stream.write_all(&simple(431, "request head too large", false));
                return;
            }
        };
        let request = match Request::parse(&head) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("serve: HTTP {peer}: {e}: refused");
                let status = RequestError::status(&e);
                let _ = stream.write_all(&simple(status, reason(status), false));
                return;
            }
        };
        match answer(&mut stream, peer, &request, catalogue) {
            Ok(true) if request.keep_alive() => continue,
            _ => return,
        }
    }
}

/// Answers one request; Ok(true) when the connection may carry another.
fn answer(stream: &mut TcpStream, peer: SocketAddr, request: &Request, catalogue: &Catalogue) -> std::io::Result<bool> {
    let keep = request.keep_alive();
    if request.has_body() {
        log::warn!("serve: HTTP {peer} {} {}: request with a body refused", request.method, request.path);
        stream.write_all(&simple(413, "no request bodies", false))?;
        return Ok(false);
    }
    let head_only = match request.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        other => {
            log::warn!("serve: HTTP {peer} {other} {}: method refused", request.path);
            stream.write_all(&simple(405, "only GET and HEAD", keep))?;
            return Ok(true);
        }
    };
    let Some(resource) = catalogue.get(&request.path) else {
        log::info!("serve: HTTP {peer} {} {}: 404", request.method, request.path);
        stream.write_all(&simple(404, "not found", keep))?;
        return Ok(true);
    };
    let mut body = match resource.open() {
        Ok(body) => body,
        Err(e) => {
            log::warn!("serve: HTTP {peer} {}: cannot open {}: {e}", request.path, resource.describe());
            stream.write_all(&simple(500, "cannot read the file", keep))?;
            return Ok(true);
        }
    };
    let size = body.size;
    let (status, first, length) = match parse_range(request.header("range"), size) {
        Range::Full => (200, 0, size),
        Range::Part(a, b) => (206, a, b - a + 1),
        Range::Unsatisfiable => {
            let head = format!(
                "HTTP/1.1 416 {}\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\n{}\r\n",
                reason(416),
                if keep { "" } else { "Connection: close\r\n" }
            );
            stream.write_all(head.as_bytes())?;
            log::info!("serve: HTTP {peer} {} {} {:?}: 416", request.method, request.path, request.header("range"));
            return Ok(true);
        }
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {}\r\nContent-Length: {length}\r\nAccept-Ranges: bytes\r\n",
        reason(status),
        resource.content_type
    );
    if status == 206 {
        head.push_str(&format!("Content-Range: bytes {first}-{}/{size}\r\n", first + length - 1));
    }
    head.push_str(if keep { "\r\n" } else { "Connection: close\r\n\r\n" });
    stream.write_all(head.as_bytes())?;
    let started = Instant::now();
    if !head_only && length > 0 {
        body.reader.seek(SeekFrom::Start(first))?;
        let copied = std::io::copy(&mut (&mut body.reader).take(length), stream)?;
        if copied != length {
            log::warn!("serve: HTTP {peer} {}: file shrank while sending ({copied} of {length} bytes)", request.path);
            return Ok(false);
        }
    }
    log::info!(
        "serve: HTTP {peer} {} {} {status} {length} bytes in {:.2} s",
        request.method,
        request.path,
        started.elapsed().as_secs_f64()
    );
    Ok(true)
}

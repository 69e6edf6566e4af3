//! HTTP/1.x request heads and `Range: bytes=` (RFC 9110/9112), parsed from bytes with
//! size limits. Bodies are never accepted: the server only serves files.

pub const MAX_HEAD: usize = 8192;
pub const MAX_HEADERS: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub method: String,
    /// The path without query string.
    pub path: String,
    /// HTTP/1.1 (keep-alive by default) or 1.0.
    pub http11: bool,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("request head over {MAX_HEAD} bytes")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("malformed request line {0:?}")]
    BadRequestLine(String),
    #[error("unsupported protocol {0:?}")]
    BadVersion(String),
    #[error("malformed header line {0:?}")]
    BadHeader(String),
    #[error("request head is not text")]
    NotText,
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::TooLarge | RequestError::TooManyHeaders => 431,
            RequestError::BadVersion(_) => 505,
            _ => 400,
        }
    }
}

/// Where the head ends (the index after `\r\n\r\n`), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

impl Request {
    /// Parses a complete head (request line + headers + empty line).
    pub fn parse(head: &[u8]) -> Result<Request, RequestError> {
        if head.len() > MAX_HEAD {
            return Err(RequestError::TooLarge);
        }
        let text = std::str::from_utf8(head).map_err(|_| RequestError::NotText)?;
        let mut lines = text.split("\r\n");
        let line = lines.next().unwrap_or_default();
        let mut parts = line.split(' ');
        let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(t), Some(v), None) if !m.is_empty() && t.starts_with('/') => (m, t, v),
            _ => return Err(RequestError::BadRequestLine(line.chars().take(80).collect())),
        };
        if !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(RequestError::BadRequestLine(line.chars().take(80).collect()));
        }
        let http11 = match version {
            "HTTP/1.1" => true,
            "HTTP/1.0" => false,
            other => return Err(RequestError::BadVersion(other.chars().take(20).collect())),
        };
        let mut headers = Vec::new();
        for line in lines {
            if line.is_empty() {
                continue;
            }
            if headers.len() >= MAX_HEADERS {
                return Err(RequestError::TooManyHeaders);
            }
            let (name, value) = line
                .split_once(':')
                .filter(|(n, _)| !n.is_empty() && !n.contains(' ') && !n.contains('\t'))
                .ok_or_else(|| RequestError::BadHeader(line.chars().take(80).collect()))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        let path = target.split(['?', '#']).next().unwrap_or(target).to_string();
        Ok(Request { method: method.to_string(), path, http11, headers })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Keep the connection open after the answer?
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or_default().to_ascii_lowercase();
        if self.http11 {
            !connection.split(',').any(|t| t.trim() == "close")
        } else {
            connection.split(',').any(|t| t.trim() == "keep-alive")
        }
    }

    /// Whether a body follows (which this server refuses).
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some() || self.header("content-length").is_some_and(|v| v.trim() != "0")
    }
}

/// The outcome of a `Range` header against a file of `size` bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Range {
    /// No usable single range: the whole file (200).
    Full,
    /// Bytes first..=last (206).
    Part(u64, u64),
    /// Nothing of it is inside the file (416).
    Unsatisfiable,
}

/// `bytes=A-B`, `bytes=A-`, `bytes=-N`. Several ranges or other units: the whole file.
pub fn parse_range(header: Option<&str>, size: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| {
        if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse::<u64>().ok()
        } else {
            None
        }
    };
    match (a.is_empty(), num(a), num(b)) {
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                Range::Unsatisfiable
            } else {
                Range::Part(size.saturating_sub(n), size - 1)
            }
        }
        (false, Some(first), last) if b.is_empty() || last.is_some() => {
            let last = last.unwrap_or(u64::MAX);
            if last < first {
                Range::Full // invalid syntax: ignored (RFC 9110 14.1.1)
            } else if first >= size {
                Range::Unsatisfiable
            } else {
                Range::Part(first, last.min(size - 1))
            }
        }
        _ => Range::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head() {
        let r = Request::parse(b"GET /image/a.squashfs?x=1 HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n").unwrap();
        assert_eq!(r.path, "/image/a.squashfs");
        assert_eq!(r.header("range"), Some("bytes=0-9"));
        assert!(r.keep_alive() && !r.has_body());
        let r = Request::parse(b"HEAD / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!r.keep_alive());
        let r = Request::parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!r.keep_alive());
        let r = Request::parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert!(r.has_body());
    }

    #[test]
    fn refusals() {
        assert_eq!(Request::parse(b"GET / HTTP/2\r\n\r\n").unwrap_err().status(), 505);
        assert_eq!(Request::parse(b"GET  / HTTP/1.1\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(Request::parse(b"GET http://x/ HTTP/1.1\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(Request::parse(b"GET / HTTP/1.1\r\nbad header\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(Request::parse(&[b'a'; MAX_HEAD + 1]).unwrap_err(), RequestError::TooLarge);
        let many: String = (0..100).map(|i| format!("h{i}: v\r\n")).collect();
        assert_eq!(Request::parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).unwrap_err().status(), 431);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Range::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Range::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=90-1000"), 100), Range::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Range::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), Range::Part(0, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 100), Range::Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Range::Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Range::Full);
        assert_eq!(parse_range(Some("bytes=x-1"), 100), Range::Full);
        assert_eq!(parse_range(None, 100), Range::Full);
    }
}

//! The RUNES message protocol: one JSON object per line (newline-delimited JSON), over
//! an external plugin's stdin/stdout or a Unix socket.
//!
//! Every message has a `type`:
//! - `hello` (plugin -> host, first line): the plugin's name, the interfaces it
//!   `provides` and those it `needs`;
//! - `start` (host -> plugin, once its needs run): the node's name, the role, the
//!   node's network interface (if one was given) and the plugin's settings; answered by `ready` (or `error` without an id);
//! - `request` (either way): an `id` chosen by the sender, an `interface`, a `method` and
//!   `params`; answered by `response` (`id`, `result`) or `error` (`id`, `message`);
//! - `notify` (either way): an `interface`, an `event` and `params`, no answer;
//! - `stop` (host -> plugin): end now.
//!
//! A line longer than [`MAX_LINE`] is an error, and is skipped whole without being held
//! in memory: a plugin that writes garbage cannot make the host grow.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::BufRead;

/// The longest line either side sends or accepts, newline excluded.
pub const MAX_LINE: usize = 64 << 10;
/// The longest plugin, interface, method or event name.
pub const MAX_NAME: usize = 64;

/// One message of the protocol. Field order is the order the host writes them in, so a
/// shell plugin can pick fields with `sed` (see the README).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Unknown fields are ignored, not refused: room for later versions of the protocol.
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Message {
    Hello {
        plugin: String,
        #[serde(default)]
        provides: Vec<String>,
        #[serde(default)]
        needs: Vec<String>,
    },
    Start {
        node: String,
        role: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interface: Option<String>,
        #[serde(default)]
        settings: Value,
    },
    Ready,
    Request {
        id: u64,
        interface: String,
        method: String,
        #[serde(default)]
        params: Value,
    },
    Response {
        id: u64,
        #[serde(default)]
        result: Value,
    },
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        message: String,
    },
    Notify {
        interface: String,
        event: String,
        #[serde(default)]
        params: Value,
    },
    Stop,
}

const TYPES: &[&str] = &["hello", "start", "ready", "request", "response", "error", "notify", "stop"];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("line of {len} bytes is longer than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("line is not UTF-8 (byte {at})")]
    NotUtf8 { at: usize },
    #[error("line is not JSON: {0}")]
    NotJson(String),
    #[error("a message is a JSON object, this line is {0}")]
    NotObject(&'static str),
    #[error("message has no \"type\" string (expected one of {})", TYPES.join(", "))]
    NoType,
    #[error("unknown message type {0:?} (expected one of {types})", types = TYPES.join(", "))]
    UnknownType(String),
    #[error("{kind} message: {detail}")]
    Field { kind: String, detail: String },
    #[error("{kind} message: {field} {name:?} is not a name (1-{max} of a-z, 0-9, '-', '_', '.')", max = MAX_NAME)]
    BadName { kind: String, field: &'static str, name: String },
    #[error("reading: {0}")]
    Io(String),
}

/// True for names the protocol accepts for plugins, interfaces, methods and events.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one line (without its newline; a trailing `\r` is allowed).
pub fn parse_line(line: &[u8]) -> Result<Message, ProtocolError> {
    if line.len() > MAX_LINE {
        return Err(ProtocolError::TooLong { len: line.len(), max: MAX_LINE });
    }
    let text = std::str::from_utf8(line).map_err(|e| ProtocolError::NotUtf8 { at: e.valid_up_to() })?;
    let value: Value = serde_json::from_str(text.trim_end_matches('\r')).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    let Value::Object(object) = &value else { return Err(ProtocolError::NotObject(kind_of(&value))) };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        _ => return Err(ProtocolError::NoType),
    };
    if !TYPES.contains(&kind.as_str()) {
        return Err(ProtocolError::UnknownType(kind));
    }
    let message: Message = serde_json::from_value(value).map_err(|e| ProtocolError::Field { kind: kind.clone(), detail: e.to_string() })?;
    check_names(&message).map_err(|(field, name)| ProtocolError::BadName { kind, field, name })?;
    Ok(message)
}

fn check_names(message: &Message) -> Result<(), (&'static str, String)> {
    let check = |field: &'static str, name: &str| if is_name(name) { Ok(()) } else { Err((field, name.to_string())) };
    match message {
        Message::Hello { plugin, provides, needs } => {
            check("plugin", plugin)?;
            provides.iter().try_for_each(|i| check("provided interface", i))?;
            needs.iter().try_for_each(|i| check("needed interface", i))
        }
        Message::Request { interface, method, .. } => {
            check("interface", interface)?;
            check("method", method)
        }
        Message::Notify { interface, event, .. } => {
            check("interface", interface)?;
            check("event", event)
        }
        _ => Ok(()),
    }
}

/// One line of JSON for `message`, newline included.
pub fn to_line(message: &Message) -> String {
    // A Message holds only strings, numbers and JSON values: serialising cannot fail.
    let mut line = serde_json::to_string(message).unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":\"{e}\"}}"));
    line.push('\n');
    line
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A whole line, newline removed.
    Text(Vec<u8>),
    /// A line over the limit, consumed to its newline and dropped.
    TooLong(usize),
    /// The other side closed the stream.
    End,
}

/// Reads one line of at most `max` bytes; a longer line is consumed and reported
/// without being kept. A last line without newline counts as a line.
pub fn read_line(reader: &mut impl BufRead, max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut len = 0usize;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(match len {
                0 => Line::End,
                n if n > max => Line::TooLong(n),
                _ => Line::Text(line),
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (&buf[..at], Some(at + 1)),
            None => (buf, None),
        };
        len += chunk.len();
        if len <= max {
            line.extend_from_slice(chunk);
        } else {
            line = Vec::new();
        }
        let consumed = done.unwrap_or(chunk.len());
        reader.consume(consumed);
        if done.is_some() {
            return Ok(if len > max { Line::TooLong(len) } else { Line::Text(line) });
        }
    }
}

/// Parses a whole stream as the host does, line by line (the fuzz target's entry
/// point): every line gives a message or an error, never a panic.
pub fn parse_stream(bytes: &[u8]) -> Vec<Result<Message, ProtocolError>> {
    let mut reader = std::io::BufReader::with_capacity(4096, bytes);
    let mut out = Vec::new();
    loop {
        match read_line(&mut reader, MAX_LINE) {
            Ok(Line::Text(line)) => out.push(parse_line(&line)),
            Ok(Line::TooLong(len)) => out.push(Err(ProtocolError::TooLong { len, max: MAX_LINE })),
            Ok(Line::End) => return out,
            Err(e) => {
                out.push(Err(ProtocolError::Io(e.to_string())));
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_message_survives_a_round_trip() {
        let messages = [
            Message::Hello { plugin: "greeter".into(), provides: vec!["greeting".into()], needs: vec!["ip-address".into()] },
            Message::Start { node: "n1".into(), role: "web".into(), interface: Some("lo".into()), settings: json!({"greeting": "hi"}) },
            Message::Start { node: "n1".into(), role: "web".into(), interface: None, settings: json!({}) },
            Message::Ready,
            Message::Request { id: 7, interface: "ip-address".into(), method: "get".into(), params: json!({}) },
            Message::Response { id: 7, result: json!({"address": "127.0.0.1"}) },
            Message::Error { id: Some(7), message: "no".into() },
            Message::Error { id: None, message: "cannot start".into() },
            Message::Notify { interface: "greeting".into(), event: "changed".into(), params: json!([1, 2]) },
            Message::Stop,
        ];
        for message in messages {
            let line = to_line(&message);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'), "{line:?}");
            assert_eq!(parse_line(line.trim_end().as_bytes()).unwrap(), message);
        }
    }

    #[test]
    fn the_host_writes_fields_in_the_documented_order() {
        let line = to_line(&Message::Request { id: 3, interface: "greeting".into(), method: "hello".into(), params: json!({}) });
        assert_eq!(line, "{\"type\":\"request\",\"id\":3,\"interface\":\"greeting\",\"method\":\"hello\",\"params\":{}}\n");
    }

    #[test]
    fn malformed_lines_are_named_errors() {
        assert!(matches!(parse_line(b"{\"type\":\"hello\""), Err(ProtocolError::NotJson(_))));
        assert!(matches!(parse_line(b"\xff\xfe"), Err(ProtocolError::NotUtf8 { at: 0 })));
        assert_eq!(parse_line(b"[1,2]"), Err(ProtocolError::NotObject("an array")));
        assert_eq!(parse_line(b"\"hello\""), Err(ProtocolError::NotObject("a string")));
        assert_eq!(parse_line(b"{\"id\":1}"), Err(ProtocolError::NoType));
        assert_eq!(parse_line(b"{\"type\":7}"), Err(ProtocolError::NoType));
        assert_eq!(parse_line(b"{\"type\":\"greet\"}"), Err(ProtocolError::UnknownType("greet".into())));
        assert!(parse_line(b"").is_err());
        // A trailing carriage return (a plugin written on Windows habits) is accepted.
        assert_eq!(parse_line(b"{\"type\":\"ready\"}\r"), Ok(Message::Ready));
    }

    #[test]
    fn wrong_types_and_missing_fields_say_which_field() {
        let err = parse_line(br#"{"type":"request","id":"seven","interface":"a","method":"b"}"#).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("request message:") && text.contains("expected u64"), "{text}");
        let err = parse_line(br#"{"type":"request","id":1,"method":"b"}"#).unwrap_err().to_string();
        assert!(err.contains("missing field `interface`"), "{err}");
        let err = parse_line(br#"{"type":"response","id":-1}"#).unwrap_err().to_string();
        assert!(err.starts_with("response message:"), "{err}");
        let err = parse_line(br#"{"type":"hello","plugin":"x","provides":"greeting"}"#).unwrap_err().to_string();
        assert!(err.contains("expected a sequence"), "{err}");
        // A field a later version may add is ignored.
        assert_eq!(parse_line(br#"{"type":"ready","since":"v2"}"#), Ok(Message::Ready));
        let err = parse_line(br#"{"type":"request","id":1,"interface":"Has Space","method":"b"}"#).unwrap_err();
        assert!(matches!(err, ProtocolError::BadName { field: "interface", .. }), "{err}");
    }

    #[test]
    fn an_oversize_line_is_skipped_and_the_next_one_read() {
        let mut stream = vec![b'x'; MAX_LINE + 10];
        stream.extend_from_slice(b"\n{\"type\":\"ready\"}\n");
        let got = parse_stream(&stream);
        assert_eq!(got, vec![Err(ProtocolError::TooLong { len: MAX_LINE + 10, max: MAX_LINE }), Ok(Message::Ready)]);
        assert_eq!(parse_line(&vec![b' '; MAX_LINE + 1]), Err(ProtocolError::TooLong { len: MAX_LINE + 1, max: MAX_LINE }));
    }

    #[test]
    fn a_line_exactly_at_the_limit_is_read_and_a_last_line_needs_no_newline() {
        let mut reader = std::io::BufReader::with_capacity(7, &b"abc\ndefgh"[..]);
        assert_eq!(read_line(&mut reader, 5).unwrap(), Line::Text(b"abc".to_vec()));
        assert_eq!(read_line(&mut reader, 5).unwrap(), Line::Text(b"defgh".to_vec()));
        assert_eq!(read_line(&mut reader, 5).unwrap(), Line::End);
        let mut reader = std::io::BufReader::with_capacity(3, &b"abcdef"[..]);
        assert_eq!(read_line(&mut reader, 5).unwrap(), Line::TooLong(6));
    }

    #[test]
    fn mutated_messages_never_panic() {
        let seed = to_line(&Message::Request { id: 1, interface: "ip-address".into(), method: "get".into(), params: json!({"a": [1]}) });
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let mut bytes = seed.clone().into_bytes();
            for _ in 0..(x % 4 + 1) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % bytes.len();
                bytes[at] = (x >> 32) as u8;
            }
            let _ = parse_stream(&bytes);
        }
    }
}

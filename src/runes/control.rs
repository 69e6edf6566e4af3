//! The node's control socket: a Unix stream socket speaking the plugin protocol's
//! `request`/`response`/`error` lines. `viver roles` asks the host's own interface
//! (`runes.status`); `viver ask` sends a request to any interface, routed as a
//! plugin's would be.

use super::host::Requests;
use super::protocol::{self, Line, Message, MAX_LINE};
use serde_json::Value;
use std::io::{BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a node's socket is unless `--socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/viver/runes.sock";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{path}: {source} (is `viver node` running?)")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Listen { path: PathBuf, source: std::io::Error },
    #[error("{path}: another node is already listening here")]
    InUse { path: PathBuf },
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("the node's answer: {0}")]
    Protocol(#[from] protocol::ProtocolError),
    #[error("the node closed the connection without an answer")]
    NoAnswer,
    #[error("{0}")]
    Refused(String),
}

/// Listens at `path` (its directory made if missing; a stale socket file replaced, a
/// live one refused) and answers every connection on a thread of its own.
pub fn serve(path: &Path, requests: Requests) -> Result<std::thread::JoinHandle<()>, ControlError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ControlError::Listen { path: path.into(), source })?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse { path: path.into() });
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|source| ControlError::Listen { path: path.into(), source })?;
    let thread = std::thread::Builder::new().name("runes-control".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let requests = requests.clone();
            let _ = std::thread::Builder::new().name("runes-client".into()).spawn(move || answer(stream, requests));
        }
    })?;
    Ok(thread)
}

/// Answers one connection's requests until it closes (or stays silent a minute).
fn answer(stream: UnixStream, requests: Requests) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let reply = match protocol::read_line(&mut reader, MAX_LINE) {
            Ok(Line::Text(line)) => match protocol::parse_line(&line) {
                Ok(Message::Request { id, interface, method, params }) => match requests.request(&interface, &method, params) {
                    Ok(result) => Message::Response { id, result },
                    Err(e) => Message::Error { id: Some(id), message: e.to_string() },
                },
                Ok(_) => Message::Error { id: None, message: "the control socket takes requests only".into() },
                Err(e) => Message::Error { id: None, message: e.to_string() },
            },
            Ok(Line::TooLong(len)) => Message::Error { id: None, message: format!("line of {len} bytes is over the limit of {MAX_LINE}") },
            Ok(Line::End) | Err(_) => return,
        };
        if writer.write_all(protocol::to_line(&reply).as_bytes()).is_err() {
            return;
        }
    }
}

/// Sends one request to the node at `socket` and waits up to `timeout` for its answer.
pub fn ask(socket: &Path, interface: &str, method: &str, params: Value, timeout: Duration) -> Result<Value, ControlError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ControlError::Connect { path: socket.into(), source })?;
    stream.set_read_timeout(Some(timeout))?;
    let request = Message::Request { id: 1, interface: interface.into(), method: method.into(), params };
    stream.write_all(protocol::to_line(&request).as_bytes())?;
    let mut reader = BufReader::new(stream);
    match protocol::read_line(&mut reader, MAX_LINE)? {
        Line::Text(line) => match protocol::parse_line(&line)? {
            Message::Response { result, .. } => Ok(result),
            Message::Error { message, .. } => Err(ControlError::Refused(message)),
            other => Err(ControlError::Refused(format!("unexpected answer {}", protocol::to_line(&other).trim_end()))),
        },
        Line::TooLong(len) => Err(protocol::ProtocolError::TooLong { len, max: MAX_LINE }.into()),
        Line::End => Err(ControlError::NoAnswer),
    }
}

#[cfg(test)]
mod tests {
    use super::super::host::{Host, HostConfig};
    use super::super::roles::Roles;
    use super::*;
    use serde_json::json;
    use std::io::BufRead;

    fn node(name: &str) -> (Host, PathBuf) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/runes-tmp/control-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let specs = Roles::builtin().plugins_for(&["boot-server".into()]).unwrap();
        let mut config = HostConfig::new(name);
        config.interface = Some("lo".into());
        let host = Host::start(specs, config).unwrap();
        let socket = dir.join("runes.sock");
        serve(&socket, host.requests()).unwrap();
        (host, socket)
    }

    #[test]
    fn requests_are_routed_and_bad_lines_answered_with_errors_on_one_connection() {
        let (_host, socket) = node("lines");
        let stream = UnixStream::connect(&socket).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut exchange = |line: &str| {
            writer.write_all(line.as_bytes()).unwrap();
            let mut answer = String::new();
            reader.read_line(&mut answer).unwrap();
            protocol::parse_line(answer.trim_end().as_bytes()).unwrap()
        };
        let Message::Response { id: 5, result } =
            exchange("{\"type\":\"request\",\"id\":5,\"interface\":\"dhcp\",\"method\":\"config\"}\n")
        else {
            panic!("no response")
        };
        assert_eq!((result["server"].as_str(), result["boot_file_bios"].as_str()), (Some("127.0.0.1"), Some("undionly.kpxe")));
        let Message::Error { id: None, message } = exchange("{\"type\":\"request\",\"id\":\"x\"}\n") else { panic!("no error") };
        assert!(message.contains("request message:"), "{message}");
        let Message::Error { id: None, message } = exchange("{\"type\":\"ready\"}\n") else { panic!("no error") };
        assert_eq!(message, "the control socket takes requests only");
        let Message::Error { id: Some(6), message } =
            exchange("{\"type\":\"request\",\"id\":6,\"interface\":\"dhcp\",\"method\":\"restart\"}\n")
        else {
            panic!("no error")
        };
        assert_eq!(message, "dhcp: interface dhcp has no method \"restart\" (it has: config)");
        // The connection still works after all that.
        assert!(matches!(
            exchange("{\"type\":\"request\",\"id\":7,\"interface\":\"runes\",\"method\":\"status\"}\n"),
            Message::Response { id: 7, .. }
        ));
    }

    #[test]
    fn ask_gets_the_answer_and_a_second_node_on_the_same_socket_is_refused() {
        let (_host, socket) = node("ask");
        let status = ask(&socket, "runes", "status", json!({}), Duration::from_secs(5)).unwrap();
        assert_eq!(status["node"], "ask");
        assert_eq!(status["plugins"].as_array().map(Vec::len), Some(3));
        let err = ask(&socket, "nothing", "x", json!({}), Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.to_string(), "no plugin on this node provides nothing");
        let host = Host::start(Vec::new(), HostConfig::new("second")).unwrap();
        assert!(matches!(serve(&socket, host.requests()), Err(ControlError::InUse { .. })));
    }
}

//! A running QEMU: serial log polling, QMP/HMP monitor, timeouts, kill on drop.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::serial::SerialLog;

/// A QEMU process. Killed on drop, so a failing test leaves no VM behind.
pub struct RunningVm {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    log_path: PathBuf,
    log_header_len: usize,
    stderr_path: PathBuf,
    qmp_path: PathBuf,
    qmp: Option<Qmp>,
    started: Instant,
}

struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// Where a VM's files are (the logs and the QMP socket), for [`RunningVm::started`].
pub(super) struct RunningVmFiles {
    pub name: String,
    pub log_path: PathBuf,
    /// Bytes of command-line header at the start of the log, before the serial output.
    pub log_header_len: usize,
    pub stderr_path: PathBuf,
    pub qmp_path: PathBuf,
}

impl RunningVm {
    /// Takes charge of a QEMU process just spawned by [`super::Vm::spawn`].
    pub(super) fn started(files: RunningVmFiles, child: Child) -> RunningVm {
        RunningVm {
            name: files.name,
            child,
            status: None,
            log_path: files.log_path,
            log_header_len: files.log_header_len,
            stderr_path: files.stderr_path,
            qmp_path: files.qmp_path,
            qmp: None,
            started: Instant::now(),
        }
    }

    /// The serial console so far (without the command-line header).
    pub fn serial(&self) -> SerialLog {
        let bytes = fs::read(&self.log_path).unwrap_or_default();
        let text = String::from_utf8_lossy(bytes.get(self.log_header_len..).unwrap_or_default()).into_owned();
        SerialLog { text }
    }

    /// Where the log lives (command line + serial console).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether QEMU has exited (and records its status).
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
            }
        }
        self.status.is_some()
    }

    /// Waits until a serial line contains `pattern` and returns that line. Lines printed
    /// before the call count too. Err on timeout or when QEMU exits first.
    pub fn wait_for_line(&mut self, pattern: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.has_exited();
            if let Some(line) = self.serial().text.lines().find(|l| l.contains(pattern)) {
                return Ok(line.trim_end_matches('\r').to_string());
            }
            if exited {
                return Err(self.failure(&format!("QEMU exited ({}) before printing {pattern:?}", self.status_text())));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!("no line with {pattern:?} within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for QEMU to exit. On timeout kills it and returns Err with the log tail;
    /// a non-zero QEMU exit status (bad arguments, crash) is an Err too.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while !self.has_exited() {
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.failure(&format!("timeout: QEMU still running after {timeout:?}, killed")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        match self.status {
            Some(status) if status.success() => Ok(()),
            _ => Err(self.failure(&format!("QEMU failed: {}", self.status_text()))),
        }
    }

    /// Kills QEMU now (no-op if it already exited).
    pub fn kill(&mut self) {
        if !self.has_exited() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// A human monitor (HMP) command such as `device_del usbx0` or `info block`; returns
    /// its text output. Sent through QMP's `human-monitor-command`, which gives the
    /// output without the HMP prompt/echo noise and reports errors as errors.
    pub fn monitor(&mut self, command: &str) -> Result<String, String> {
        let request = serde_json::json!({
            "execute": "human-monitor-command",
            "arguments": { "command-line": command },
        });
        let answer = self.qmp(&request)?;
        let output = answer.as_str().unwrap_or_default().to_string();
        // HMP reports most failures as text ("Error: ...", "Device 'x' not found").
        if output.starts_with("Error") || output.contains("not found") {
            return Err(format!("vm {}: monitor command {command:?} failed: {}", self.name, output.trim_end()));
        }
        Ok(output)
    }

    /// A raw QMP command (`{"execute": ..., "arguments": ...}`); returns its `return`
    /// value, Err with QMP's error description.
    pub fn qmp(&mut self, request: &serde_json::Value) -> Result<serde_json::Value, String> {
        if self.qmp.is_none() {
            self.qmp = Some(self.qmp_connect()?);
        }
        let name = self.name.clone();
        let qmp = self.qmp.as_mut().ok_or("qmp not connected")?;
        let line = format!("{request}\n");
        qmp.writer.write_all(line.as_bytes()).map_err(|e| format!("vm {name}: qmp write: {e}"))?;
        read_qmp_answer(&mut qmp.reader).map_err(|e| format!("vm {name}: qmp {request}: {e}"))
    }

    fn qmp_connect(&mut self) -> Result<Qmp, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(&self.qmp_path) {
                Ok(stream) => break stream,
                Err(e) => {
                    if self.has_exited() || Instant::now() >= deadline {
                        return Err(self.failure(&format!("cannot connect to QMP at {}: {e}", self.qmp_path.display())));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let writer = stream.try_clone().map_err(|e| format!("qmp socket: {e}"))?;
        let mut qmp = Qmp { reader: BufReader::new(stream), writer };
        // The greeting, then capability negotiation, before any command is accepted.
        let mut greeting = String::new();
        qmp.reader.read_line(&mut greeting).map_err(|e| format!("qmp greeting: {e}"))?;
        qmp.writer.write_all(b"{\"execute\":\"qmp_capabilities\"}\n").map_err(|e| format!("qmp write: {e}"))?;
        read_qmp_answer(&mut qmp.reader)?;
        Ok(qmp)
    }

    fn status_text(&self) -> String {
        match self.status {
            Some(status) => status.to_string(),
            None => "still running".to_string(),
        }
    }

    /// An error message: what went wrong, where the logs are, QEMU's stderr and the
    /// tail of the serial console.
    fn failure(&self, what: &str) -> String {
        let stderr = fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let mut message = format!("vm {}: {what} after {:.1?}\nlog: {}\n", self.name, self.started.elapsed(), self.log_path.display());
        if !stderr.trim().is_empty() {
            let _ = writeln!(message, "--- qemu stderr ---\n{}", stderr.trim_end());
        }
        let _ = write!(message, "--- serial tail ---\n{}", self.serial().tail(40));
        message
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_file(&self.qmp_path);
    }
}

fn read_qmp_answer(reader: &mut BufReader<UnixStream>) -> Result<serde_json::Value, String> {
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(|e| format!("qmp read: {e}"))?;
        if n == 0 {
            return Err("qmp connection closed".to_string());
        }
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| format!("qmp answer {line:?} is not JSON: {e}"))?;
        if let Some(ret) = value.get("return") {
            return Ok(ret.clone());
        }
        if let Some(error) = value.get("error") {
            return Err(format!("qmp error: {error}"));
        }
        // Anything else is an asynchronous event (DEVICE_DELETED, SHUTDOWN...): skip it.
    }
}

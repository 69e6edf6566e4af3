//! External plugins: an executable speaking the JSON protocol ([`super::protocol`])
//! over its stdin (what the host sends) and stdout (what it sends); its stderr goes to
//! the node's log, line by line. The process is this endpoint: when it ends, or closes
//! its stdout, the plugin is dead.

use super::graph::Declaration;
use super::plugin::{Endpoint, PluginError, Router, StartInfo};
use super::protocol::{self, Line, Message, MAX_LINE};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Why an answer did not come.
enum Failure {
    /// The plugin's `error`.
    Message(String),
    /// The plugin ended first.
    Died,
}

/// Requests one plugin may have waiting for answers at once.
const MAX_IN_FLIGHT: usize = 64;

type Pending = Arc<Mutex<HashMap<u64, Sender<Result<Value, Failure>>>>>;
type Started = Arc<Mutex<Option<Sender<Result<(), Failure>>>>>;

pub struct ExternalEndpoint {
    declaration: Declaration,
    child: Mutex<Child>,
    pid: u32,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    pending: Pending,
    started: Started,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
}

fn write_message(stdin: &Mutex<Option<ChildStdin>>, message: &Message) -> std::io::Result<()> {
    let mut stdin = stdin.lock().map_err(|_| std::io::Error::other("poisoned"))?;
    let pipe = stdin.as_mut().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
    pipe.write_all(protocol::to_line(message).as_bytes())?;
    pipe.flush()
}

impl ExternalEndpoint {
    /// Starts `exec` as plugin `name` and waits up to `timeout` for its `hello`, which
    /// must carry the same name.
    pub fn spawn(name: &str, exec: &Path, router: Weak<dyn Router>, timeout: Duration) -> Result<ExternalEndpoint, PluginError> {
        let failed = |message: String| PluginError::Failed { plugin: name.to_string(), message };
        let mut command = Command::new(exec);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe. A plugin must not outlive its node, even
        // when the node is killed without a chance to stop it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| failed(format!("cannot run {}: {e}", exec.display())))?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            return Err(failed("no pipes to the plugin".into()));
        };
        let stdin = Arc::new(Mutex::new(Some(stdin)));
        let pending: Pending = Arc::default();
        let started: Started = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let (hello_tx, hello_rx) = mpsc::channel::<Result<Declaration, String>>();

        let log_name = name.to_string();
        let _ = std::thread::Builder::new().name(format!("runes-{name}-err")).spawn(move || {
            let mut reader = BufReader::new(stderr);
            loop {
                match protocol::read_line(&mut reader, 4096) {
                    Ok(Line::Text(line)) => log::info!("plugin {log_name}: {}", String::from_utf8_lossy(&line)),
                    Ok(Line::TooLong(len)) => log::info!("plugin {log_name}: (a line of {len} bytes, not shown)"),
                    Ok(Line::End) | Err(_) => break,
                }
            }
        });

        let reader = Reader {
            name: name.to_string(),
            stdin: stdin.clone(),
            pending: pending.clone(),
            started: started.clone(),
            alive: alive.clone(),
            router,
            in_flight: Arc::default(),
        };
        std::thread::Builder::new()
            .name(format!("runes-{name}"))
            .spawn(move || reader.run(BufReader::new(stdout), hello_tx))
            .map_err(|e| failed(format!("cannot start a thread: {e}")))?;

        let endpoint = |declaration| ExternalEndpoint {
            declaration,
            child: Mutex::new(child),
            pid,
            stdin,
            pending,
            started,
            next_id: AtomicU64::new(1),
            alive,
        };
        match hello_rx.recv_timeout(timeout) {
            Ok(Ok(declaration)) if declaration.plugin == name => Ok(endpoint(declaration)),
            Ok(Ok(declaration)) => {
                let e = endpoint(declaration);
                e.stop(Duration::ZERO);
                Err(failed(format!("{} says it is plugin {:?}; the role names it {name:?}", exec.display(), e.declaration.plugin)))
            }
            Ok(Err(message)) => {
                endpoint(Declaration { plugin: name.into(), provides: vec![], needs: vec![] }).stop(Duration::ZERO);
                Err(failed(message))
            }
            Err(_) => {
                endpoint(Declaration { plugin: name.into(), provides: vec![], needs: vec![] }).stop(Duration::ZERO);
                Err(PluginError::Timeout { plugin: name.into(), what: "hello".into(), after: timeout })
            }
        }
    }
}

/// The thread that reads what the plugin writes.
struct Reader {
    name: String,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    pending: Pending,
    started: Started,
    alive: Arc<AtomicBool>,
    router: Weak<dyn Router>,
    /// The plugin's requests routed and not answered yet.
    in_flight: Arc<AtomicUsize>,
}

impl Reader {
    fn run(self, mut stdout: BufReader<std::process::ChildStdout>, hello: Sender<Result<Declaration, String>>) {
        let mut hello = Some(hello);
        let mut number = 0u64;
        loop {
            number += 1;
            let parsed = match protocol::read_line(&mut stdout, MAX_LINE) {
                Ok(Line::Text(line)) => protocol::parse_line(&line),
                Ok(Line::TooLong(len)) => Err(protocol::ProtocolError::TooLong { len, max: MAX_LINE }),
                Ok(Line::End) | Err(_) => break,
            };
            let message = match parsed {
                Ok(message) => message,
                Err(e) => {
                    let text = format!("line {number}: {e}");
                    log::warn!("plugin {}: {text}", self.name);
                    if let Some(hello) = hello.take() {
                        let _ = hello.send(Err(format!("its first line is no hello: {text}")));
                        break;
                    }
                    let _ = write_message(&self.stdin, &Message::Error { id: None, message: text });
                    continue;
                }
            };
            if let Some(waiting) = hello.take() {
                match message {
                    Message::Hello { plugin, provides, needs } => {
                        let _ = waiting.send(Ok(Declaration { plugin, provides, needs }));
                        continue;
                    }
                    other => {
                        let _ = waiting.send(Err(format!("its first line is no hello but {}", protocol::to_line(&other).trim_end())));
                        break;
                    }
                }
            }
            self.dispatch(message, number);
        }
        self.alive.store(false, Ordering::SeqCst);
        // Whoever waits for an answer learns now, not at its timeout.
        if let Ok(mut pending) = self.pending.lock() {
            for (_, waiting) in pending.drain() {
                let _ = waiting.send(Err(Failure::Died));
            }
        }
        if let Ok(mut started) = self.started.lock() {
            if let Some(waiting) = started.take() {
                let _ = waiting.send(Err(Failure::Died));
            }
        }
    }

    fn dispatch(&self, message: Message, number: u64) {
        match message {
            Message::Response { id, result } => self.answer(id, Ok(result), number),
            Message::Error { id: Some(id), message } => self.answer(id, Err(Failure::Message(message)), number),
            Message::Ready | Message::Error { id: None, .. } => {
                let result = match message {
                    Message::Error { message, .. } => Err(Failure::Message(message)),
                    _ => Ok(()),
                };
                match self.started.lock().ok().and_then(|mut s| s.take()) {
                    Some(waiting) => {
                        let _ = waiting.send(result);
                    }
                    None => log::warn!("plugin {}: line {number}: ready or error without a start to answer", self.name),
                }
            }
            Message::Request { id, interface, method, params } => {
                // A plugin that floods requests gets errors, not a thread each.
                if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
                    self.in_flight.fetch_sub(1, Ordering::SeqCst);
                    let message = format!("more than {MAX_IN_FLIGHT} requests of this plugin are waiting for answers");
                    let _ = write_message(&self.stdin, &Message::Error { id: Some(id), message });
                    return;
                }
                // On a thread of its own: the answer may need a request back to this plugin.
                let (router, stdin, name) = (self.router.clone(), self.stdin.clone(), self.name.clone());
                let in_flight = self.in_flight.clone();
                let _ = std::thread::Builder::new().name(format!("runes-{name}-req")).spawn(move || {
                    let result = match router.upgrade() {
                        Some(router) => router.route(&name, &interface, &method, params),
                        None => Err(PluginError::Routing("the node is stopping".into())),
                    };
                    let reply = match result {
                        Ok(result) => Message::Response { id, result },
                        Err(e) => Message::Error { id: Some(id), message: e.to_string() },
                    };
                    let _ = write_message(&stdin, &reply);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Message::Notify { interface, event, params } => {
                if let Some(router) = self.router.upgrade() {
                    router.notify(&self.name, &interface, &event, params);
                }
            }
            Message::Hello { .. } | Message::Start { .. } | Message::Stop => {
                log::warn!("plugin {}: line {number}: a plugin does not send this message after its hello", self.name);
                let _ = write_message(
                    &self.stdin,
                    &Message::Error { id: None, message: format!("line {number}: not a message a plugin sends now") },
                );
            }
        }
    }

    fn answer(&self, id: u64, result: Result<Value, Failure>, number: u64) {
        match self.pending.lock().ok().and_then(|mut p| p.remove(&id)) {
            Some(waiting) => {
                let _ = waiting.send(result);
            }
            None => log::warn!("plugin {}: line {number}: an answer to request {id}, which is not waiting (late or unknown)", self.name),
        }
    }
}

impl ExternalEndpoint {
    fn died(&self) -> PluginError {
        let detail = match self.child.lock().ok().and_then(|mut c| c.try_wait().ok().flatten()) {
            Some(status) => status.to_string(),
            None => "closed its output".into(),
        };
        PluginError::Died { plugin: self.declaration.plugin.clone(), detail }
    }

    fn outcome<T>(&self, answer: mpsc::Receiver<Result<T, Failure>>, what: &str, timeout: Duration) -> Result<T, PluginError> {
        let plugin = self.declaration.plugin.clone();
        match answer.recv_timeout(timeout) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Failure::Died)) => Err(self.died()),
            Ok(Err(Failure::Message(message))) => Err(PluginError::Failed { plugin, message }),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(PluginError::Timeout { plugin, what: what.into(), after: timeout }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.died()),
        }
    }
}

impl Endpoint for ExternalEndpoint {
    fn declaration(&self) -> &Declaration {
        &self.declaration
    }

    fn start(&self, info: &StartInfo, timeout: Duration) -> Result<(), PluginError> {
        let (start_tx, start_rx) = mpsc::channel();
        if let Ok(mut started) = self.started.lock() {
            *started = Some(start_tx);
        }
        let message = Message::Start {
            node: info.node.clone(),
            role: info.role.clone(),
            interface: info.interface.clone(),
            settings: info.settings.clone(),
        };
        write_message(&self.stdin, &message).map_err(|_| self.died())?;
        self.outcome(start_rx, "start", timeout)
    }

    fn request(&self, interface: &str, method: &str, params: Value, timeout: Duration) -> Result<Value, PluginError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (reply, answer) = mpsc::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(id, reply);
        }
        if !self.is_alive() {
            self.pending.lock().ok().map(|mut p| p.remove(&id));
            return Err(self.died());
        }
        let message = Message::Request { id, interface: interface.into(), method: method.into(), params };
        if write_message(&self.stdin, &message).is_err() {
            self.pending.lock().ok().map(|mut p| p.remove(&id));
            return Err(self.died());
        }
        let result = self.outcome(answer, &format!("{interface}.{method}"), timeout);
        self.pending.lock().ok().map(|mut p| p.remove(&id));
        result
    }

    fn notify(&self, interface: &str, event: &str, params: Value) {
        let _ = write_message(&self.stdin, &Message::Notify { interface: interface.into(), event: event.into(), params });
    }

    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn is_alive(&self) -> bool {
        if !self.alive.load(Ordering::SeqCst) {
            return false;
        }
        !matches!(self.child.lock().map(|mut c| c.try_wait()), Ok(Ok(Some(_))))
    }

    fn stop(&self, grace: Duration) {
        let _ = write_message(&self.stdin, &Message::Stop);
        // Closing stdin is the second way to say it: a shell's `read` ends.
        if let Ok(mut stdin) = self.stdin.lock() {
            stdin.take();
        }
        let Ok(mut child) = self.child.lock() else { return };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ExternalEndpoint {
    fn drop(&mut self) {
        // An endpoint let go without stop (a failed start) takes its process with it.
        if let Ok(child) = self.child.get_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

//! Built-in plugins: Rust trait objects inside VIVER, each on a thread of its own that
//! takes one call at a time, so a slow or stuck plugin times out for its caller exactly
//! as an external one does, and a panic is a death the host sees and restarts.

use super::graph::Declaration;
use super::plugin::{Endpoint, PluginError, Router, StartInfo};
use serde_json::Value;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// What a built-in plugin implements.
pub trait Builtin: Send {
    fn declaration(&self) -> Declaration;
    fn start(&mut self, context: &Context) -> Result<(), String>;
    fn handle(&mut self, context: &Context, interface: &str, method: &str, params: &Value) -> Result<Value, String>;
    fn notified(&mut self, _context: &Context, _interface: &str, _event: &str, _params: &Value) {}
}

/// A built-in plugin's view of its node: its start information and the other plugins.
pub struct Context {
    pub plugin: String,
    pub info: StartInfo,
    router: Weak<dyn Router>,
}

impl Context {
    /// Asks whoever provides `interface` (which this plugin must declare it needs).
    pub fn request(&self, interface: &str, method: &str, params: Value) -> Result<Value, PluginError> {
        let router = self.router.upgrade().ok_or_else(|| PluginError::Routing("the node is stopping".into()))?;
        router.route(&self.plugin, interface, method, params)
    }

    pub fn notify(&self, interface: &str, event: &str, params: Value) {
        if let Some(router) = self.router.upgrade() {
            router.notify(&self.plugin, interface, event, params);
        }
    }

    /// A setting of this plugin as a string.
    pub fn setting_str(&self, key: &str) -> Option<&str> {
        self.info.settings.get(key).and_then(Value::as_str)
    }
}

enum Job {
    Start(StartInfo, Sender<Result<(), String>>),
    Request { interface: String, method: String, params: Value, reply: Sender<Result<Value, String>> },
    Notify { interface: String, event: String, params: Value },
}

/// A built-in plugin on its own thread.
pub struct BuiltinEndpoint {
    declaration: Declaration,
    jobs: Mutex<Option<Sender<Job>>>,
    alive: Arc<AtomicBool>,
}

impl BuiltinEndpoint {
    pub fn spawn(plugin: Box<dyn Builtin>, router: Weak<dyn Router>) -> Result<BuiltinEndpoint, PluginError> {
        let declaration = plugin.declaration();
        let name = declaration.plugin.clone();
        let (jobs, queue) = mpsc::channel::<Job>();
        let alive = Arc::new(AtomicBool::new(true));
        let thread_alive = alive.clone();
        let thread_name = name.clone();
        std::thread::Builder::new()
            .name(format!("runes-{name}"))
            .spawn(move || {
                let mut plugin = plugin;
                let mut context: Option<Context> = None;
                // A panic ends the plugin (the host sees it dead), never the node.
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    for job in queue {
                        match job {
                            Job::Start(info, reply) => {
                                let c = context.insert(Context { plugin: thread_name.clone(), info, router: router.clone() });
                                let _ = reply.send(plugin.start(c));
                            }
                            Job::Request { interface, method, params, reply } => {
                                let result = match &context {
                                    Some(c) => plugin.handle(c, &interface, &method, &params),
                                    None => Err("not started".into()),
                                };
                                let _ = reply.send(result);
                            }
                            Job::Notify { interface, event, params } => {
                                if let Some(c) = &context {
                                    plugin.notified(c, &interface, &event, &params);
                                }
                            }
                        }
                    }
                }));
                if outcome.is_err() {
                    log::error!("plugin {thread_name} panicked");
                }
                thread_alive.store(false, Ordering::SeqCst);
            })
            .map_err(|e| PluginError::Failed { plugin: name, message: format!("cannot start a thread: {e}") })?;
        Ok(BuiltinEndpoint { declaration, jobs: Mutex::new(Some(jobs)), alive })
    }

    fn send(&self, job: Job) -> Result<(), PluginError> {
        let died = || PluginError::Died { plugin: self.declaration.plugin.clone(), detail: "its thread ended".into() };
        let jobs = self.jobs.lock().map_err(|_| died())?;
        jobs.as_ref().ok_or_else(died)?.send(job).map_err(|_| died())
    }

    fn wait<T>(&self, answer: mpsc::Receiver<Result<T, String>>, what: &str, timeout: Duration) -> Result<T, PluginError> {
        let plugin = self.declaration.plugin.clone();
        match answer.recv_timeout(timeout) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(PluginError::Failed { plugin, message }),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(PluginError::Timeout { plugin, what: what.into(), after: timeout }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(PluginError::Died { plugin, detail: "panicked".into() }),
        }
    }
}

impl Endpoint for BuiltinEndpoint {
    fn declaration(&self) -> &Declaration {
        &self.declaration
    }

    fn start(&self, info: &StartInfo, timeout: Duration) -> Result<(), PluginError> {
        let (reply, answer) = mpsc::channel();
        self.send(Job::Start(info.clone(), reply))?;
        self.wait(answer, "start", timeout)
    }

    fn request(&self, interface: &str, method: &str, params: Value, timeout: Duration) -> Result<Value, PluginError> {
        let (reply, answer) = mpsc::channel();
        self.send(Job::Request { interface: interface.into(), method: method.into(), params, reply })?;
        self.wait(answer, &format!("{interface}.{method}"), timeout)
    }

    fn notify(&self, interface: &str, event: &str, params: Value) {
        let _ = self.send(Job::Notify { interface: interface.into(), event: event.into(), params });
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn stop(&self, _grace: Duration) {
        // Closing the queue ends the thread after the call it is in.
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
    }
}

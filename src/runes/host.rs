//! The RUNES host: creates the plugins of a node's roles, starts them in dependency
//! order, routes requests and notifications between them by interface (with timeouts),
//! and watches them: a plugin that dies is restarted with growing pauses, a bounded
//! number of times, then reported as failed.
//!
//! Start-up is all or nothing: a plugin that cannot be created, says no hello, fails its
//! `start`, or a graph without an order (see [`super::graph`]) stops the node with that
//! error. After start-up, deaths are the supervisor's business.
//!
//! The host itself answers the interface [`HOST_INTERFACE`] (`status`), so the control
//! socket and plugins ask it the same way they ask each other.

use super::builtin::{self, BuiltinEndpoint};
use super::external::ExternalEndpoint;
use super::graph::{self, Declaration, GraphError};
use super::plugin::{Endpoint, PluginError, Router, StartInfo};
use super::roles::PluginSpec;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The host's own interface: `status` answers what `viver roles` shows.
pub const HOST_INTERFACE: &str = "runes";

#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// Restarts in a row before the plugin is given up (a run longer than `stable_after`
    /// starts the count again).
    pub max_restarts: u32,
    pub first_pause: Duration,
    pub max_pause: Duration,
    pub stable_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            max_restarts: 5,
            first_pause: Duration::from_millis(200),
            max_pause: Duration::from_secs(10),
            stable_after: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// The pause before restart number `n` (0-based): doubling from `first_pause`.
    pub fn pause(&self, n: u32) -> Duration {
        self.first_pause.saturating_mul(1u32 << n.min(16)).min(self.max_pause)
    }
}

/// A role as `viver roles` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleSummary {
    pub name: String,
    pub description: String,
    /// The roles file, or "built in".
    pub source: String,
    pub plugins: Vec<String>,
}

/// One interface on the node: who provides it, who needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub provider: String,
    pub needed_by: Vec<String>,
}

/// What `runes.status` answers.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub interface: Option<String>,
    pub roles: Vec<RoleSummary>,
    pub plugins: Vec<PluginStatus>,
    pub interfaces: Vec<InterfaceStatus>,
}

#[derive(Debug, Clone)]
pub struct HostConfig {
    pub node: String,
    /// The node's roles (for the status only: the plugins come as specs).
    pub roles: Vec<RoleSummary>,
    pub interface: Option<String>,
    /// Where a relative `exec` of a role's plugin is looked for.
    pub plugins_dir: PathBuf,
    pub request_timeout: Duration,
    /// For an external plugin's `hello`, and for every plugin's `start`.
    pub start_timeout: Duration,
    pub restart: RestartPolicy,
}

impl HostConfig {
    pub fn new(node: &str) -> HostConfig {
        HostConfig {
            node: node.into(),
            roles: Vec::new(),
            interface: None,
            plugins_dir: PathBuf::from(super::PLUGINS_DIR),
            request_timeout: Duration::from_secs(5),
            start_timeout: Duration::from_secs(10),
            restart: RestartPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("plugin {plugin}: {source}")]
    Create { plugin: String, source: PluginError },
    #[error("{0}")]
    Graph(#[from] GraphError),
    #[error("plugin {plugin} provides the host's own interface {HOST_INTERFACE:?}")]
    Reserved { plugin: String },
    #[error("starting plugin {plugin}: {source}")]
    Start { plugin: String, source: PluginError },
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Starting,
    Running,
    Restarting,
    Failed,
    Stopped,
}

/// One plugin as `viver roles` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub role: String,
    /// `built-in` or the executable's path.
    pub kind: String,
    pub provides: Vec<String>,
    pub needs: Vec<String>,
    pub state: State,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub error: Option<String>,
}

struct Slot {
    spec: PluginSpec,
    declaration: Declaration,
    live: Mutex<Live>,
}

struct Live {
    endpoint: Option<Arc<dyn Endpoint>>,
    state: State,
    /// Restarts in a row (reset after a stable run).
    streak: u32,
    restarts: u32,
    since: Instant,
    next_restart: Option<Instant>,
    error: Option<String>,
}

struct HostInner {
    config: HostConfig,
    slots: Vec<Slot>,
    providers: BTreeMap<String, usize>,
    order: Vec<usize>,
    stopping: AtomicBool,
    myself: Weak<HostInner>,
}

/// A running node's plugins. Dropping it stops them.
pub struct Host {
    inner: Arc<HostInner>,
    supervisor: Option<JoinHandle<()>>,
}

fn create(spec: &PluginSpec, config: &HostConfig, router: Weak<dyn Router>) -> Result<Arc<dyn Endpoint>, PluginError> {
    match &spec.exec {
        None => {
            let plugin = builtin::create(&spec.name)
                .ok_or_else(|| PluginError::Failed { plugin: spec.name.clone(), message: "no such built-in plugin".into() })?;
            Ok(Arc::new(BuiltinEndpoint::spawn(plugin, router)?))
        }
        Some(exec) => {
            let path = config.plugins_dir.join(exec);
            Ok(Arc::new(ExternalEndpoint::spawn(&spec.name, &path, router, config.start_timeout)?))
        }
    }
}

fn describe(endpoint: &dyn Endpoint) -> String {
    match endpoint.pid() {
        Some(pid) => format!("pid {pid}"),
        None => "built in".into(),
    }
}

impl Host {
    /// Creates every plugin of `specs`, orders them and starts them; the supervisor runs
    /// from then on.
    pub fn start(specs: Vec<PluginSpec>, config: HostConfig) -> Result<Host, HostError> {
        let mut failure: Option<HostError> = None;
        let inner = Arc::new_cyclic(|myself: &Weak<HostInner>| {
            let router: Weak<dyn Router> = myself.clone();
            let mut slots = Vec::new();
            for spec in specs {
                match create(&spec, &config, router.clone()) {
                    Ok(endpoint) => {
                        let declaration = endpoint.declaration().clone();
                        let live =
                            Live { endpoint: Some(endpoint), state: State::Starting, streak: 0, restarts: 0, since: Instant::now(), next_restart: None, error: None };
                        slots.push(Slot { spec, declaration, live: Mutex::new(live) });
                    }
                    Err(source) => {
                        failure = Some(HostError::Create { plugin: spec.name.clone(), source });
                        break;
                    }
                }
            }
            let declarations: Vec<Declaration> = slots.iter().map(|s| s.declaration.clone()).collect();
            let (providers, order) = match failure {
                Some(_) => (BTreeMap::new(), Vec::new()),
                None => match declarations.iter().find(|d| d.provides.iter().any(|i| i == HOST_INTERFACE)) {
                    Some(d) => {
                        failure = Some(HostError::Reserved { plugin: d.plugin.clone() });
                        (BTreeMap::new(), Vec::new())
                    }
                    None => match graph::start_order(&declarations).and_then(|o| Ok((graph::providers(&declarations)?, o))) {
                        Ok((providers, order)) => (providers, order),
                        Err(e) => {
                            failure = Some(e.into());
                            (BTreeMap::new(), Vec::new())
                        }
                    },
                },
            };
            HostInner { config, slots, providers, order, stopping: AtomicBool::new(false), myself: myself.clone() }
        });
        let mut host = Host { inner, supervisor: None };
        if let Some(e) = failure {
            host.stop();
            return Err(e);
        }
        for &at in &host.inner.order.clone() {
            if let Err(e) = host.inner.start_slot(at) {
                host.stop();
                return Err(e);
            }
        }
        let inner = host.inner.clone();
        host.supervisor =
            Some(std::thread::Builder::new().name("runes-supervisor".into()).spawn(move || inner.supervise()).map_err(HostError::Thread)?);
        Ok(host)
    }

    /// A request from outside the node's plugins (the control socket, a test).
    pub fn request(&self, interface: &str, method: &str, params: Value) -> Result<Value, PluginError> {
        self.inner.route_from(None, interface, method, params)
    }

    pub fn status(&self) -> NodeStatus {
        self.inner.status()
    }

    /// The router plugins and the control socket use.
    pub fn router(&self) -> Arc<dyn Router> {
        self.inner.clone()
    }

    /// A handle that answers requests (for the control socket's threads).
    pub fn requests(&self) -> Requests {
        Requests(self.inner.clone())
    }

    /// Stops every plugin, the last started first.
    pub fn stop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
        let mut order = self.inner.order.clone();
        // Plugins never ordered (start-up failed before the graph) stop too.
        order.extend((0..self.inner.slots.len()).filter(|i| !self.inner.order.contains(i)));
        for &at in order.iter().rev() {
            let slot = &self.inner.slots[at];
            let endpoint = slot.live.lock().ok().and_then(|mut live| {
                live.state = State::Stopped;
                live.endpoint.take()
            });
            if let Some(endpoint) = endpoint {
                endpoint.stop(Duration::from_secs(2));
                log::info!("stopped plugin {}", slot.spec.name);
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if !self.inner.stopping.load(Ordering::SeqCst) {
            self.stop();
        }
    }
}

/// Requests into a running host, shareable between threads.
#[derive(Clone)]
pub struct Requests(Arc<HostInner>);

impl Requests {
    pub fn request(&self, interface: &str, method: &str, params: Value) -> Result<Value, PluginError> {
        self.0.route_from(None, interface, method, params)
    }
}

impl HostInner {
    fn start_info(&self, slot: &Slot) -> StartInfo {
        StartInfo {
            node: self.config.node.clone(),
            role: slot.spec.role.clone(),
            interface: self.config.interface.clone(),
            settings: slot.spec.settings.clone(),
        }
    }

    /// Sends `start` to slot `at`'s endpoint and marks it running.
    fn start_slot(&self, at: usize) -> Result<(), HostError> {
        let slot = &self.slots[at];
        let endpoint = slot.live.lock().ok().and_then(|l| l.endpoint.clone());
        let Some(endpoint) = endpoint else {
            return Err(HostError::Start { plugin: slot.spec.name.clone(), source: PluginError::Routing("not created".into()) });
        };
        let info = self.start_info(slot);
        endpoint.start(&info, self.config.start_timeout).map_err(|source| HostError::Start { plugin: slot.spec.name.clone(), source })?;
        if let Ok(mut live) = slot.live.lock() {
            live.state = State::Running;
            live.since = Instant::now();
        }
        let d = &slot.declaration;
        log::info!(
            "started plugin {} of role {} ({}): provides [{}], needs [{}]",
            d.plugin,
            slot.spec.role,
            describe(endpoint.as_ref()),
            d.provides.join(", "),
            d.needs.join(", ")
        );
        Ok(())
    }

    fn route_from(&self, from: Option<&str>, interface: &str, method: &str, params: Value) -> Result<Value, PluginError> {
        if interface == HOST_INTERFACE {
            return match method {
                "status" => serde_json::to_value(self.status()).map_err(|e| PluginError::Routing(e.to_string())),
                _ => Err(PluginError::Routing(format!("interface {HOST_INTERFACE} has no method {method:?} (it has: status)"))),
            };
        }
        if let Some(from) = from {
            let declared = self.slots.iter().find(|s| s.declaration.plugin == from).is_some_and(|s| s.declaration.needs.iter().any(|n| n == interface));
            if !declared {
                return Err(PluginError::Routing(format!("{from} did not declare that it needs {interface}")));
            }
        }
        let at = *self.providers.get(interface).ok_or_else(|| PluginError::Routing(format!("no plugin on this node provides {interface}")))?;
        let slot = &self.slots[at];
        let (endpoint, state) = match slot.live.lock() {
            Ok(live) => (live.endpoint.clone(), live.state),
            Err(_) => (None, State::Failed),
        };
        match (endpoint, state) {
            (Some(endpoint), State::Running) => endpoint.request(interface, method, params, self.config.request_timeout),
            (_, state) => Err(PluginError::Routing(format!(
                "{} (provider of {interface}) is {}",
                slot.spec.name,
                serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            ))),
        }
    }

    fn status(&self) -> NodeStatus {
        let interfaces = self
            .providers
            .iter()
            .map(|(name, &at)| InterfaceStatus {
                name: name.clone(),
                provider: self.slots[at].spec.name.clone(),
                needed_by: self.slots.iter().filter(|s| s.declaration.needs.contains(name)).map(|s| s.spec.name.clone()).collect(),
            })
            .collect();
        NodeStatus {
            node: self.config.node.clone(),
            interface: self.config.interface.clone(),
            roles: self.config.roles.clone(),
            plugins: self.plugin_status(),
            interfaces,
        }
    }

    fn plugin_status(&self) -> Vec<PluginStatus> {
        self.order
            .iter()
            .map(|&at| {
                let slot = &self.slots[at];
                let (state, pid, restarts, error) = match slot.live.lock() {
                    Ok(live) => (live.state, live.endpoint.as_ref().and_then(|e| e.pid()), live.restarts, live.error.clone()),
                    Err(_) => (State::Failed, None, 0, Some("state lost".into())),
                };
                PluginStatus {
                    name: slot.spec.name.clone(),
                    role: slot.spec.role.clone(),
                    kind: match &slot.spec.exec {
                        Some(exec) => self.config.plugins_dir.join(exec).display().to_string(),
                        None => "built-in".into(),
                    },
                    provides: slot.declaration.provides.clone(),
                    needs: slot.declaration.needs.clone(),
                    state,
                    pid,
                    restarts,
                    error,
                }
            })
            .collect()
    }

    /// Watches for deaths and restarts until the host stops.
    fn supervise(&self) {
        while !self.stopping.load(Ordering::SeqCst) {
            for &at in &self.order {
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                self.check(at);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn check(&self, at: usize) {
        let slot = &self.slots[at];
        let policy = &self.config.restart;
        let due = {
            let Ok(mut live) = slot.live.lock() else { return };
            match live.state {
                State::Running if live.endpoint.as_ref().is_some_and(|e| !e.is_alive()) => {
                    let ran = live.since.elapsed();
                    if ran >= policy.stable_after {
                        live.streak = 0;
                    }
                    let detail = match live.endpoint.as_ref().and_then(|e| e.pid()) {
                        Some(pid) => format!("plugin {} (pid {pid}) died after {ran:.1?}", slot.spec.name),
                        None => format!("plugin {} died after {ran:.1?}", slot.spec.name),
                    };
                    if let Some(endpoint) = live.endpoint.take() {
                        endpoint.stop(Duration::ZERO);
                    }
                    self.schedule(&mut live, detail);
                    false
                }
                State::Restarting => live.next_restart.is_some_and(|t| Instant::now() >= t),
                _ => false,
            }
        };
        if due {
            self.restart(at);
        }
    }

    /// After a death or a failed restart: the next attempt, or giving up.
    fn schedule(&self, live: &mut Live, detail: String) {
        let policy = &self.config.restart;
        if live.streak >= policy.max_restarts {
            log::error!("{detail}; {} restarts in a row, not restarting it again", live.streak);
            live.state = State::Failed;
            live.error = Some(format!("{detail}; given up after {} restarts in a row", live.streak));
        } else {
            let pause = policy.pause(live.streak);
            log::warn!("{detail}; restarting it in {pause:?}");
            live.state = State::Restarting;
            live.error = Some(detail);
            live.next_restart = Some(Instant::now() + pause);
        }
    }

    fn restart(&self, at: usize) {
        let slot = &self.slots[at];
        let router: Weak<dyn Router> = self.myself.clone();
        let attempt = create(&slot.spec, &self.config, router).and_then(|endpoint| {
            if endpoint.declaration() != &slot.declaration {
                endpoint.stop(Duration::ZERO);
                return Err(PluginError::Failed { plugin: slot.spec.name.clone(), message: "declares other interfaces than at its first start".into() });
            }
            endpoint.start(&self.start_info(slot), self.config.start_timeout).map(|_| endpoint.clone()).inspect_err(|_| endpoint.stop(Duration::ZERO))
        });
        let Ok(mut live) = slot.live.lock() else { return };
        live.streak += 1;
        live.restarts += 1;
        match attempt {
            Ok(endpoint) => {
                log::info!("restarted plugin {} ({}), restart {} in a row", slot.spec.name, describe(endpoint.as_ref()), live.streak);
                live.endpoint = Some(endpoint);
                live.state = State::Running;
                live.since = Instant::now();
                live.next_restart = None;
            }
            Err(e) => {
                let detail = format!("restarting plugin {}: {e}", slot.spec.name);
                self.schedule(&mut live, detail);
            }
        }
    }
}

impl Router for HostInner {
    fn route(&self, from: &str, interface: &str, method: &str, params: Value) -> Result<Value, PluginError> {
        self.route_from(Some(from), interface, method, params)
    }

    fn notify(&self, from: &str, interface: &str, event: &str, params: Value) {
        let provides = self.providers.get(interface).is_some_and(|&at| self.slots[at].declaration.plugin == from);
        if !provides {
            log::warn!("plugin {from} notified {interface}.{event} but does not provide {interface}; dropped");
            return;
        }
        for slot in &self.slots {
            if !slot.declaration.needs.iter().any(|n| n == interface) {
                continue;
            }
            let endpoint = slot.live.lock().ok().filter(|l| l.state == State::Running).and_then(|l| l.endpoint.clone());
            if let Some(endpoint) = endpoint {
                endpoint.notify(interface, event, params.clone());
            }
        }
    }
}

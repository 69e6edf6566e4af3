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

/// Makes a new instance of a built-in plugin by name (tests bring their own).
pub type Factory = Arc<dyn Fn(&str) -> Option<Box<dyn builtin::Builtin>> + Send + Sync>;

struct HostInner {
    config: HostConfig,
    factory: Factory,
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

fn create(spec: &PluginSpec, config: &HostConfig, factory: &Factory, router: Weak<dyn Router>) -> Result<Arc<dyn Endpoint>, PluginError> {
    match &spec.exec {
        None => {
            let plugin = factory(&spec.name)
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
    /// from then on. Call it from a thread that lives as long as the host: an external
    /// plugin gets SIGTERM when the thread that started it ends (`PR_SET_PDEATHSIG`, so
    /// that no plugin outlives a killed node); restarts come from the supervisor's.
    pub fn start(specs: Vec<PluginSpec>, config: HostConfig) -> Result<Host, HostError> {
        Host::start_with(specs, config, Arc::new(super::plugins::create))
    }

    /// [`Host::start`] with built-in plugins made by `factory`.
    pub fn start_with(specs: Vec<PluginSpec>, config: HostConfig, factory: Factory) -> Result<Host, HostError> {
        let mut failure: Option<HostError> = None;
        let inner = Arc::new_cyclic(|myself: &Weak<HostInner>| {
            let router: Weak<dyn Router> = myself.clone();
            let mut slots = Vec::new();
            for spec in specs {
                match create(&spec, &config, &factory, router.clone()) {
                    Ok(endpoint) => {
                        let declaration = endpoint.declaration().clone();
                        let live = Live {
                            endpoint: Some(endpoint),
                            state: State::Starting,
                            streak: 0,
                            restarts: 0,
                            since: Instant::now(),
                            next_restart: None,
                            error: None,
                        };
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
            HostInner { config, factory, slots, providers, order, stopping: AtomicBool::new(false), myself: myself.clone() }
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
            let declared = self
                .slots
                .iter()
                .find(|s| s.declaration.plugin == from)
                .is_some_and(|s| s.declaration.needs.iter().any(|n| n == interface));
            if !declared {
                return Err(PluginError::Routing(format!("{from} did not declare that it needs {interface}")));
            }
        }
        let at =
            *self.providers.get(interface).ok_or_else(|| PluginError::Routing(format!("no plugin on this node provides {interface}")))?;
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
        let attempt = create(&slot.spec, &self.config, &self.factory, router).and_then(|endpoint| {
            if endpoint.declaration() != &slot.declaration {
                endpoint.stop(Duration::ZERO);
                return Err(PluginError::Failed {
                    plugin: slot.spec.name.clone(),
                    message: "declares other interfaces than at its first start".into(),
                });
            }
            endpoint
                .start(&self.start_info(slot), self.config.start_timeout)
                .map(|_| endpoint.clone())
                .inspect_err(|_| endpoint.stop(Duration::ZERO))
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

#[cfg(test)]
mod tests {
    use super::super::builtin::{Builtin, Context};
    use super::*;
    use serde_json::json;
    use std::path::Path;

    /// Test plugins: `echo` (answers its params; `die` panics), `slow` (answers after
    /// 2 s), `asker` (needs echo, asks it).
    struct Echo;
    impl Builtin for Echo {
        fn declaration(&self) -> Declaration {
            Declaration { plugin: "echo".into(), provides: vec!["echo".into()], needs: vec![] }
        }
        fn start(&mut self, _: &Context) -> Result<(), String> {
            Ok(())
        }
        fn handle(&mut self, _: &Context, _: &str, method: &str, params: &Value) -> Result<Value, String> {
            match method {
                "die" => panic!("asked to die"),
                "fail" => Err("as asked".into()),
                _ => Ok(params.clone()),
            }
        }
    }
    struct Slow;
    impl Builtin for Slow {
        fn declaration(&self) -> Declaration {
            Declaration { plugin: "slow".into(), provides: vec!["slow".into()], needs: vec![] }
        }
        fn start(&mut self, _: &Context) -> Result<(), String> {
            Ok(())
        }
        fn handle(&mut self, _: &Context, _: &str, _: &str, _: &Value) -> Result<Value, String> {
            std::thread::sleep(Duration::from_secs(2));
            Ok(json!("late"))
        }
    }
    struct Asker;
    impl Builtin for Asker {
        fn declaration(&self) -> Declaration {
            Declaration { plugin: "asker".into(), provides: vec!["asker".into()], needs: vec!["echo".into()] }
        }
        fn start(&mut self, context: &Context) -> Result<(), String> {
            context.request("echo", "ping", json!({"from": "asker"})).map(|_| ()).map_err(|e| e.to_string())
        }
        fn handle(&mut self, context: &Context, _: &str, method: &str, _: &Value) -> Result<Value, String> {
            // `slow` is not among its needs: the host must refuse.
            let interface = if method == "undeclared" { "slow" } else { "echo" };
            context.request(interface, "ping", json!({"via": "asker"})).map_err(|e| e.to_string())
        }
    }

    /// Needs `bell`, keeps what it was notified of, answers it with `heard`.
    #[derive(Default)]
    struct Listener(Vec<Value>);
    impl Builtin for Listener {
        fn declaration(&self) -> Declaration {
            Declaration { plugin: "listener".into(), provides: vec!["listener".into()], needs: vec!["bell".into()] }
        }
        fn start(&mut self, _: &Context) -> Result<(), String> {
            Ok(())
        }
        fn handle(&mut self, _: &Context, _: &str, _: &str, _: &Value) -> Result<Value, String> {
            Ok(Value::Array(self.0.clone()))
        }
        fn notified(&mut self, _: &Context, interface: &str, event: &str, params: &Value) {
            self.0.push(json!({"interface": interface, "event": event, "params": params}));
        }
    }

    fn factory() -> Factory {
        Arc::new(|name: &str| -> Option<Box<dyn Builtin>> {
            match name {
                "listener" => Some(Box::new(Listener::default())),
                "echo" => Some(Box::new(Echo)),
                "slow" => Some(Box::new(Slow)),
                "asker" => Some(Box::new(Asker)),
                _ => None,
            }
        })
    }

    fn spec(name: &str, exec: Option<&Path>) -> PluginSpec {
        PluginSpec { name: name.into(), role: "test".into(), exec: exec.map(Path::to_path_buf), settings: json!({}) }
    }

    fn config() -> HostConfig {
        // Generous: CI runs these beside VMs on a loaded machine, and a shell plugin forks.
        let mut config = HostConfig::new("test-node");
        config.request_timeout = Duration::from_secs(10);
        config.start_timeout = Duration::from_secs(10);
        config.restart = RestartPolicy {
            max_restarts: 3,
            first_pause: Duration::from_millis(20),
            max_pause: Duration::from_millis(100),
            stable_after: Duration::from_secs(60),
        };
        config
    }

    /// A shell script plugin in a fresh directory.
    fn script(name: &str, body: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/runes-tmp/unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.sh"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn plugin<'a>(status: &'a NodeStatus, name: &str) -> &'a PluginStatus {
        status.plugins.iter().find(|p| p.name == name).unwrap()
    }

    /// Polls `host`'s status until `done` holds, or fails after `limit`.
    fn wait_until(host: &Host, limit: Duration, done: impl Fn(&NodeStatus) -> bool) -> NodeStatus {
        let deadline = Instant::now() + limit;
        loop {
            let status = host.status();
            if done(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "condition not met within {limit:?}: {status:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn plugins_start_in_order_and_reach_each_other_by_interface() {
        let host = Host::start_with(vec![spec("asker", None), spec("echo", None)], config(), factory()).unwrap();
        let status = host.status();
        assert_eq!(status.plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["echo", "asker"]);
        assert!(status.plugins.iter().all(|p| p.state == State::Running));
        assert_eq!(host.request("asker", "go", json!({})).unwrap(), json!({"via": "asker"}));
        assert_eq!(status.interfaces[1], InterfaceStatus { name: "echo".into(), provider: "echo".into(), needed_by: vec!["asker".into()] });
        let err = host.request("nothing", "x", json!({})).unwrap_err();
        assert_eq!(err.to_string(), "no plugin on this node provides nothing");
        let err = host.request("echo", "fail", json!({})).unwrap_err();
        assert_eq!(err.to_string(), "echo: as asked");
        assert_eq!(host.request(HOST_INTERFACE, "status", json!({})).unwrap()["node"], "test-node");
    }

    #[test]
    fn a_plugin_may_only_ask_what_it_declared_it_needs() {
        let host = Host::start_with(vec![spec("echo", None), spec("slow", None), spec("asker", None)], config(), factory()).unwrap();
        let err = host.request("asker", "undeclared", json!({})).unwrap_err();
        assert!(err.to_string().contains("asker did not declare that it needs slow"), "{err}");
    }

    #[test]
    fn a_plugin_that_does_not_answer_in_time_gives_a_timeout_not_a_hang() {
        let mut config = config();
        config.request_timeout = Duration::from_millis(300);
        let host = Host::start_with(vec![spec("slow", None)], config, factory()).unwrap();
        let started = Instant::now();
        let err = host.request("slow", "anything", json!({})).unwrap_err();
        assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
        // Well before the 2 s the plugin takes: the caller did not wait for it.
        assert!(started.elapsed() < Duration::from_millis(1800), "{:?}", started.elapsed());
        assert_eq!(err.to_string(), "slow did not answer slow.anything within 300ms");
    }

    #[test]
    fn an_external_plugin_that_never_says_hello_times_out_at_start() {
        let silent = script("silent", "exec sleep 30");
        let mut config = config();
        config.start_timeout = Duration::from_millis(300);
        let err = Host::start_with(vec![spec("silent", Some(&silent))], config, factory()).err().unwrap();
        assert_eq!(err.to_string(), "plugin silent: silent did not answer hello within 300ms");
    }

    #[test]
    fn a_wrong_first_line_or_name_stops_the_start_with_the_reason() {
        let chatty = script("chatty", "echo 'hello there'; sleep 5");
        let err = Host::start_with(vec![spec("chatty", Some(&chatty))], config(), factory()).err().unwrap().to_string();
        assert!(err.contains("its first line is no hello: line 1: line is not JSON"), "{err}");
        let impostor = script("impostor", r#"echo '{"type":"hello","plugin":"other"}'; sleep 5"#);
        let err = Host::start_with(vec![spec("impostor", Some(&impostor))], config(), factory()).err().unwrap().to_string();
        assert!(err.contains("says it is plugin \"other\"; the role names it \"impostor\""), "{err}");
    }

    #[test]
    fn graph_errors_stop_the_start_and_name_the_problem() {
        let needy = script("needy", r#"echo '{"type":"hello","plugin":"needy","needs":["nowhere"]}'; read x"#);
        let err = Host::start_with(vec![spec("echo", None), spec("needy", Some(&needy))], config(), factory()).err().unwrap();
        assert_eq!(err.to_string(), "interface \"nowhere\" is needed by needy but no plugin provides it");
        let a = script("a", r#"echo '{"type":"hello","plugin":"a","provides":["x"],"needs":["y"]}'; read l"#);
        let b = script("b", r#"echo '{"type":"hello","plugin":"b","provides":["y"],"needs":["x"]}'; read l"#);
        let err = Host::start_with(vec![spec("a", Some(&a)), spec("b", Some(&b))], config(), factory()).err().unwrap();
        assert_eq!(err.to_string(), "plugins need each other in a cycle: a needs y from b, b needs x from a");
    }

    #[test]
    fn a_builtin_that_panics_is_restarted() {
        let host = Host::start_with(vec![spec("echo", None)], config(), factory()).unwrap();
        let err = host.request("echo", "die", json!({})).unwrap_err();
        assert!(matches!(err, PluginError::Died { .. }), "{err}");
        let status =
            wait_until(&host, Duration::from_secs(20), |s| plugin(s, "echo").restarts == 1 && plugin(s, "echo").state == State::Running);
        assert!(plugin(&status, "echo").error.as_deref().unwrap_or("").contains("plugin echo died"), "{status:?}");
        assert_eq!(host.request("echo", "ping", json!(1)).unwrap(), json!(1));
    }

    /// A plugin providing `counter` whose `pid` method answers its process id.
    const COUNTER: &str = r#"echo '{"type":"hello","plugin":"counter","provides":["counter"]}'
while IFS= read -r line; do
  case $line in
  '{"type":"start",'*) echo '{"type":"ready"}' ;;
  '{"type":"request",'*)
     id=$(printf '%s\n' "$line" | sed -n 's/^{"type":"request","id":\([0-9]*\),.*/\1/p')
     echo "{\"type\":\"response\",\"id\":$id,\"result\":$$}" ;;
  esac
done"#;

    #[test]
    fn an_external_plugin_that_is_killed_is_restarted_and_answers_again() {
        let counter = script("counter", COUNTER);
        let host = Host::start_with(vec![spec("counter", Some(&counter))], config(), factory()).unwrap();
        let first = plugin(&host.status(), "counter").pid.unwrap();
        assert_eq!(host.request("counter", "pid", json!({})).unwrap(), json!(first));
        // SAFETY: kill of the plugin process this test started.
        unsafe { libc::kill(first as i32, libc::SIGKILL) };
        let status = wait_until(&host, Duration::from_secs(20), |s| {
            let p = plugin(s, "counter");
            p.state == State::Running && p.restarts == 1
        });
        let second = plugin(&status, "counter").pid.unwrap();
        assert_ne!(second, first);
        assert_eq!(host.request("counter", "pid", json!({})).unwrap(), json!(second));
    }

    #[test]
    fn a_plugin_that_keeps_dying_is_given_up_after_the_bounded_restarts() {
        let brief = script("brief", r#"echo '{"type":"hello","plugin":"brief"}'; read start; echo '{"type":"ready"}'; exit 3"#);
        let host = Host::start_with(vec![spec("brief", Some(&brief))], config(), factory()).unwrap();
        let status = wait_until(&host, Duration::from_secs(30), |s| plugin(s, "brief").state == State::Failed);
        let brief = plugin(&status, "brief");
        assert_eq!(brief.restarts, 3);
        assert!(brief.error.as_deref().unwrap_or("").contains("given up after 3 restarts in a row"), "{brief:?}");
    }

    #[test]
    fn a_notification_reaches_the_plugins_that_need_its_interface_and_no_other() {
        // `bell` rings on request: a notify of bell (delivered) and of echo, which it does
        // not provide (dropped), then the answer.
        let bell = script(
            "bell",
            r#"echo '{"type":"hello","plugin":"bell","provides":["bell"]}'
while IFS= read -r line; do
  case $line in
  '{"type":"start",'*) echo '{"type":"ready"}' ;;
  '{"type":"request",'*)
     id=$(printf '%s\n' "$line" | sed -n 's/^{"type":"request","id":\([0-9]*\),.*/\1/p')
     echo '{"type":"notify","interface":"echo","event":"forged","params":{}}'
     echo '{"type":"notify","interface":"bell","event":"rang","params":{"times":1}}'
     echo "{\"type\":\"response\",\"id\":$id,\"result\":\"rung\"}" ;;
  esac
done"#,
        );
        let host =
            Host::start_with(vec![spec("bell", Some(&bell)), spec("listener", None), spec("echo", None)], config(), factory()).unwrap();
        assert_eq!(host.request("bell", "ring", json!({})).unwrap(), json!("rung"));
        let heard = host.request("listener", "heard", json!({})).unwrap();
        assert_eq!(heard, json!([{"interface": "bell", "event": "rang", "params": {"times": 1}}]));
    }

    #[test]
    fn garbage_from_a_plugin_is_answered_with_an_error_and_the_plugin_goes_on() {
        // After its start it writes a line that is no JSON, one over the limit and an
        // answer nobody waits for; then it answers requests with the number of the
        // node's complaints (`error` without id) it got: one per bad line.
        let noisy = script(
            "noisy",
            &format!(
                r#"echo '{{"type":"hello","plugin":"noisy","provides":["noisy"]}}'
while IFS= read -r line; do
  case $line in
  '{{"type":"start",'*)
     echo '{{"type":"ready"}}'
     echo 'not json'
     head -c {} /dev/zero | tr '\0' 'x'; echo
     echo '{{"type":"response","id":999,"result":null}}' ;;
  '{{"type":"error",'*) complaints=$((complaints + 1)) ;;
  '{{"type":"request",'*)
     id=$(printf '%s\n' "$line" | sed -n 's/^{{"type":"request","id":\([0-9]*\),.*/\1/p')
     echo "{{\"type\":\"response\",\"id\":$id,\"result\":${{complaints:-0}}}}" ;;
  esac
done"#,
                super::super::protocol::MAX_LINE + 100
            ),
        );
        let host = Host::start_with(vec![spec("noisy", Some(&noisy))], config(), factory()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // The requests may overtake the complaints, never the other way round.
            let complaints = host.request("noisy", "complaints", json!({})).unwrap();
            if complaints == json!(2) {
                break;
            }
            assert!(complaints.as_u64().is_some_and(|n| n < 2), "{complaints}");
            assert!(Instant::now() < deadline, "the node complained {complaints} times, not 2");
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = host.status();
        assert_eq!((plugin(&status, "noisy").state, plugin(&status, "noisy").restarts), (State::Running, 0));
    }

    #[test]
    fn pauses_between_restarts_double_up_to_the_limit() {
        let policy = RestartPolicy::default();
        assert_eq!(policy.pause(0), Duration::from_millis(200));
        assert_eq!(policy.pause(2), Duration::from_millis(800));
        assert_eq!(policy.pause(30), Duration::from_secs(10));
    }

    #[test]
    fn stopping_the_host_ends_its_external_plugins() {
        let counter = script("counter-stop", &COUNTER.replace("plugin\":\"counter", "plugin\":\"counter-stop"));
        let mut host = Host::start_with(vec![spec("counter-stop", Some(&counter))], config(), factory()).unwrap();
        let pid = plugin(&host.status(), "counter-stop").pid.unwrap();
        host.stop();
        // SAFETY: signal 0 only checks whether the process exists.
        assert_ne!(unsafe { libc::kill(pid as i32, 0) }, 0, "plugin {pid} still runs after stop");
        assert!(host.status().plugins.iter().all(|p| p.state == State::Stopped));
    }
}

//! What the host sees of a running plugin, built in or external: one [`Endpoint`]
//! trait, so starting, routing, supervising and `viver roles` never ask which kind it
//! is. A plugin reaches the others through the host's [`Router`].

use super::graph::Declaration;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    #[error("{plugin} did not answer {what} within {after:?}")]
    Timeout { plugin: String, what: String, after: Duration },
    #[error("{plugin} ended{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Died { plugin: String, detail: String },
    #[error("{plugin}: {message}")]
    Failed { plugin: String, message: String },
    #[error("{0}")]
    Routing(String),
}

/// What a plugin is told when it starts (the protocol's `start`).
#[derive(Debug, Clone, PartialEq)]
pub struct StartInfo {
    pub node: String,
    pub role: String,
    /// The node's network interface (`--interface`), if one was given.
    pub interface: Option<String>,
    pub settings: Value,
}

/// The host's side, as a plugin sees it: requests and notifications to other plugins
/// by interface.
pub trait Router: Send + Sync {
    /// A request from plugin `from` to whoever provides `interface`.
    fn route(&self, from: &str, interface: &str, method: &str, params: Value) -> Result<Value, PluginError>;
    /// A notification from plugin `from` (a provider of `interface`) to the plugins that need it.
    fn notify(&self, from: &str, interface: &str, event: &str, params: Value);
}

/// A running plugin.
pub trait Endpoint: Send + Sync {
    fn declaration(&self) -> &Declaration;
    /// Sends `start` and waits for `ready`.
    fn start(&self, info: &StartInfo, timeout: Duration) -> Result<(), PluginError>;
    /// A request for one of the interfaces it provides.
    fn request(&self, interface: &str, method: &str, params: Value, timeout: Duration) -> Result<Value, PluginError>;
    fn notify(&self, interface: &str, event: &str, params: Value);
    /// The process id of an external plugin.
    fn pid(&self) -> Option<u32>;
    /// False once it ended (exited, was killed, closed its output, or panicked).
    fn is_alive(&self) -> bool;
    /// Asks it to stop, and makes sure it has within `grace`.
    fn stop(&self, grace: Duration);
}

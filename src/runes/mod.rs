//! RUNES: a node's roles choose plugins; plugins provide and need interfaces and talk
//! through the host by interface, whether they are built into VIVER or external
//! programs speaking JSON lines.
//!
//! - [`roles`]: roles and their plugins in TOML (built-in defaults, `/etc/viver/roles.toml`);
//! - [`graph`]: who provides what, the start order, cycles and missing interfaces (pure);
//! - [`protocol`]: the newline-delimited JSON messages and their bounded parser;
//! - [`plugin`]: the one interface the host sees of any plugin;
//! - [`builtin`]: built-in plugins on threads of their own; [`plugins`]: the plugins themselves;
//! - [`external`]: an executable as a plugin, over its stdin and stdout;
//! - [`host`]: starting in order, routing with timeouts, restarting what dies;
//! - [`announce`]: DNS-SD over multicast DNS: a node's announcement, `viver find`;
//! - [`control`]: the node's Unix socket (`viver roles`, `viver ask`);
//! - [`cli`]: `viver node`, `viver roles`, `viver ask`.

pub mod announce;
pub mod builtin;
pub mod cli;
pub mod control;
pub mod external;
pub mod graph;
pub mod host;
pub mod plugin;
pub mod plugins;
pub mod protocol;
pub mod roles;

/// Where a booted node's image keeps its external plugins.
pub const PLUGINS_DIR: &str = "/etc/viver/plugins.d";

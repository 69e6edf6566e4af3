//! `viver node` (run a node's roles in the foreground, on any Linux, announced on the
//! LAN), `viver roles` (what a running node runs), `viver ask` (a request to an
//! interface of a running node) and `viver find` (the nodes on the LAN that provide an
//! interface).

use super::announce::{Announcement, Announcer};
use super::control::{self, DEFAULT_SOCKET};
use super::host::{Host, HostConfig, RoleSummary};
use super::roles::{split_list, Roles};
use super::PLUGINS_DIR;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The node's roles, comma-separated (as `viver.role=`; repeatable).
    #[arg(long = "role", required = true)]
    pub roles: Vec<String>,
    /// The node's network interface (what `ip-address` answers for).
    #[arg(long)]
    pub interface: Option<String>,
    /// The node's name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Roles to add to the built-in ones (default: /etc/viver/roles.toml if present).
    #[arg(long)]
    pub roles_file: Option<PathBuf>,
    /// Where a role's external plugins are (a relative `exec`).
    #[arg(long, default_value = PLUGINS_DIR)]
    pub plugins_dir: PathBuf,
    /// The control socket `viver roles` and `viver ask` talk to.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Longest wait for an answer to a request between plugins, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Do not announce the node on the LAN (DNS-SD over multicast DNS).
    #[arg(long)]
    pub no_announce: bool,
}

#[derive(Args, Debug)]
pub struct FindArgs {
    /// The interface a node must provide (default: every VIVER node).
    pub interface: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Listen on this network interface only (default: all).
    #[arg(long)]
    pub on: Option<String>,
    /// How long to listen for announcements, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub wait_ms: u64,
}

#[derive(Args, Debug)]
pub struct RolesArgs {
    /// Print the node's status as JSON.
    #[arg(long)]
    pub json: bool,
    /// The node's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Args, Debug)]
pub struct AskArgs {
    /// The interface to ask (its provider on the node answers).
    pub interface: String,
    pub method: String,
    /// The request's parameters, a JSON value (default `{}`).
    pub params: Option<String>,
    /// The node's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Longest wait for the answer, in milliseconds.
    #[arg(long, default_value_t = 10000)]
    pub timeout_ms: u64,
}

/// A node name is one DNS label (it becomes `NAME.local.` on the LAN): 1-63 of a-z,
/// 0-9 and '-', not at either end.
pub fn is_node_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The host name as a node name: its first label, lower case, other characters as '-'.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let label = raw.trim().split('.').next().unwrap_or("").to_ascii_lowercase();
    let name: String = label.chars().take(63).map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let name = name.trim_matches('-').to_string();
    if is_node_name(&name) {
        name
    } else {
        "viver".into()
    }
}

/// `viver node`: runs until SIGINT or SIGTERM, then stops the plugins.
pub fn run_node(args: NodeArgs) -> i32 {
    match node(args) {
        Ok(()) => 0,
        Err(message) => {
            log::error!("{message}");
            1
        }
    }
}

fn node(args: NodeArgs) -> Result<(), String> {
    // Before any thread: every thread inherits the blocked mask.
    let signals = crate::sys::stop_signals::StopSignals::block()?;
    let roles = Roles::load(args.roles_file.as_deref()).map_err(|e| e.to_string())?;
    let wanted: Vec<String> = args.roles.iter().flat_map(|r| split_list(r)).collect();
    if wanted.is_empty() {
        return Err("--role names no role".into());
    }
    let specs = roles.plugins_for(&wanted).map_err(|e| e.to_string())?;
    let name = args.name.clone().unwrap_or_else(host_name);
    if !is_node_name(&name) {
        return Err(format!("node name {name:?} is not 1-63 of a-z, 0-9 and '-' (it becomes {name}.local. on the LAN)"));
    }
    let mut config = HostConfig::new(&name);
    config.interface = args.interface.clone();
    config.plugins_dir = args.plugins_dir.clone();
    config.request_timeout = Duration::from_millis(args.timeout_ms);
    config.roles = wanted
        .iter()
        .filter_map(|r| roles.roles.get(r))
        .map(|r| RoleSummary {
            name: r.name.clone(),
            description: r.description.clone(),
            source: r.source.clone(),
            plugins: r.plugins.iter().map(|p| p.name.clone()).collect(),
        })
        .collect();
    log::info!("node {name}: roles {}, {} plugins", wanted.join(", "), specs.len());
    let mut host = Host::start(specs, config).map_err(|e| e.to_string())?;
    if let Err(e) = control::serve(&args.socket, host.requests()) {
        host.stop();
        return Err(e.to_string());
    }
    log::info!("node {name}: running; control socket {}", args.socket.display());
    let announcer = match args.no_announce {
        true => None,
        false => announce(&host, &name, &wanted, args.interface.as_deref()),
    };
    let signal = loop {
        if let Some(signal) = signals.wait(Duration::from_secs(1)) {
            break signal;
        }
    };
    log::info!("signal {signal}: stopping");
    if let Some(announcer) = announcer {
        announcer.stop();
    }
    host.stop();
    let _ = std::fs::remove_file(&args.socket);
    Ok(())
}

/// Announces the node on `interface` (else the first with an IPv4 address besides
/// loopback); never on loopback, where nobody else would hear it.
fn announce(host: &Host, name: &str, roles: &[String], interface: Option<&str>) -> Option<Announcer> {
    let all = crate::net::iface::interfaces().unwrap_or_default();
    let chosen = match interface {
        Some(wanted) => all.into_iter().find(|i| i.name == wanted),
        None => all.into_iter().find(|i| !i.address.is_loopback()),
    };
    let Some(chosen) = chosen.filter(|i| !i.address.is_loopback()) else {
        log::info!("not announcing: no interface besides loopback to announce on");
        return None;
    };
    let provides = host.status().interfaces.into_iter().map(|i| i.name).collect();
    let what = Announcement { node: name.to_string(), roles: roles.to_vec(), provides };
    match Announcer::start(&what, &chosen.name, chosen.address) {
        Ok(announcer) => Some(announcer),
        Err(e) => {
            log::warn!("not announcing on {}: {e}", chosen.name);
            None
        }
    }
}

/// `viver find`: one line per node (name, addresses, roles, interfaces); exit status 1
/// when none was heard.
pub fn run_find(args: FindArgs) -> i32 {
    let found = match super::announce::find(args.interface.as_deref(), args.on.as_deref(), Duration::from_millis(args.wait_ms)) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("viver find: {e}");
            return 2;
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found).unwrap_or_default());
    } else {
        for node in &found {
            let addresses: Vec<String> = node.addresses.iter().map(|a| a.to_string()).collect();
            println!("{} {} roles={} provides={}", node.node, addresses.join(","), node.roles.join(","), node.provides.join(","));
        }
    }
    if found.is_empty() {
        1
    } else {
        0
    }
}

/// `viver roles`.
pub fn run_roles(args: RolesArgs) -> i32 {
    let status = match control::ask(&args.socket, super::host::HOST_INTERFACE, "status", serde_json::json!({}), Duration::from_secs(10)) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("viver roles: {e}");
            return 1;
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
        return 0;
    }
    match serde_json::from_value::<NodeStatusView>(status) {
        Ok(view) => {
            print!("{}", view.render());
            0
        }
        Err(e) => {
            eprintln!("viver roles: the node's status is not understood: {e}");
            1
        }
    }
}

/// `viver ask`: prints the answer as JSON.
pub fn run_ask(args: AskArgs) -> i32 {
    let params = match args.params.as_deref().map(serde_json::from_str).transpose() {
        Ok(params) => params.unwrap_or_else(|| serde_json::json!({})),
        Err(e) => {
            eprintln!("viver ask: parameters are not JSON: {e}");
            return 2;
        }
    };
    match control::ask(&args.socket, &args.interface, &args.method, params, Duration::from_millis(args.timeout_ms)) {
        Ok(result) => {
            println!("{result}");
            0
        }
        Err(e) => {
            eprintln!("viver ask: {e}");
            1
        }
    }
}

/// The status as `viver roles` reads it back (the fields of [`super::host::NodeStatus`]).
#[derive(serde::Deserialize)]
struct NodeStatusView {
    node: String,
    interface: Option<String>,
    roles: Vec<RoleView>,
    plugins: Vec<PluginView>,
    interfaces: Vec<InterfaceView>,
}

#[derive(serde::Deserialize)]
struct InterfaceView {
    name: String,
    provider: String,
    needed_by: Vec<String>,
}

#[derive(serde::Deserialize)]
struct RoleView {
    name: String,
    description: String,
    source: String,
    plugins: Vec<String>,
}

#[derive(serde::Deserialize)]
struct PluginView {
    name: String,
    kind: String,
    provides: Vec<String>,
    needs: Vec<String>,
    state: String,
    pid: Option<u32>,
    restarts: u32,
    error: Option<String>,
}

impl NodeStatusView {
    fn render(&self) -> String {
        let mut out = format!("node {}", self.node);
        if let Some(interface) = &self.interface {
            out += &format!(" on {interface}");
        }
        out.push('\n');
        for role in &self.roles {
            out += &format!("role {} ({}): {}\n", role.name, role.source, role.description);
            for name in &role.plugins {
                let Some(p) = self.plugins.iter().find(|p| &p.name == name) else { continue };
                let mut state = p.state.clone();
                if let Some(pid) = p.pid {
                    state += &format!(", pid {pid}");
                }
                if p.restarts > 0 {
                    state += &format!(", {} restarts", p.restarts);
                }
                out += &format!(
                    "  {:<14} {:<28} provides [{}] needs [{}]  {}\n",
                    p.name,
                    state,
                    p.provides.join(", "),
                    p.needs.join(", "),
                    p.kind
                );
                if let Some(error) = &p.error {
                    out += &format!("  {:<14} last: {error}\n", "");
                }
            }
        }
        for interface in &self.interfaces {
            let needed = if interface.needed_by.is_empty() { "-".to_string() } else { interface.needed_by.join(", ") };
            out += &format!("interface {:<14} from {:<14} needed by {needed}\n", interface.name, interface.provider);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_dns_labels() {
        assert!(is_node_name("web-1"));
        for bad in ["", "Web", "web_1", "web.lan", "-web", "web-", &"x".repeat(64)] {
            assert!(!is_node_name(bad), "{bad:?}");
        }
        assert!(is_node_name(&host_name()));
    }
}

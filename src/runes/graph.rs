//! The plugin graph: who provides which interface, who needs it, and the order to start
//! them in (every plugin after the providers of what it needs). Pure: no processes, no
//! I/O; the host hands it the declarations and gets an order or the reason there is none.

use std::collections::BTreeMap;

/// What a plugin says about itself (its `hello`, or a built-in's declaration).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Declaration {
    pub plugin: String,
    pub provides: Vec<String>,
    pub needs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("plugin {0:?} is listed twice")]
    DuplicatePlugin(String),
    #[error("interface {interface:?} is provided by both {first:?} and {second:?} (one provider per interface on a node)")]
    DuplicateProvider { interface: String, first: String, second: String },
    #[error("interface {interface:?} is needed by {} but no plugin provides it", needed_by.join(", "))]
    MissingInterface { interface: String, needed_by: Vec<String> },
    #[error("plugins need each other in a cycle: {}", describe_cycle(.0))]
    Cycle(Vec<Edge>),
}

/// One step of a cycle: `plugin` needs `interface`, which `provider` provides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub plugin: String,
    pub interface: String,
    pub provider: String,
}

fn describe_cycle(edges: &[Edge]) -> String {
    edges.iter().map(|e| format!("{} needs {} from {}", e.plugin, e.interface, e.provider)).collect::<Vec<_>>().join(", ")
}

/// The provider of each interface (checked for duplicates).
pub fn providers(plugins: &[Declaration]) -> Result<BTreeMap<String, usize>, GraphError> {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut providers: BTreeMap<String, usize> = BTreeMap::new();
    for (index, plugin) in plugins.iter().enumerate() {
        if names.insert(&plugin.plugin, index).is_some() {
            return Err(GraphError::DuplicatePlugin(plugin.plugin.clone()));
        }
        for interface in &plugin.provides {
            if let Some(&first) = providers.get(interface) {
                // The same plugin naming an interface twice is harmless; two plugins are not.
                if first != index {
                    return Err(GraphError::DuplicateProvider {
                        interface: interface.clone(),
                        first: plugins[first].plugin.clone(),
                        second: plugin.plugin.clone(),
                    });
                }
            }
            providers.insert(interface.clone(), index);
        }
    }
    Ok(providers)
}

/// The start order (indices into `plugins`): providers before the plugins that need
/// them, otherwise the order given. Errors name what is wrong: the duplicate, the
/// missing interface and who needs it, or the whole cycle.
pub fn start_order(plugins: &[Declaration]) -> Result<Vec<usize>, GraphError> {
    let providers = providers(plugins)?;
    // Missing interfaces first: a cycle report is useless while an edge is unknown.
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for plugin in plugins {
        for interface in &plugin.needs {
            if !providers.contains_key(interface) && !missing.get(interface.as_str()).is_some_and(|v| v.contains(&plugin.plugin)) {
                missing.entry(interface).or_default().push(plugin.plugin.clone());
            }
        }
    }
    if let Some((interface, needed_by)) = missing.into_iter().next() {
        return Err(GraphError::MissingInterface { interface: interface.to_string(), needed_by });
    }
    // Depth-first, in the given order, so independent plugins keep their order.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    let mut marks = vec![Mark::New; plugins.len()];
    let mut order = Vec::with_capacity(plugins.len());
    // The path of (plugin, interface it is following) for naming a cycle.
    fn visit(
        at: usize,
        plugins: &[Declaration],
        providers: &BTreeMap<String, usize>,
        marks: &mut [Mark],
        path: &mut Vec<(usize, String)>,
        order: &mut Vec<usize>,
    ) -> Result<(), GraphError> {
        marks[at] = Mark::Visiting;
        for interface in &plugins[at].needs {
            let provider = providers[interface];
            path.push((at, interface.clone()));
            match marks[provider] {
                Mark::Done => {}
                Mark::New => visit(provider, plugins, providers, marks, path, order)?,
                Mark::Visiting => {
                    let from = path.iter().position(|(p, _)| *p == provider).unwrap_or(0);
                    let edges = path[from..]
                        .iter()
                        .map(|(p, i)| Edge {
                            plugin: plugins[*p].plugin.clone(),
                            interface: i.clone(),
                            provider: plugins[providers[i]].plugin.clone(),
                        })
                        .collect();
                    return Err(GraphError::Cycle(edges));
                }
            }
            path.pop();
        }
        marks[at] = Mark::Done;
        order.push(at);
        Ok(())
    }
    for at in 0..plugins.len() {
        if marks[at] == Mark::New {
            visit(at, plugins, &providers, &mut marks, &mut Vec::new(), &mut order)?;
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, provides: &[&str], needs: &[&str]) -> Declaration {
        Declaration {
            plugin: name.into(),
            provides: provides.iter().map(|s| s.to_string()).collect(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn names(plugins: &[Declaration], order: &[usize]) -> Vec<String> {
        order.iter().map(|&i| plugins[i].plugin.clone()).collect()
    }

    #[test]
    fn the_dhcp_server_starts_after_the_address_and_the_boot_file() {
        let plugins = [
            plugin("dhcp", &["dhcp"], &["ip-address", "tftp"]),
            plugin("tftp", &["tftp"], &["ip-address"]),
            plugin("ip-address", &["ip-address"], &[]),
            plugin("motd", &[], &[]),
        ];
        let order = start_order(&plugins).unwrap();
        assert_eq!(names(&plugins, &order), ["ip-address", "tftp", "dhcp", "motd"]);
    }

    #[test]
    fn a_cycle_is_named_plugin_by_plugin() {
        let plugins = [
            plugin("ip-address", &["ip-address"], &[]),
            plugin("a", &["x"], &["ip-address", "y"]),
            plugin("b", &["y"], &["z"]),
            plugin("c", &["z"], &["x"]),
        ];
        let err = start_order(&plugins).unwrap_err();
        assert_eq!(err.to_string(), "plugins need each other in a cycle: a needs y from b, b needs z from c, c needs x from a");
    }

    #[test]
    fn a_plugin_needing_itself_is_a_cycle() {
        let err = start_order(&[plugin("loop", &["echo"], &["echo"])]).unwrap_err();
        assert_eq!(err.to_string(), "plugins need each other in a cycle: loop needs echo from loop");
    }

    #[test]
    fn a_missing_interface_names_everyone_who_needs_it() {
        let plugins = [plugin("dhcp", &["dhcp"], &["tftp"]), plugin("http", &[], &["tftp", "tftp"]), plugin("x", &[], &["ip-address"])];
        let err = start_order(&plugins).unwrap_err();
        assert_eq!(err, GraphError::MissingInterface { interface: "ip-address".into(), needed_by: vec!["x".into()] });
        let err = start_order(&plugins[..2]).unwrap_err();
        assert_eq!(err.to_string(), "interface \"tftp\" is needed by dhcp, http but no plugin provides it");
    }

    #[test]
    fn duplicates_are_refused() {
        let err = start_order(&[plugin("a", &["x"], &[]), plugin("b", &["x"], &[])]).unwrap_err();
        assert_eq!(err, GraphError::DuplicateProvider { interface: "x".into(), first: "a".into(), second: "b".into() });
        let err = start_order(&[plugin("a", &[], &[]), plugin("a", &[], &[])]).unwrap_err();
        assert_eq!(err, GraphError::DuplicatePlugin("a".into()));
        // One plugin naming its interface twice is not a conflict.
        assert_eq!(start_order(&[plugin("a", &["x", "x"], &[])]).unwrap(), [0]);
    }

    #[test]
    fn a_diamond_starts_each_plugin_once() {
        let plugins = [
            plugin("top", &[], &["l", "r"]),
            plugin("left", &["l"], &["base"]),
            plugin("right", &["r"], &["base"]),
            plugin("base", &["base"], &[]),
        ];
        assert_eq!(names(&plugins, &start_order(&plugins).unwrap()), ["base", "left", "right", "top"]);
    }
}

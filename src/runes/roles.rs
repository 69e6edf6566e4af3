//! Roles: what a node is for, and the plugins (with their settings) each role runs.
//!
//! Defined in TOML: VIVER's own roles are built in ([`BUILTIN_ROLES`]); a roles file
//! (`/etc/viver/roles.toml` in the image, or `--roles-file`) adds roles and replaces a
//! built-in role of the same name. Unknown keys are errors, not silently dropped, and
//! every setting reaches the plugin as the JSON value of what the file says.
//!
//! ```toml
//! [roles.web]
//! description = "answers with the node's name"
//!
//! [[roles.web.plugins]]
//! name = "greeter"
//! exec = "greeter.sh"          # an executable in the plugins directory; no exec: built in
//! settings = { greeting = "hello" }
//! ```

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a booted node's image keeps its roles.
pub const ROLES_FILE: &str = "/etc/viver/roles.toml";

/// VIVER's own roles. `boot-server` is the netboot server's wiring as plugins: `dhcp`
/// asks `ip-address` for the server's address and `tftp` for the boot file.
pub const BUILTIN_ROLES: &str = r#"
[roles.boot-server]
description = "the LAN's boot server: DHCP/proxyDHCP, TFTP and HTTP for network-booting clients"
[[roles.boot-server.plugins]]
name = "ip-address"
[[roles.boot-server.plugins]]
name = "tftp"
[[roles.boot-server.plugins]]
name = "dhcp"

[roles.ip-address]
description = "answers the address, netmask and gateway of the node's interface"
[[roles.ip-address.plugins]]
name = "ip-address"
"#;

/// Where a role came from, for errors and `viver roles`.
pub const BUILTIN_SOURCE: &str = "built in";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RolesError {
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    #[error("{file}:{line}:{column}: {message}")]
    Parse { file: String, line: usize, column: usize, message: String },
    #[error("{file}:{line}: {message}")]
    Invalid { file: String, line: usize, message: String },
    #[error("no role {name:?} (known: {})", known.join(", "))]
    UnknownRole { name: String, known: Vec<String> },
    #[error(
        "plugin {plugin:?} is in roles {first:?} and {second:?} with different settings or executables (a node runs each plugin once)"
    )]
    Conflict { plugin: String, first: String, second: String },
}

/// One role: its plugins in the order the file lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub plugins: Vec<PluginSpec>,
    /// The file it was read from, or [`BUILTIN_SOURCE`].
    pub source: String,
}

/// A plugin as a role asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub name: String,
    /// The role that asked for it (the first one, when several do).
    pub role: String,
    /// An external plugin's executable: absolute, or relative to the plugins directory.
    /// `None`: a built-in plugin of that name.
    pub exec: Option<PathBuf>,
    pub settings: Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Roles {
    pub roles: BTreeMap<String, Role>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    roles: BTreeMap<toml::Spanned<String>, RoleEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleEntry {
    #[serde(default)]
    description: String,
    #[serde(default)]
    plugins: Vec<PluginEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginEntry {
    name: toml::Spanned<String>,
    exec: Option<toml::Spanned<String>>,
    #[serde(default)]
    settings: toml::Table,
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// A TOML value as JSON, without losing anything: dates become their TOML text, and a
/// float JSON cannot carry (NaN, infinity) is refused.
fn toml_to_json(value: &toml::Value, key: &str) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            Value::from(serde_json::Number::from_f64(*f).ok_or_else(|| format!("setting {key}: {f} cannot be passed to a plugin as JSON"))?)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => {
            Value::Array(items.iter().enumerate().map(|(i, v)| toml_to_json(v, &format!("{key}[{i}]"))).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => table_to_json(table, key)?,
    })
}

fn table_to_json(table: &toml::Table, prefix: &str) -> Result<Value, String> {
    let mut object = serde_json::Map::new();
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        object.insert(k.clone(), toml_to_json(v, &key)?);
    }
    Ok(Value::Object(object))
}

impl Roles {
    /// VIVER's built-in roles.
    pub fn builtin() -> Roles {
        // The built-in text is tested; should it ever fail, a node still runs without it.
        Roles::parse(BUILTIN_ROLES, BUILTIN_SOURCE).unwrap_or_else(|e| {
            log::error!("built-in roles: {e}");
            Roles::default()
        })
    }

    /// Parses a roles file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Roles, RolesError> {
        let parsed: File = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_column(text, s.start)).unwrap_or((1, 1));
            RolesError::Parse { file: file.to_string(), line, column, message: e.message().trim().to_string() }
        })?;
        let invalid =
            |offset: usize, message: String| RolesError::Invalid { file: file.to_string(), line: line_column(text, offset).0, message };
        let mut roles = BTreeMap::new();
        for (name, entry) in parsed.roles {
            let role_name = name.get_ref().clone();
            if !super::protocol::is_name(&role_name) {
                return Err(invalid(name.span().start, format!("role name {role_name:?} is not a name (a-z, 0-9, '-', '_', '.')")));
            }
            let mut plugins: Vec<PluginSpec> = Vec::new();
            for plugin in entry.plugins {
                let plugin_name = plugin.name.get_ref().clone();
                let at = plugin.name.span().start;
                if !super::protocol::is_name(&plugin_name) {
                    return Err(invalid(at, format!("plugin name {plugin_name:?} is not a name (a-z, 0-9, '-', '_', '.')")));
                }
                if plugins.iter().any(|p| p.name == plugin_name) {
                    return Err(invalid(at, format!("role {role_name:?} lists plugin {plugin_name:?} twice")));
                }
                let exec = match plugin.exec {
                    Some(exec) if exec.get_ref().is_empty() => return Err(invalid(exec.span().start, "exec is empty".into())),
                    Some(exec) => Some(PathBuf::from(exec.into_inner())),
                    None => {
                        if !super::plugins::exists(&plugin_name) {
                            return Err(invalid(
                                at,
                                format!(
                                    "plugin {plugin_name:?} has no exec and is not built in (built in: {})",
                                    super::plugins::NAMES.join(", ")
                                ),
                            ));
                        }
                        None
                    }
                };
                let settings = table_to_json(&plugin.settings, "").map_err(|m| invalid(at, format!("plugin {plugin_name:?}: {m}")))?;
                plugins.push(PluginSpec { name: plugin_name, role: role_name.clone(), exec, settings });
            }
            roles.insert(role_name.clone(), Role { name: role_name, description: entry.description, plugins, source: file.to_string() });
        }
        Ok(Roles { roles })
    }

    /// The built-in roles, then `path`'s (which replace built-in ones of the same name).
    /// A missing file at the default place is no error (an image without roles).
    pub fn load(path: Option<&Path>) -> Result<Roles, RolesError> {
        let mut roles = Roles::builtin();
        let (path, required) = match path {
            Some(path) => (path, true),
            None => (Path::new(ROLES_FILE), false),
        };
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => roles.roles.extend(Roles::parse(&text, &file)?.roles),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
            Err(e) => return Err(RolesError::Read { file, message: e.to_string() }),
        }
        Ok(roles)
    }

    /// The plugins of `names` (in that order, each plugin once). The same plugin in two
    /// roles must be asked for alike.
    pub fn plugins_for(&self, names: &[String]) -> Result<Vec<PluginSpec>, RolesError> {
        let mut plugins: Vec<PluginSpec> = Vec::new();
        for name in names {
            let role = self
                .roles
                .get(name)
                .ok_or_else(|| RolesError::UnknownRole { name: name.clone(), known: self.roles.keys().cloned().collect() })?;
            for plugin in &role.plugins {
                match plugins.iter().find(|p| p.name == plugin.name) {
                    Some(p) if p.exec == plugin.exec && p.settings == plugin.settings => {}
                    Some(p) => {
                        return Err(RolesError::Conflict { plugin: plugin.name.clone(), first: p.role.clone(), second: role.name.clone() })
                    }
                    None => plugins.push(plugin.clone()),
                }
            }
        }
        Ok(plugins)
    }
}

/// `a,b , c` -> `["a", "b", "c"]` (the form of `viver.role=` and `--role`).
pub fn split_list(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WEB: &str = r#"
[roles.web]
description = "a web node"

[[roles.web.plugins]]
name = "ip-address"

[[roles.web.plugins]]
name = "greeter"
exec = "greeter.sh"
settings = { greeting = "hello", ports = [80, 8080], when = 1979-05-27T07:32:00Z, nested = { ratio = 0.5 } }
"#;

    #[test]
    fn the_builtin_roles_parse_and_wire_the_boot_server() {
        let roles = Roles::builtin();
        let plugins = roles.plugins_for(&["boot-server".into()]).unwrap();
        assert_eq!(plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["ip-address", "tftp", "dhcp"]);
        assert!(plugins.iter().all(|p| p.exec.is_none()));
    }

    #[test]
    fn a_role_keeps_every_setting() {
        let roles = Roles::parse(WEB, "roles.toml").unwrap();
        let web = &roles.roles["web"];
        assert_eq!(web.description, "a web node");
        let greeter = &web.plugins[1];
        assert_eq!(greeter.exec.as_deref(), Some(Path::new("greeter.sh")));
        assert_eq!(
            greeter.settings,
            json!({"greeting": "hello", "ports": [80, 8080], "when": "1979-05-27T07:32:00Z", "nested": {"ratio": 0.5}})
        );
        assert_eq!(web.plugins[0].settings, json!({}));
    }

    #[test]
    fn a_syntax_error_names_file_line_and_column() {
        let err = Roles::parse("[roles.web]\ndescription = \"x\"\nplugins = [ { name = } ]\n", "/etc/viver/roles.toml").unwrap_err();
        let RolesError::Parse { file, line, .. } = &err else { panic!("{err}") };
        assert_eq!((file.as_str(), *line), ("/etc/viver/roles.toml", 3));
    }

    #[test]
    fn an_unknown_key_is_an_error_not_lost() {
        let err = Roles::parse("[roles.web]\n[[roles.web.plugins]]\nname = \"ip-address\"\nsetings = { a = 1 }\n", "r.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("r.toml:4:") && text.contains("unknown field `setings`") && text.contains("expected"), "{text}");
        let err = Roles::parse("[role.web]\n", "r.toml").unwrap_err().to_string();
        assert!(err.contains("unknown field `role`"), "{err}");
    }

    #[test]
    fn wrong_types_and_bad_plugins_name_the_line() {
        let err = Roles::parse("[roles.web]\nplugins = \"greeter\"\n", "r.toml").unwrap_err().to_string();
        assert!(err.starts_with("r.toml:2:") && err.contains("expected"), "{err}");
        let err = Roles::parse("[roles.web]\n\n[[roles.web.plugins]]\nname = \"nonesuch\"\n", "r.toml").unwrap_err();
        assert_eq!(err.to_string(), "r.toml:4: plugin \"nonesuch\" has no exec and is not built in (built in: ip-address, tftp, dhcp)");
        let err = Roles::parse("[[roles.web.plugins]]\nname = \"ip-address\"\n[[roles.web.plugins]]\nname = \"ip-address\"\n", "r.toml");
        assert_eq!(err.unwrap_err().to_string(), "r.toml:4: role \"web\" lists plugin \"ip-address\" twice");
        let err = Roles::parse("[[roles.web.plugins]]\nname = \"x\"\nexec = \"x\"\nsettings = { v = nan }\n", "r.toml").unwrap_err();
        assert!(err.to_string().contains("setting v: NaN cannot be passed"), "{err}");
        let err = Roles::parse("[roles.\"Web Site\"]\n", "r.toml").unwrap_err();
        assert!(matches!(err, RolesError::Invalid { line: 1, .. }), "{err}");
    }

    #[test]
    fn roles_combine_and_a_file_replaces_a_builtin_role() {
        let mut roles = Roles::builtin();
        roles.roles.extend(Roles::parse(WEB, "r.toml").unwrap().roles);
        let plugins = roles.plugins_for(&split_list("web, boot-server")).unwrap();
        assert_eq!(plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["ip-address", "greeter", "tftp", "dhcp"]);
        assert_eq!(plugins[0].role, "web");
        let err = roles.plugins_for(&["nonesuch".into()]).unwrap_err();
        assert_eq!(err.to_string(), "no role \"nonesuch\" (known: boot-server, ip-address, web)");
        roles.roles.extend(Roles::parse("[[roles.boot-server.plugins]]\nname = \"ip-address\"\n", "r.toml").unwrap().roles);
        assert_eq!(roles.roles["boot-server"].plugins.len(), 1);
        let clash = "[[roles.other.plugins]]\nname = \"greeter\"\nexec = \"other.sh\"\n";
        roles.roles.extend(Roles::parse(clash, "r2.toml").unwrap().roles);
        let err = roles.plugins_for(&["web".into(), "other".into()]).unwrap_err();
        assert_eq!(err, RolesError::Conflict { plugin: "greeter".into(), first: "web".into(), second: "other".into() });
    }

    #[test]
    fn a_missing_default_file_is_fine_a_missing_named_one_is_not() {
        let err = Roles::load(Some(Path::new("/nonexistent/roles.toml"))).unwrap_err();
        assert!(matches!(err, RolesError::Read { .. }), "{err}");
    }
}

//! `dhcp`: the boot server's DHCP configuration, wired as in the original VIVER: at
//! start it asks `ip-address` for the server's address, netmask and gateway and `tftp`
//! for the boot files, and answers `config` with what it put together. It does not bind
//! port 67 yet (a node changes nothing of its host in this version); the DHCP server
//! itself stays in [`crate::serve::dhcp`].
//!
//! Settings: `mode` (`auto`, as `viver serve --dhcp`).

use super::super::builtin::{Builtin, Context};
use super::super::graph::Declaration;
use crate::serve::dhcp::probe::Setting;
use serde_json::{json, Value};

#[derive(Default)]
pub struct Dhcp {
    config: Value,
}

impl Builtin for Dhcp {
    fn declaration(&self) -> Declaration {
        super::declaration("dhcp", &["dhcp"], &["ip-address", "tftp"])
    }

    fn start(&mut self, context: &Context) -> Result<(), String> {
        let mode = context.setting_str("mode").unwrap_or("auto");
        let setting = Setting::from_word(mode).ok_or_else(|| format!("setting mode {mode:?} is not auto, force, full, proxy or off"))?;
        let ask = |interface: &str, method: &str, params: Value| context.request(interface, method, params).map_err(|e| e.to_string());
        let address = ask("ip-address", "get", json!({}))?;
        let bios = ask("tftp", "boot-file", json!({"firmware": "bios"}))?;
        let uefi = ask("tftp", "boot-file", json!({"firmware": "uefi"}))?;
        self.config = json!({
            "mode": setting,
            "interface": address["interface"],
            "server": address["address"],
            "netmask": address["netmask"],
            "router": address["gateway"],
            "next_server": bios["server"],
            "boot_file_bios": bios["file"],
            "boot_file_uefi": uefi["file"],
        });
        log::info!("dhcp: configuration {}", self.config);
        Ok(())
    }

    fn handle(&mut self, _context: &Context, interface: &str, method: &str, _params: &Value) -> Result<Value, String> {
        match method {
            "config" => Ok(self.config.clone()),
            _ => Err(super::unknown_method(interface, method, &["config"])),
        }
    }
}

//! `tftp`: which boot file PXE firmware should ask for, and where (the node's address,
//! from `ip-address`). A thin layer over the boot server's catalogue of iPXE binaries
//! ([`crate::serve::files`]); the TFTP server itself stays in [`crate::serve::tftp`].
//!
//! Settings: `port` (69), `ipxe_dir` (`/usr/lib/ipxe`, Debian's `ipxe` package).

use super::super::builtin::{Builtin, Context};
use super::super::graph::Declaration;
use crate::serve::files::IPXE_BINARIES;
use serde_json::{json, Value};
use std::path::PathBuf;

pub struct Tftp {
    port: u16,
    ipxe_dir: PathBuf,
}

impl Default for Tftp {
    fn default() -> Tftp {
        Tftp { port: 69, ipxe_dir: PathBuf::from("/usr/lib/ipxe") }
    }
}

/// The file for `firmware`: BIOS PXE chains to `undionly.kpxe`, UEFI to `ipxe.efi`.
pub fn boot_file(firmware: &str) -> Result<&'static str, String> {
    match firmware {
        "bios" => Ok(IPXE_BINARIES[0]),
        "uefi" => Ok(IPXE_BINARIES[1]),
        other => Err(format!("firmware {other:?} is not bios or uefi")),
    }
}

impl Builtin for Tftp {
    fn declaration(&self) -> Declaration {
        super::declaration("tftp", &["tftp"], &["ip-address"])
    }

    fn start(&mut self, context: &Context) -> Result<(), String> {
        let settings = &context.info.settings;
        if let Some(port) = settings.get("port") {
            self.port =
                port.as_u64().and_then(|p| u16::try_from(p).ok()).ok_or_else(|| format!("setting port {port} is not a port number"))?;
        }
        if let Some(dir) = context.setting_str("ipxe_dir") {
            self.ipxe_dir = PathBuf::from(dir);
        }
        Ok(())
    }

    fn handle(&mut self, context: &Context, interface: &str, method: &str, params: &Value) -> Result<Value, String> {
        match method {
            "boot-file" => {
                let firmware = params.get("firmware").and_then(Value::as_str).unwrap_or("bios");
                let file = boot_file(firmware)?;
                let address = context.request("ip-address", "get", json!({})).map_err(|e| e.to_string())?;
                Ok(json!({
                    "file": file,
                    "server": address["address"],
                    "port": self.port,
                    "present": self.ipxe_dir.join(file).is_file(),
                }))
            }
            _ => Err(super::unknown_method(interface, method, &["boot-file"])),
        }
    }
}

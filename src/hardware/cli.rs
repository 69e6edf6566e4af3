//! `viver hw ...`: look at what detection would do, and write module tables.

use super::coldplug::walk_modaliases;
use super::index::load_tables;
use super::index::ModuleTables;
use super::legacy::LegacyMaps;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum HwCommand {
    /// Print each device, its modalias, the modules chosen and why (loads nothing).
    Probe {
        /// A captured /sys (default: the running system's).
        #[arg(long)]
        sysfs: Option<PathBuf>,
        /// The kernel's module directory, /lib/modules/<release> (default: the running kernel's).
        #[arg(long)]
        modules: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write modules.pcimap and modules.usbmap (2.6-era format) for a modern kernel.
    ExportLegacy {
        #[arg(long)]
        modules: PathBuf,
        /// Where to write (default: the module directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Write depmod-compatible tables (modules.alias, .dep, .softdep, .builtin, .order)
    /// built from the .ko files themselves.
    Index {
        #[arg(long)]
        modules: PathBuf,
        /// Where to write (default: the module directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Resolve modaliases or module names the way `modprobe --resolve-alias` does.
    Resolve {
        #[arg(long)]
        modules: Option<PathBuf>,
        aliases: Vec<String>,
    },
}

fn running_modules_dir() -> PathBuf {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().to_string()).unwrap_or_default();
    Path::new("/lib/modules").join(release)
}

fn tables_or_exit(dir: &Path) -> Result<ModuleTables, i32> {
    load_tables(dir).map_err(|e| {
        eprintln!("viver hw: {e}");
        1
    })
}

#[derive(serde::Serialize)]
struct ProbedDevice {
    device: String,
    modalias: String,
    modules: Vec<ProbedModule>,
}

#[derive(serde::Serialize)]
struct ProbedModule {
    module: String,
    why: String,
    builtin: bool,
    load_order: Vec<String>,
}

pub fn run(cmd: HwCommand) -> i32 {
    match run_inner(cmd) {
        Ok(()) => 0,
        Err(code) => code,
    }
}

fn run_inner(cmd: HwCommand) -> Result<(), i32> {
    match cmd {
        HwCommand::Probe { sysfs, modules, json } => {
            let modules = modules.unwrap_or_else(running_modules_dir);
            let tables = tables_or_exit(&modules)?;
            let sysfs = sysfs.unwrap_or_else(|| PathBuf::from("/sys"));
            let mut seen = std::collections::HashSet::new();
            let mut devices = Vec::new();
            for (device, modalias) in walk_modaliases(&sysfs) {
                seen.insert(modalias.clone());
                let mut mods: Vec<ProbedModule> = Vec::new();
                for m in tables.resolve_explained(&modalias) {
                    // Several table entries may pick the same module: show them all.
                    if let Some(p) = mods.iter_mut().find(|p| p.module == m.module) {
                        p.why.push_str(", ");
                        p.why.push_str(&m.why);
                        continue;
                    }
                    let builtin = tables.is_builtin(&m.module) && tables.module_path(&m.module).is_none();
                    mods.push(ProbedModule {
                        load_order: if builtin { Vec::new() } else { tables.load_order(&m.module) },
                        builtin,
                        module: m.module,
                        why: m.why,
                    });
                }
                devices.push(ProbedDevice { device, modalias, modules: mods });
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&devices).unwrap_or_default());
                return Ok(());
            }
            let mut unmatched = Vec::new();
            for d in &devices {
                println!("{}\n  modalias {}", d.device, d.modalias);
                if d.modules.is_empty() {
                    println!("  (no module)");
                    unmatched.push(d.modalias.clone());
                }
                for m in &d.modules {
                    if m.builtin {
                        println!("  -> {} [built into the kernel] because {}", m.module, m.why);
                    } else {
                        println!("  -> {} because {}; loads {}", m.module, m.why, m.load_order.join(" "));
                    }
                }
            }
            unmatched.sort();
            unmatched.dedup();
            println!("\n{} devices, {} modaliases without a module", devices.len(), unmatched.len());
            for u in unmatched {
                println!("  unmatched {u}");
            }
            Ok(())
        }
        HwCommand::ExportLegacy { modules, output } => {
            let tables = tables_or_exit(&modules)?;
            let (maps, skipped) = LegacyMaps::from_aliases(tables.aliases());
            let out = output.unwrap_or(modules);
            std::fs::create_dir_all(&out).map_err(|e| {
                eprintln!("viver hw: {}: {e}", out.display());
                1
            })?;
            maps.write(&out).map_err(|e| {
                eprintln!("viver hw: {e}");
                1
            })?;
            println!(
                "{}: {} pcimap and {} usbmap entries ({} aliases the old format cannot express were left out)",
                out.display(),
                maps.pci.len(),
                maps.usb.len(),
                skipped
            );
            Ok(())
        }
        HwCommand::Index { modules, output } => {
            let t0 = std::time::Instant::now();
            let (tables, warnings) = ModuleTables::build(&modules).map_err(|e| {
                eprintln!("viver hw: {e}");
                1
            })?;
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            let out = output.unwrap_or(modules);
            tables.write(&out).map_err(|e| {
                eprintln!("viver hw: {e}");
                1
            })?;
            println!("{}: {} modules indexed in {} ms", out.display(), tables.modules().count(), t0.elapsed().as_millis());
            Ok(())
        }
        HwCommand::Resolve { modules, aliases } => {
            let tables = tables_or_exit(&modules.unwrap_or_else(running_modules_dir))?;
            let mut missing = false;
            for a in aliases {
                let r = tables.resolve(&a);
                if r.is_empty() {
                    eprintln!("{a}: no module");
                    missing = true;
                }
                for m in r {
                    println!("{m}");
                }
            }
            if missing {
                Err(1)
            } else {
                Ok(())
            }
        }
    }
}

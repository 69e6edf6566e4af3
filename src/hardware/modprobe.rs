//! The `modprobe` personality of the /init binary. The kernel asks userspace for a
//! module (request_module: "crypto-crc32c" when btrfs/xfs need libcrc32c, "fs-*",
//! "char-major-*", "net-pf-*") by running /sbin/modprobe; the initrd has no kmod, so
//! /sbin/modprobe is a link to /init, and main() lands here when argv[0] says modprobe.
//! It resolves the name with the same tables and loads with the same loader as the
//! detector (no threads: one request, one answer), and exits like modprobe does.

use super::index::{load_tables, ModuleTables};
use super::loader::{KernelLoader, LoadModule};
use super::modinfo::normalize_module_name;
use super::HwError;
use crate::cmdline::{Cmdline, ModuleOptions};
use nix::errno::Errno;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the kernel runs its module helper by default (CONFIG_MODPROBE_PATH).
pub const MODPROBE_PATH: &str = "/sbin/modprobe";

/// True when the binary was started as `modprobe` (argv[0]'s last component).
pub fn invoked_as_modprobe(argv0: Option<&std::ffi::OsStr>) -> bool {
    argv0.and_then(|a| Path::new(a).file_name()).is_some_and(|n| n == "modprobe")
}

/// What a request is answered with: the module directory and the command line's
/// module options (blacklist, parameters).
struct Options {
    modules_dir: PathBuf,
    modules: ModuleOptions,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    quiet: bool,
    verbose: bool,
    dry_run: bool,
    use_blacklist: bool,
    /// -d ROOT: modules under ROOT/lib/modules/RELEASE (as kmod's modprobe).
    root: Option<PathBuf>,
    /// -S RELEASE instead of the running kernel's.
    release: Option<String>,
    name: String,
    params: Vec<String>,
}

fn parse(args: &[OsString]) -> Result<Request, String> {
    let mut req = Request::default();
    let mut words = args.iter().map(|a| a.to_string_lossy().to_string());
    let mut rest: Vec<String> = Vec::new();
    let mut options_done = false;
    while let Some(w) = words.next() {
        if options_done || !w.starts_with('-') || w == "-" {
            rest.push(w);
            // Like modprobe, options stop at the module name: the rest are its parameters.
            options_done = true;
            continue;
        }
        match w.as_str() {
            "--" => options_done = true,
            "-q" | "--quiet" => req.quiet = true,
            "-v" | "--verbose" => req.verbose = true,
            "-n" | "--dry-run" | "--show" => req.dry_run = true,
            "-b" | "--use-blacklist" => req.use_blacklist = true,
            // Accepted and meaningless here: syslog, first-time, all-dependency flags.
            "-s" | "--syslog" | "--first-time" | "-i" | "--ignore-install" => {}
            "-d" | "--dirname" => req.root = Some(words.next().ok_or("-d needs a directory")?.into()),
            "-S" | "--set-version" => req.release = Some(words.next().ok_or("-S needs a kernel release")?),
            other => {
                if let Some(v) = other.strip_prefix("--dirname=") {
                    req.root = Some(v.into());
                } else if let Some(v) = other.strip_prefix("--set-version=") {
                    req.release = Some(v.to_string());
                } else if other.len() > 2 && !other.starts_with("--") && other[1..].chars().all(|c| "qvnbs".contains(c)) {
                    // Bundled short flags: -qb, -nv.
                    for c in other[1..].chars() {
                        match c {
                            'q' => req.quiet = true,
                            'v' => req.verbose = true,
                            'n' => req.dry_run = true,
                            'b' => req.use_blacklist = true,
                            _ => {}
                        }
                    }
                } else {
                    return Err(format!("unsupported option {other} (this is VIVER's initramfs modprobe)"));
                }
            }
        }
    }
    let mut rest = rest.into_iter();
    req.name = rest.next().ok_or("no module name given")?;
    req.params = rest.collect();
    Ok(req)
}

/// Says `msg` on stderr (unless quiet) and in the kernel log, where a boot log shows it:
/// the kernel runs its helper with stdio on /dev/null.
fn say(req: &Request, level: u8, msg: &str) {
    if !req.quiet {
        eprintln!("modprobe: {msg}");
    }
    if !req.dry_run {
        if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            let _ = kmsg.write_all(format!("<{level}>viver-modprobe: {msg}\n").as_bytes());
        }
    }
}

/// A module the running kernel already has: live, or built in (a /sys/module entry
/// without initstate). One still "coming" (the detector loading it right now) is not:
/// finit_module then waits for it, so the kernel's request returns only once it is live.
fn in_kernel(module: &str) -> bool {
    let dir = Path::new("/sys/module").join(module);
    match std::fs::read_to_string(dir.join("initstate")) {
        Ok(state) => state.trim() == "live",
        Err(_) => dir.is_dir() && !dir.join("refcnt").exists(),
    }
}

/// `modprobe [-q] [-v] [-n] [-b] [-d ROOT] [-S RELEASE] [--] NAME_OR_ALIAS [param=value...]`;
/// returns modprobe's exit status (0 loaded or already there, 1 otherwise).
pub fn main(args: &[OsString]) -> i32 {
    let req = match parse(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("modprobe: {e}");
            eprintln!("usage: modprobe [-q] [-v] [-n] [-b] [-d ROOT] [-S RELEASE] [--] NAME_OR_ALIAS [param=value...]");
            return 1;
        }
    };
    let release = req
        .release
        .clone()
        .unwrap_or_else(|| nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default());
    let root = req.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let dir = root.join("lib/modules").join(&release);
    let tables = match load_tables(&dir) {
        Ok(t) => t,
        Err(e) => {
            say(&req, 3, &format!("FATAL: {e}"));
            return 1;
        }
    };
    // Bytes, not text: a word that is not UTF-8 must not cost the blacklist and parameters
    // (PID 1 reports such words; a helper run with stdio on /dev/null says nothing).
    let (cmdline, _) = Cmdline::from_bytes(&std::fs::read("/proc/cmdline").unwrap_or_default());
    let options = Options { modules_dir: dir.clone(), modules: cmdline.module_options() };
    let loader = KernelLoader { release_dir: dir.clone() };
    match probe(&req, &tables, &options, &loader) {
        Ok(()) => 0,
        // The kernel asks for names nothing provides ("crypto-crc32c-all" after
        // "crypto-crc32c"): with -q, as for kmod, that is no news worth a console line.
        Err(e @ HwError::NotFound(_)) if req.quiet => {
            say(&req, 7, &format!("{e}"));
            1
        }
        Err(e) => {
            say(&req, 3, &format!("FATAL: {e}"));
            1
        }
    }
}

/// Resolves and loads; any one of an alias's modules loading is success (as modprobe).
fn probe(req: &Request, tables: &ModuleTables, options: &Options, loader: &dyn LoadModule) -> Result<(), HwError> {
    let modules = tables.resolve(&req.name);
    if modules.is_empty() {
        return Err(HwError::NotFound(req.name.clone()));
    }
    let mut first_err = None;
    let mut any_ok = false;
    for module in &modules {
        if req.use_blacklist && modules.len() > 1 && options.modules.blacklist.contains(module) {
            continue;
        }
        // Parameters on the command line are for the module named, not its dependencies.
        let extra = if normalize_module_name(&req.name) == *module { req.params.join(" ") } else { String::new() };
        match load_with_dependencies(req, tables, options, loader, module, &extra, 0) {
            Ok(()) => any_ok = true,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (any_ok, first_err) {
        (true, _) => Ok(()),
        (false, Some(e)) => Err(e),
        (false, None) => Err(HwError::Module { module: req.name.clone(), reason: "blacklisted (modprobe.blacklist)".into() }),
    }
}

fn load_with_dependencies(
    req: &Request,
    tables: &ModuleTables,
    options: &Options,
    loader: &dyn LoadModule,
    module: &str,
    extra_params: &str,
    depth: usize,
) -> Result<(), HwError> {
    let (pre, post) = tables.softdeps(module);
    let soft = |names: Vec<String>| {
        if depth < 3 {
            for s in names {
                for m in tables.resolve(&s) {
                    // Soft dependencies are best effort, as in modprobe.
                    let _ = load_with_dependencies(req, tables, options, loader, &m, "", depth + 1);
                }
            }
        }
    };
    soft(pre);
    let order = tables.load_order(module);
    if order.is_empty() && tables.is_builtin(module) {
        if req.verbose {
            println!("builtin {module}");
        }
        return Ok(());
    }
    for m in &order {
        let Some(path) = tables.module_path(m) else { continue };
        let is_target = m == module;
        if in_kernel(m) && !req.dry_run {
            continue;
        }
        let mut params = options.modules.params.get(m).cloned().unwrap_or_default();
        if is_target && !extra_params.is_empty() {
            if !params.is_empty() {
                params.push(' ');
            }
            params.push_str(extra_params);
        }
        if req.verbose || req.dry_run {
            println!("insmod {} {params}", options.modules_dir.join(path).display());
        }
        if req.dry_run {
            continue;
        }
        match loader.load(m, path, &params) {
            Ok(()) => say(req, 6, &format!("loaded {m} (requested as {})", req.name)),
            Err(HwError::LoadFailed { errno: Errno::EEXIST, .. }) => {}
            // A failed dependency: the module itself is still tried, the kernel decides.
            Err(e) if !is_target => say(req, 4, &e.to_string()),
            Err(e) => return Err(e),
        }
    }
    soft(post);
    Ok(())
}

/// Makes the kernel run /sbin/modprobe for its requests, when something set another
/// helper (the kernel's default already is /sbin/modprobe: then nothing is written).
pub fn point_kernel_at_modprobe(proc_sys: &Path) {
    let file = proc_sys.join("kernel/modprobe");
    match std::fs::read_to_string(&file) {
        Ok(current) if current.trim() == MODPROBE_PATH => {}
        Ok(current) => {
            if !Path::new(MODPROBE_PATH).exists() {
                log::warn!("hw: the kernel's module helper is {:?} and this initrd has no {MODPROBE_PATH}", current.trim());
                return;
            }
            match std::fs::write(&file, MODPROBE_PATH) {
                Ok(()) => log::info!("hw: kernel module requests now go to {MODPROBE_PATH} (was {:?})", current.trim()),
                Err(e) => log::warn!("hw: cannot set {}: {e}", file.display()),
            }
        }
        Err(e) => log::debug!("hw: {}: {e}", file.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn argv0_decides() {
        assert!(invoked_as_modprobe(Some("/sbin/modprobe".as_ref())));
        assert!(invoked_as_modprobe(Some("modprobe".as_ref())));
        assert!(!invoked_as_modprobe(Some("/init".as_ref())));
        assert!(!invoked_as_modprobe(Some("/usr/bin/modprobe-wrapper".as_ref())));
        assert!(!invoked_as_modprobe(None));
    }

    #[test]
    fn the_kernels_request_parses() {
        let r = parse(&args(&["-q", "--", "crypto-crc32c"])).unwrap();
        assert!(r.quiet && !r.verbose);
        assert_eq!(r.name, "crypto-crc32c");
        assert!(r.params.is_empty());
    }

    #[test]
    fn parameters_follow_the_name_and_options_stop_there() {
        let r = parse(&args(&["-nv", "-d", "/x", "loop", "max_loop=8", "-q"])).unwrap();
        assert!(r.dry_run && r.verbose && !r.quiet);
        assert_eq!(r.root.as_deref(), Some(Path::new("/x")));
        assert_eq!(r.name, "loop");
        assert_eq!(r.params, vec!["max_loop=8", "-q"]);
    }

    #[test]
    fn bad_usage_is_an_error() {
        assert!(parse(&args(&["-q"])).unwrap_err().contains("no module name"));
        assert!(parse(&args(&["--remove", "x"])).unwrap_err().contains("--remove"));
        assert!(parse(&args(&["-d"])).is_err());
    }
}

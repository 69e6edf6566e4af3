//! `viver kit initrd`: the initramfs. `/init` is the static viver binary; the kernel
//! modules /init may need come from data lists (initramfs/modules.d), each with its
//! dependency closure, and the module tables (modules.dep, modules.alias...) are
//! regenerated from the .ko files for exactly the modules included: the Debian tree has
//! no modules.alias/dep, and tables naming absent modules would make /init try to load
//! what is not there.

use super::atomic::{source_date_epoch, PendingOutput, ScratchDir};
use super::cpio_archive::{Archive, Content};
use super::error::{IoContext, KitError};
use super::selection::{self, Selector, SelectorLine};
use crate::hardware::ModuleTables;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InitrdCompression {
    Gzip,
    None,
}

pub struct InitrdOptions {
    /// /lib/modules/RELEASE of the kernel the initrd is for.
    pub modules: PathBuf,
    pub output: PathBuf,
    pub add_modules: Vec<String>,
    pub rescue_shell: bool,
    pub host_only: bool,
    /// Where `proc/modules` and `sys/module` of the host are (normally `/`).
    pub host_root: PathBuf,
    pub compress: InitrdCompression,
    /// The binary that becomes /init (default: the running executable).
    pub init: Option<PathBuf>,
    /// A directory of *.list files replacing the shipped module lists.
    pub lists: Option<PathBuf>,
    /// A files.list replacing the shipped one.
    pub files_list: Option<PathBuf>,
    /// Where busybox comes from with --rescue-shell.
    pub busybox: Option<PathBuf>,
    /// Prepend the early microcode cpio made from this root's firmware directories.
    pub microcode: Option<PathBuf>,
    /// Public keys whose signed images the boot accepts (and no others).
    pub trust: Vec<PathBuf>,
}

pub struct InitrdReport {
    pub compressed_size: u64,
    pub unpacked_size: u64,
    pub modules: BTreeSet<String>,
    pub entries: usize,
    /// Selection lines that named nothing in this kernel.
    pub unmatched: Vec<String>,
    /// What the early microcode segment holds (empty without --microcode).
    pub microcode: Vec<String>,
    /// Ids of the keys put into /etc/viver/trusted.
    pub trusted: Vec<String>,
}

/// Reads and checks public key files (`--trust`): a typo must fail the kit, not every boot.
pub fn read_trusted_keys(paths: &[PathBuf]) -> Result<Vec<crate::image::signature::PublicKey>, KitError> {
    let mut keys: Vec<crate::image::signature::PublicKey> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).at(path)?;
        let key = crate::image::signature::PublicKey::parse(&text, &path.display().to_string()).map_err(|e| {
            KitError::BadInput(format!(
                "--trust: {e}{}",
                if text.contains("[secret-key]") { " (give the .pub, never the .key)" } else { "" }
            ))
        })?;
        if !keys.iter().any(|k| k.id == key.id) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// The modules this machine runs: /proc/modules plus /sys/module entries that are
/// loadable modules of the target kernel (built-ins also appear in /sys/module).
fn host_modules(tables: &ModuleTables, host_root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Ok(text) = std::fs::read_to_string(host_root.join("proc/modules")) {
        names.extend(text.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string));
    }
    if let Ok(entries) = std::fs::read_dir(host_root.join("sys/module")) {
        names.extend(entries.flatten().map(|e| e.file_name().to_string_lossy().to_string()));
    }
    names.into_iter().filter(|n| tables.module_path(n).is_some()).collect()
}

/// Expands selectors into module names; returns the names and the selectors that
/// matched nothing (reported, not fatal: kernels differ in what they build as modules).
fn expand(tables: &ModuleTables, selectors: &[SelectorLine]) -> (BTreeSet<String>, Vec<String>) {
    let mut names = BTreeSet::new();
    let mut unmatched = Vec::new();
    for line in selectors {
        let before = names.len();
        let mut builtin = false;
        match &line.selector {
            Selector::Module(name) => {
                if tables.module_path(name).is_some() {
                    names.insert(name.clone());
                } else {
                    builtin = tables.is_builtin(name);
                }
            }
            Selector::PathGlob(glob) => {
                for m in tables.modules() {
                    if tables.module_path(m).is_some_and(|p| selection::glob_match(glob, &p.to_string_lossy())) {
                        names.insert(m.to_string());
                    }
                }
            }
            Selector::Alias(alias) => {
                for m in tables.resolve(alias) {
                    if tables.module_path(&m).is_some() {
                        names.insert(m);
                    } else {
                        builtin = true;
                    }
                }
            }
        }
        if names.len() == before && !builtin && !matches!(&line.selector, Selector::Module(n) if names.contains(n)) {
            unmatched.push(format!("{}: {:?} matches no module of this kernel", line.origin, line.selector));
        }
    }
    (names, unmatched)
}

/// Adds every module's dependencies and soft dependencies, until nothing changes.
pub fn closure(tables: &ModuleTables, roots: &BTreeSet<String>) -> BTreeSet<String> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().cloned().collect();
    while let Some(name) = todo.pop() {
        if done.contains(&name) || tables.module_path(&name).is_none() {
            continue;
        }
        for dep in tables.load_order(&name) {
            if !done.contains(&dep) {
                todo.push(dep);
            }
        }
        let (pre, post) = tables.softdeps(&name);
        for soft in pre.into_iter().chain(post) {
            for m in tables.resolve(&soft) {
                if !done.contains(&m) {
                    todo.push(m);
                }
            }
        }
        done.insert(name);
    }
    done
}

fn is_static_elf(path: &Path) -> Result<bool, KitError> {
    let bytes = std::fs::read(path).at(path)?;
    let elf =
        goblin::elf::Elf::parse(&bytes).map_err(|e| KitError::BadInput(format!("{} is not an ELF executable: {e}", path.display())))?;
    Ok(elf.interpreter.is_none())
}

fn find_busybox(explicit: Option<&Path>) -> Result<PathBuf, KitError> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec![PathBuf::from("/bin/busybox"), PathBuf::from("/usr/bin/busybox")],
    };
    let found = candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| KitError::MissingTool { tool: "busybox".into(), package: "busybox-static".into() })?;
    if !is_static_elf(&found)? {
        return Err(KitError::BadInput(format!(
            "{} is linked dynamically and cannot run in the initrd: install busybox-static",
            found.display()
        )));
    }
    Ok(found)
}

pub fn build_initrd(opts: &InitrdOptions) -> Result<InitrdReport, KitError> {
    let trusted = read_trusted_keys(&opts.trust)?;
    let release_dir = &opts.modules;
    if !release_dir.is_dir() {
        return Err(KitError::BadInput(format!("module directory {} does not exist", release_dir.display())));
    }
    let release = release_dir
        .canonicalize()
        .at(release_dir)?
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| KitError::BadInput(format!("{} has no release name", release_dir.display())))?;
    let init = match &opts.init {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| KitError::BadInput(format!("cannot find the viver binary for /init: {e}")))?,
    };
    if !init.is_file() {
        return Err(KitError::BadInput(format!("/init binary {} does not exist", init.display())));
    }
    if !is_static_elf(&init)? {
        log::warn!("{} is dynamically linked: as /init it will not run (build with cargo build --release)", init.display());
    }

    // What to include. Selections by name and path need no module read: the tables are
    // then built from the selected modules and what they need only (reading all ~4000,
    // decompressing .ko.xz, is what made a Debian 13 initrd take seconds). A selection
    // by alias needs every module's aliases: the full tables.
    let only: Option<&[&str]> = if opts.host_only { Some(&selection::HOST_ONLY_LISTS) } else { None };
    let mut selectors = selection::load_lists(opts.lists.as_deref(), only)?;
    selectors.extend(
        opts.add_modules.iter().map(|m| SelectorLine { selector: Selector::Module(m.replace('-', "_")), origin: "--add-module".into() }),
    );
    let tables_error = |e: crate::hardware::HwError| KitError::Tables { release_dir: release_dir.clone(), message: e.to_string() };
    let by_alias = selectors.iter().any(|l| matches!(l.selector, Selector::Alias(_)));
    let skeleton = if by_alias { None } else { Some(ModuleTables::skeleton(release_dir).map_err(tables_error)?) };
    let (tables, warnings) = match &skeleton {
        Some(skeleton) => {
            let (mut roots, _) = expand(skeleton, &selectors);
            if opts.host_only {
                roots.extend(host_modules(skeleton, &opts.host_root));
            }
            ModuleTables::build_closure(release_dir, &roots).map_err(tables_error)?
        }
        None => ModuleTables::build(release_dir).map_err(tables_error)?,
    };
    for w in &warnings {
        log::debug!("{w}");
    }
    let listing = skeleton.as_ref().unwrap_or(&tables);
    if listing.modules().next().is_none() {
        return Err(KitError::BadInput(format!(
            "{} holds no kernel modules (*.ko): give --modules /lib/modules/RELEASE of an installed kernel",
            release_dir.display()
        )));
    }
    let (mut roots, unmatched) = expand(listing, &selectors);
    if let Some(bad) = opts.add_modules.iter().find(|m| listing.module_path(m).is_none() && !listing.is_builtin(m)) {
        return Err(KitError::BadInput(format!("--add-module {bad}: no such module in {}", release_dir.display())));
    }
    if opts.host_only {
        roots.extend(host_modules(listing, &opts.host_root));
    }
    let modules = closure(&tables, &roots);

    // The archive.
    let mut archive = Archive::new();
    for d in ["dev", "proc", "sys", "run", "root", "etc", "bin", "sbin"] {
        archive.dir(d);
    }
    archive.file("tmp", 0o1777, Content::Dir);
    let lib = format!("lib/modules/{release}");
    archive.dir(&lib);
    archive.file("init", 0o755, Content::HostFile(init.clone()));
    // The kernel's request_module() runs /sbin/modprobe; /init answers to that name.
    archive.file("sbin/modprobe", 0o777, Content::Symlink("/init".into()));
    archive.file("dev/console", 0o600, Content::CharDevice { major: 5, minor: 1 });
    archive.file("dev/null", 0o666, Content::CharDevice { major: 1, minor: 3 });
    for m in &modules {
        if let Some(rel) = tables.module_path(m) {
            archive.file(&format!("{lib}/{}", rel.to_string_lossy()), 0o644, Content::HostFile(release_dir.join(rel)));
        }
    }
    let scratch = ScratchDir::new("initrd")?;
    let table_dir = scratch.path.join("tables");
    tables.subset(&modules).write(&table_dir).map_err(|e| KitError::Tables { release_dir: release_dir.clone(), message: e.to_string() })?;
    let mut table_files: Vec<String> =
        std::fs::read_dir(&table_dir).at(&table_dir)?.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    table_files.sort();
    for name in table_files {
        let bytes = std::fs::read(table_dir.join(&name)).at(&table_dir.join(&name))?;
        archive.file(&format!("{lib}/{name}"), 0o644, Content::Bytes(bytes));
    }
    // The kernel's own lists of built-in modules travel unchanged.
    for name in ["modules.builtin", "modules.builtin.modinfo"] {
        let src = release_dir.join(name);
        if src.is_file() {
            archive.file(&format!("{lib}/{name}"), 0o644, Content::HostFile(src));
        }
    }
    if opts.rescue_shell {
        let busybox = find_busybox(opts.busybox.as_deref())?;
        archive.file("bin/busybox", 0o755, Content::HostFile(busybox));
        archive.file("bin/sh", 0o777, Content::Symlink("busybox".into()));
    }
    let (files_text, files_origin) = match &opts.files_list {
        Some(p) => (std::fs::read_to_string(p).at(p)?, p.display().to_string()),
        None => (selection::BUILTIN_FILES_LIST.to_string(), "initramfs/files.list".to_string()),
    };
    if !trusted.is_empty() {
        // Named by id, written in the one format the boot parses.
        let dir = crate::image::trust::TRUSTED_DIR.trim_start_matches('/');
        archive.dir(dir);
        for key in &trusted {
            archive.file(&format!("{dir}/{}.pub", key.id), 0o644, Content::Bytes(key.to_text().into_bytes()));
        }
    }
    for extra in selection::parse_files_list(&files_text, &files_origin)? {
        let src = PathBuf::from(&extra.source);
        let meta = std::fs::metadata(&src).at(&src)?;
        let mode = extra.mode.unwrap_or_else(|| std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777);
        archive.file(&extra.dest, mode, Content::HostFile(src));
    }

    // Made before the output is opened: no microcode is an error, not half an initrd.
    let early = opts.microcode.as_deref().map(super::microcode::early_cpio).transpose()?;

    // Write: fixed mtime, gzip header without time or name, so rebuilds are identical.
    let mtime = u32::try_from(source_date_epoch().unwrap_or(0)).unwrap_or(0);
    let out = PendingOutput::new(&opts.output)?;
    let file = std::fs::File::create(&out.temp_path).at(&out.temp_path)?;
    let mut buffered = std::io::BufWriter::with_capacity(1 << 20, file);
    // The early microcode goes first and uncompressed: the kernel's loader reads it
    // before it unpacks anything.
    if let Some(early) = &early {
        buffered.write_all(&early.cpio).at(&out.temp_path)?;
    }
    let unpacked_size = match opts.compress {
        InitrdCompression::Gzip => {
            let gz = flate2::GzBuilder::new().mtime(0).write(buffered, flate2::Compression::default());
            let (gz, size) = archive.write(gz, mtime)?;
            let buffered = gz.finish().at(&out.temp_path)?;
            finish_file(buffered, &out.temp_path)?;
            size
        }
        InitrdCompression::None => {
            let (buffered, size) = archive.write(buffered, mtime)?;
            finish_file(buffered, &out.temp_path)?;
            size
        }
    };
    let compressed_size = std::fs::metadata(&out.temp_path).at(&out.temp_path)?.len();
    out.commit()?;
    let microcode = early.map(|e| e.summary).unwrap_or_default();
    let trusted = trusted.iter().map(|k| k.id.to_string()).collect();
    Ok(InitrdReport { compressed_size, unpacked_size, modules, entries: archive.len(), unmatched, microcode, trusted })
}

fn finish_file(buffered: std::io::BufWriter<std::fs::File>, path: &Path) -> Result<(), KitError> {
    let mut file = buffered.into_inner().map_err(|e| KitError::io(path, e.into_error()))?;
    file.flush().at(path)?;
    file.sync_all().at(path)
}

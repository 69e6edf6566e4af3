//! The kernel's module tables (what depmod writes under /lib/modules/<release>):
//! aliases, dependencies, soft dependencies, builtins, paths. They are either built
//! from the .ko files themselves ([`ModuleTables::build`], depmod-compatible output)
//! or loaded from depmod's text files ([`ModuleTables::load`], legacy maps included).

use super::error::{HwError, TableWarning};
use super::fnmatch::{fnmatch, literal_prefix};
use super::legacy::LegacyMaps;
use super::modinfo::{module_name_from_path, normalize_module_name, parse_module_file, ModuleFacts, MODULE_EXTENSIONS};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

const ALIAS_HEADER: &str = "# Aliases extracted from modules themselves.\n";
const SOFTDEP_HEADER: &str = "# Soft dependencies extracted from modules themselves.\n";

#[derive(Debug, Clone)]
struct ModuleEntry {
    name: String,
    /// Relative to the release directory, as written in modules.dep.
    path: PathBuf,
    /// All (transitive) dependencies, in modules.dep order: the last one loads first.
    deps: Vec<usize>,
    /// softdep values ("pre: a b post: c") in .modinfo order.
    softdeps: Vec<String>,
}

#[derive(Debug, Clone)]
struct Alias {
    /// As the module declares it (written back verbatim).
    pattern: String,
    /// '-' replaced by '_' outside brackets, as kmod indexes it.
    normalized: String,
    module: String,
}

/// Patterns grouped by their literal prefix (the part before the first wildcard,
/// which always begins with the bus: "pci:v00008086d", "usb:v0781p", "fs-ext4").
/// A lookup tries each prefix of the modalias, so only patterns that can match
/// are run through fnmatch instead of all ~26,000.
#[derive(Debug, Clone, Default)]
struct AliasIndex {
    by_prefix: HashMap<String, Vec<u32>>,
    /// Longest literal prefix seen: no need to try longer prefixes of a key.
    longest: usize,
}

impl AliasIndex {
    fn build(aliases: &[Alias]) -> AliasIndex {
        let mut index = AliasIndex::default();
        for (i, a) in aliases.iter().enumerate() {
            let prefix = literal_prefix(&a.normalized);
            index.longest = index.longest.max(prefix.len());
            index.by_prefix.entry(prefix.to_string()).or_default().push(i as u32);
        }
        index
    }

    /// Indices of the aliases whose pattern matches `key` (already normalized).
    fn matches<'a>(&'a self, aliases: &'a [Alias], key: &'a str) -> impl Iterator<Item = usize> + 'a {
        let max = self.longest.min(key.len());
        (0..=max)
            .filter(move |l| key.is_char_boundary(*l))
            .filter_map(move |l| self.by_prefix.get(&key[..l]))
            .flatten()
            .map(|i| *i as usize)
            .filter(move |i| aliases.get(*i).is_some_and(|a| fnmatch(a.normalized.as_bytes(), key.as_bytes())))
    }
}

/// kmod's alias_normalize: '-' becomes '_' outside `[...]`; an unbalanced bracket
/// makes the alias invalid (modprobe refuses it, so do we).
pub fn normalize_alias(alias: &str) -> Option<String> {
    let mut out = String::with_capacity(alias.len());
    let mut chars = alias.chars();
    while let Some(c) = chars.next() {
        match c {
            '-' => out.push('_'),
            ']' => return None,
            '[' => {
                out.push('[');
                loop {
                    let c = chars.next()?;
                    out.push(c);
                    if c == ']' {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// depmod's underscores(): like [`normalize_alias`] but keeps going on odd brackets.
fn normalize_pattern(pattern: &str) -> String {
    normalize_alias(pattern).unwrap_or_else(|| pattern.replace('-', "_"))
}

fn make_alias(pattern: &str, module: &str) -> Alias {
    Alias { pattern: pattern.to_string(), normalized: normalize_pattern(pattern), module: normalize_module_name(module) }
}

pub use super::matches::Match;

#[derive(Debug, Clone, Default)]
pub struct ModuleTables {
    modules: Vec<ModuleEntry>,
    by_name: HashMap<String, usize>,
    aliases: Vec<Alias>,
    alias_index: AliasIndex,
    /// Aliases of modules built into the kernel (modules.builtin.modinfo).
    builtin_aliases: Vec<Alias>,
    builtin_alias_index: AliasIndex,
    builtin_modinfo_raw: Vec<u8>,
    builtin_lines: Vec<String>,
    builtins: BTreeSet<String>,
    order_lines: Vec<String>,
    legacy: LegacyMaps,
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, HwError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HwError::io(path, e)),
    }
}

fn lines_of(bytes: &[u8]) -> impl Iterator<Item = (usize, String)> + '_ {
    bytes.split(|b| *b == b'\n').enumerate().map(|(i, l)| (i + 1, String::from_utf8_lossy(l).trim_end_matches('\r').to_string()))
}

/// Files under the release directory that are modules, sorted by path (so the
/// result does not depend on readdir order), skipping `build` and `source`.
fn find_module_files(release_dir: &Path, warnings: &mut Vec<TableWarning>) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = release_dir.join(&rel);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                warnings.push(TableWarning::at(&dir, None, format!("cannot read directory: {e}")));
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if rel.as_os_str().is_empty() && (name == "build" || name == "source") {
                continue;
            }
            let child = rel.join(&name);
            // Follow symlinks like depmod does (fstatat), so a tree of links works too.
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(child);
            } else if meta.is_file() && MODULE_EXTENSIONS.iter().any(|(ext, _)| name.len() > ext.len() && name.ends_with(ext)) {
                found.push(child.to_string_lossy().to_string());
            }
        }
    }
    found.sort();
    found
}

/// Reads the .modinfo of every module, on all cores.
fn read_all_modules(release_dir: &Path, paths: &[String]) -> Vec<Result<ModuleFacts, String>> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<ModuleFacts, String>>> = (0..paths.len()).map(|_| None).collect();
    let chunks: Vec<Vec<(usize, Result<ModuleFacts, String>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(rel) = paths.get(i) else { break };
                        let r = parse_module_file(&release_dir.join(rel));
                        done.push((i, r));
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    for (i, r) in chunks.into_iter().flatten() {
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(r);
        }
    }
    results.into_iter().map(|r| r.unwrap_or_else(|| Err("module reader thread failed".into()))).collect()
}

impl ModuleTables {
    /// Build from the .ko/.ko.gz/.ko.xz/.ko.zst files under release_dir (+ modules.builtin,
    /// modules.order there). modules.alias and modules.dep written from the result equal
    /// depmod's (same module order, same dependency order within each line).
    pub fn build(release_dir: &Path) -> Result<(ModuleTables, Vec<TableWarning>), HwError> {
        let mut warnings = Vec::new();
        let mut t = ModuleTables::default();
        t.read_builtin_files(release_dir, &mut warnings)?;
        let files = find_module_files(release_dir, &mut warnings);
        if files.is_empty() {
            return Err(HwError::NoModules(release_dir.to_path_buf()));
        }
        let infos = read_all_modules(release_dir, &files);
        Self::from_facts(release_dir, t, files, infos, warnings)
    }

    /// The modules of release_dir by name and path only (nothing read from the files):
    /// enough to select modules by name or path before [`ModuleTables::build_closure`].
    pub fn skeleton(release_dir: &Path) -> Result<ModuleTables, HwError> {
        let mut warnings = Vec::new();
        let mut t = ModuleTables::default();
        t.read_builtin_files(release_dir, &mut warnings)?;
        let files = find_module_files(release_dir, &mut warnings);
        if files.is_empty() {
            return Err(HwError::NoModules(release_dir.to_path_buf()));
        }
        for path in files {
            let Some(name) = module_name_from_path(&path) else {
                continue;
            };
            if let Some(&i) = t.by_name.get(&name) {
                // Like build(): "updates/" wins a duplicate name.
                if path.starts_with("updates/") {
                    if let Some(m) = t.modules.get_mut(i) {
                        m.path = PathBuf::from(path);
                    }
                }
                continue;
            }
            t.by_name.insert(name.clone(), t.modules.len());
            t.modules.push(ModuleEntry { name, path: PathBuf::from(path), deps: Vec::new(), softdeps: Vec::new() });
        }
        t.reindex();
        Ok(t)
    }

    /// [`ModuleTables::build`] for `roots` and what they need only: modules are read
    /// (decompressed) as the closure grows, following modpost's `depends=` and the
    /// softdeps (by module name, or an alias of a module named like it), so a kit
    /// initrd reads ~150 modules instead of ~4000. Dependencies are then computed from
    /// the symbols as build() does; the set is closed, so they are the same.
    pub fn build_closure(release_dir: &Path, roots: &BTreeSet<String>) -> Result<(ModuleTables, Vec<TableWarning>), HwError> {
        let mut warnings = Vec::new();
        let mut t = ModuleTables::default();
        t.read_builtin_files(release_dir, &mut warnings)?;
        let skeleton = Self::skeleton(release_dir)?;
        let path_of = |name: &str| skeleton.module_path(name).map(|p| p.to_string_lossy().to_string());
        let mut queued: HashSet<String> = HashSet::new();
        let mut todo: Vec<String> = Vec::new();
        let push = |name: &str, todo: &mut Vec<String>, queued: &mut HashSet<String>| {
            let name = normalize_module_name(name);
            if let Some(path) = path_of(&name) {
                if queued.insert(name) {
                    todo.push(path);
                }
            }
        };
        for r in roots {
            push(r, &mut todo, &mut queued);
        }
        let mut files: Vec<String> = Vec::new();
        let mut infos: Vec<Result<ModuleFacts, String>> = Vec::new();
        while !todo.is_empty() {
            let batch = std::mem::take(&mut todo);
            let results = read_all_modules(release_dir, &batch);
            for facts in results.iter().flatten() {
                for (k, v) in &facts.modinfo {
                    match k.as_str() {
                        "depends" => {
                            for dep in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                                push(dep, &mut todo, &mut queued);
                            }
                        }
                        "softdep" => {
                            for soft in v.split_whitespace().filter(|w| !w.ends_with(':')) {
                                let soft = normalize_module_name(soft);
                                if skeleton.module_path(&soft).is_some() {
                                    push(&soft, &mut todo, &mut queued);
                                } else {
                                    // An alias ("crc32c", "xxhash64", "blake2b-256"): its
                                    // providers are named like it ("xxhash_generic") or are
                                    // crypto modules; those are read, closure() resolves it.
                                    let stem = soft.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('_');
                                    let stem = if stem.is_empty() { soft.as_str() } else { stem };
                                    for m in skeleton.modules() {
                                        let crypto = skeleton
                                            .module_path(m)
                                            .is_some_and(|p| p.starts_with("kernel/crypto") || p.starts_with("kernel/arch/x86/crypto"));
                                        if m.starts_with(stem) || crypto {
                                            push(m, &mut todo, &mut queued);
                                        }
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            files.extend(batch);
            infos.extend(results);
        }
        if files.is_empty() {
            return Err(HwError::NoModules(release_dir.to_path_buf()));
        }
        // build()'s input order: sorted by path.
        let mut pairs: Vec<(String, Result<ModuleFacts, String>)> = files.into_iter().zip(infos).collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let (files, infos): (Vec<String>, Vec<_>) = pairs.into_iter().unzip();
        Self::from_facts(release_dir, t, files, infos, warnings)
    }

    fn from_facts(
        release_dir: &Path,
        mut t: ModuleTables,
        files: Vec<String>,
        infos: Vec<Result<ModuleFacts, String>>,
        mut warnings: Vec<TableWarning>,
    ) -> Result<(ModuleTables, Vec<TableWarning>), HwError> {
        // One module per name; like depmod's default search order, "updates/" wins.
        struct Raw {
            name: String,
            path: String,
            info: Vec<(String, String)>,
            exports: Vec<String>,
            undefined: Vec<String>,
        }
        let mut raws: Vec<Raw> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (path, info) in files.into_iter().zip(infos) {
            let Some(name) = module_name_from_path(&path) else {
                continue;
            };
            let ModuleFacts { modinfo: info, exports, undefined } = match info {
                Ok(i) => i,
                Err(reason) => {
                    warnings.push(TableWarning::at(release_dir.join(&path), None, format!("module {name} skipped: {reason}")));
                    continue;
                }
            };
            if !info.iter().any(|(k, _)| k == "name") {
                warnings.push(TableWarning::at(release_dir.join(&path), None, format!("module {name} skipped: .modinfo has no name=")));
                continue;
            }
            if let Some(&i) = seen.get(&name) {
                let old_is_update = raws[i].path.starts_with("updates/");
                if old_is_update || !path.starts_with("updates/") {
                    warnings.push(TableWarning::at(
                        release_dir.join(&path),
                        None,
                        format!("module {name} also at {}; ignored", raws[i].path),
                    ));
                    continue;
                }
                raws[i] = Raw { name, path, info, exports, undefined };
                continue;
            }
            seen.insert(name.clone(), raws.len());
            raws.push(Raw { name, path, info, exports, undefined });
        }

        // depmod's module order: modules.order first (in its order), the rest after.
        // Like depmod, lines are matched by module name: modules.order says "x.ko" even
        // when the installed file is x.ko.xz or x.ko.zst.
        let order_pos: HashMap<String, usize> =
            t.order_lines.iter().enumerate().rev().filter_map(|(i, l)| Some((module_name_from_path(l)?, i))).collect();
        let mut idx: Vec<usize> = (0..raws.len()).collect();
        idx.sort_by_key(|&i| (order_pos.get(raws[i].name.as_str()).copied().unwrap_or(usize::MAX), i));
        let raws: Vec<Raw> = {
            let mut slots: Vec<Option<Raw>> = raws.into_iter().map(Some).collect();
            idx.iter().filter_map(|&i| slots.get_mut(i).and_then(|s| s.take())).collect()
        };

        let by_name: HashMap<String, usize> = raws.iter().enumerate().map(|(i, r)| (r.name.clone(), i)).collect();
        // Who exports what; like depmod's symbol hash, a later module wins a duplicate.
        let mut owner: HashMap<&str, usize> = HashMap::new();
        for (i, r) in raws.iter().enumerate() {
            for sym in &r.exports {
                owner.insert(sym.as_str(), i);
            }
        }
        let mut direct: Vec<Vec<usize>> = Vec::with_capacity(raws.len());
        for (i, r) in raws.iter().enumerate() {
            let mut deps = Vec::new();
            for (k, v) in &r.info {
                if k == "alias" {
                    t.aliases.push(make_alias(v, &r.name));
                }
            }
            // depmod's dependencies: owners of the undefined symbols, in symbol table order.
            for sym in &r.undefined {
                let sym = sym.strip_prefix('.').unwrap_or(sym);
                if let Some(&d) = owner.get(sym) {
                    if d != i && !deps.contains(&d) {
                        deps.push(d);
                    }
                }
            }
            // A module without symbols (stripped) still has modpost's depends= list.
            if r.undefined.is_empty() {
                for (_, v) in r.info.iter().filter(|(k, _)| k == "depends") {
                    for dep in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                        match by_name.get(&normalize_module_name(dep)) {
                            Some(&d) if !deps.contains(&d) => deps.push(d),
                            Some(_) => {}
                            None => {
                                warnings.push(TableWarning::at(&r.path, None, format!("module {} depends on unknown module {dep}", r.name)))
                            }
                        }
                    }
                }
            }
            direct.push(deps);
        }
        let (sorted_deps, in_cycle) = depmod_dependency_order(&direct);
        for (i, r) in raws.iter().enumerate() {
            if in_cycle[i] {
                warnings.push(TableWarning::at(
                    &r.path,
                    None,
                    format!("module {} is in a dependency cycle; left out of modules.dep", r.name),
                ));
            }
        }
        for (i, r) in raws.into_iter().enumerate() {
            let softdeps = r.info.iter().filter(|(k, _)| k == "softdep").map(|(_, v)| v.clone()).collect();
            let deps = sorted_deps.get(i).cloned().unwrap_or_default();
            t.by_name.insert(r.name.clone(), t.modules.len());
            t.modules.push(ModuleEntry { name: r.name, path: PathBuf::from(r.path), deps, softdeps });
        }
        // Modules in a cycle cannot be loaded in any order: they are dropped (depmod does too).
        let cyclic: HashSet<String> =
            in_cycle.iter().enumerate().filter(|(_, c)| **c).filter_map(|(i, _)| t.modules.get(i).map(|m| m.name.clone())).collect();
        if !cyclic.is_empty() {
            let keep: BTreeSet<String> = t.modules.iter().map(|m| m.name.clone()).filter(|n| !cyclic.contains(n)).collect();
            let aliases_all = std::mem::take(&mut t.aliases);
            t = t.subset(&keep);
            // subset() keeps only aliases of kept modules, which is what depmod writes too...
            // except depmod still lists aliases of cyclic modules; keep them for equality.
            t.aliases = aliases_all;
        }
        t.reindex();
        Ok((t, warnings))
    }

    /// Load depmod's text tables from release_dir (what /init does at boot; legacy maps too).
    pub fn load(release_dir: &Path) -> Result<(ModuleTables, Vec<TableWarning>), HwError> {
        let mut warnings = Vec::new();
        let mut t = ModuleTables::default();
        t.read_builtin_files(release_dir, &mut warnings)?;

        let dep_file = release_dir.join("modules.dep");
        let dep_bytes = read_optional(&dep_file)?;
        if let Some(bytes) = &dep_bytes {
            let mut dep_paths: Vec<Vec<String>> = Vec::new();
            for (n, line) in lines_of(bytes) {
                if line.trim().is_empty() || line.starts_with('#') {
                    continue;
                }
                let (path, name, deps) = match parse_dep_line(&line) {
                    Some(Ok(v)) => v,
                    Some(Err(e)) => {
                        warnings.push(TableWarning::at(&dep_file, Some(n), format!("{e}; skipped")));
                        continue;
                    }
                    None => continue,
                };
                if t.by_name.contains_key(&name) {
                    warnings.push(TableWarning::at(&dep_file, Some(n), format!("module {name} listed twice; later line ignored")));
                    continue;
                }
                t.by_name.insert(name.clone(), t.modules.len());
                t.modules.push(ModuleEntry { name, path: PathBuf::from(path), deps: Vec::new(), softdeps: Vec::new() });
                dep_paths.push(deps);
            }
            let by_path: HashMap<PathBuf, usize> = t.modules.iter().enumerate().map(|(i, m)| (m.path.clone(), i)).collect();
            for (i, deps) in dep_paths.into_iter().enumerate() {
                let mut resolved = Vec::new();
                for d in deps {
                    match by_path.get(Path::new(&d)) {
                        Some(&j) => resolved.push(j),
                        None => {
                            let module = t.modules.get(i).map(|m| m.name.clone()).unwrap_or_default();
                            warnings.push(TableWarning::at(
                                &dep_file,
                                None,
                                format!("module {module} depends on {d}, which has no line of its own; ignored"),
                            ));
                        }
                    }
                }
                if let Some(m) = t.modules.get_mut(i) {
                    m.deps = resolved;
                }
            }
        }

        let alias_file = release_dir.join("modules.alias");
        let alias_bytes = read_optional(&alias_file)?;
        if let Some(bytes) = &alias_bytes {
            for (n, line) in lines_of(bytes) {
                if line.trim().is_empty() || line.starts_with('#') {
                    continue;
                }
                match parse_alias_line(&line) {
                    Some(Ok((pattern, module))) => t.aliases.push(make_alias(pattern, module)),
                    Some(Err(e)) => warnings.push(TableWarning::at(&alias_file, Some(n), format!("{e}; skipped"))),
                    None => {}
                }
            }
        }

        let softdep_file = release_dir.join("modules.softdep");
        if let Some(bytes) = read_optional(&softdep_file)? {
            for (n, line) in lines_of(&bytes) {
                if line.trim().is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut parts = line.splitn(3, char::is_whitespace);
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("softdep"), Some(module), Some(rest)) => match t.by_name.get(&normalize_module_name(module)) {
                        Some(&i) => t.modules[i].softdeps.push(rest.trim().to_string()),
                        None => {
                            warnings.push(TableWarning::at(&softdep_file, Some(n), format!("softdep for unknown module {module}; skipped")))
                        }
                    },
                    _ => warnings.push(TableWarning::at(
                        &softdep_file,
                        Some(n),
                        format!("expected \"softdep MODULE ...\", got {line:?}; skipped"),
                    )),
                }
            }
        }

        t.legacy = LegacyMaps::load(release_dir, &mut warnings)?;
        if dep_bytes.is_none() && alias_bytes.is_none() && t.legacy.is_empty() {
            return Err(HwError::NoModules(release_dir.to_path_buf()));
        }
        t.reindex();
        Ok((t, warnings))
    }

    /// modules.builtin, modules.builtin.modinfo and modules.order (all optional).
    fn read_builtin_files(&mut self, release_dir: &Path, warnings: &mut Vec<TableWarning>) -> Result<(), HwError> {
        let builtin_file = release_dir.join("modules.builtin");
        if let Some(bytes) = read_optional(&builtin_file)? {
            for (n, line) in lines_of(&bytes) {
                if line.is_empty() {
                    continue;
                }
                match module_name_from_path(&line) {
                    Some(name) => {
                        self.builtins.insert(name);
                        self.builtin_lines.push(line);
                    }
                    None => warnings.push(TableWarning::at(&builtin_file, Some(n), format!("{line:?} is not a module path; skipped"))),
                }
            }
        }
        if let Some(bytes) = read_optional(&release_dir.join("modules.builtin.modinfo"))? {
            for (k, v) in super::modinfo::split_modinfo(&bytes) {
                if let Some((module, "alias")) = k.split_once('.') {
                    self.builtin_aliases.push(make_alias(&v, module));
                }
            }
            self.builtin_modinfo_raw = bytes;
        }
        if let Some(bytes) = read_optional(&release_dir.join("modules.order"))? {
            self.order_lines = lines_of(&bytes).map(|(_, l)| l).filter(|l| !l.is_empty()).collect();
        }
        Ok(())
    }

    fn reindex(&mut self) {
        self.by_name = self.modules.iter().enumerate().map(|(i, m)| (m.name.clone(), i)).collect();
        self.alias_index = AliasIndex::build(&self.aliases);
        self.builtin_alias_index = AliasIndex::build(&self.builtin_aliases);
    }

    /// Only these modules (names with '_'), for an initrd holding a subset; deps must be inside the set.
    pub fn subset(&self, names: &BTreeSet<String>) -> ModuleTables {
        let names: BTreeSet<String> = names.iter().map(|n| normalize_module_name(n)).collect();
        let kept: Vec<usize> = (0..self.modules.len()).filter(|&i| names.contains(&self.modules[i].name)).collect();
        let new_pos: HashMap<usize, usize> = kept.iter().enumerate().map(|(new, old)| (*old, new)).collect();
        let modules: Vec<ModuleEntry> = kept
            .iter()
            .map(|&i| {
                let m = &self.modules[i];
                ModuleEntry { deps: m.deps.iter().filter_map(|d| new_pos.get(d).copied()).collect(), ..m.clone() }
            })
            .collect();
        let mut t = ModuleTables {
            aliases: self.aliases.iter().filter(|a| names.contains(&a.module)).cloned().collect(),
            modules,
            builtin_aliases: self.builtin_aliases.clone(),
            builtin_modinfo_raw: self.builtin_modinfo_raw.clone(),
            builtin_lines: self.builtin_lines.clone(),
            builtins: self.builtins.clone(),
            // By name: "x.ko" in modules.order stands for x.ko.xz too.
            order_lines: self
                .order_lines
                .iter()
                .filter(|l| module_name_from_path(l).is_some_and(|n| names.contains(&n)))
                .cloned()
                .collect(),
            legacy: self.legacy.subset(&names),
            ..Default::default()
        };
        t.reindex();
        t
    }

    /// Write modules.alias, modules.dep, modules.softdep, modules.builtin, modules.order
    /// (depmod text format) into dir (and modules.builtin.modinfo when known).
    pub fn write(&self, dir: &Path) -> Result<(), HwError> {
        std::fs::create_dir_all(dir).map_err(|e| HwError::io(dir, e))?;
        let put = |name: &str, text: &[u8]| std::fs::write(dir.join(name), text).map_err(|e| HwError::io(dir.join(name), e));
        put("modules.dep", self.modules_dep_text().as_bytes())?;
        put("modules.alias", self.modules_alias_text().as_bytes())?;
        let mut soft = String::from(SOFTDEP_HEADER);
        for m in &self.modules {
            for s in &m.softdeps {
                soft.push_str(&format!("softdep {} {}\n", m.name, s));
            }
        }
        put("modules.softdep", soft.as_bytes())?;
        put("modules.builtin", lines_text(&self.builtin_lines).as_bytes())?;
        put("modules.order", lines_text(&self.order_lines).as_bytes())?;
        if !self.builtin_modinfo_raw.is_empty() {
            put("modules.builtin.modinfo", &self.builtin_modinfo_raw)?;
        }
        if !self.legacy.is_empty() {
            self.legacy.write(dir)?;
        }
        Ok(())
    }

    /// modules.dep as depmod writes it.
    pub fn modules_dep_text(&self) -> String {
        let mut out = String::new();
        for m in &self.modules {
            out.push_str(&m.path.to_string_lossy());
            out.push(':');
            for d in &m.deps {
                if let Some(dep) = self.modules.get(*d) {
                    out.push(' ');
                    out.push_str(&dep.path.to_string_lossy());
                }
            }
            out.push('\n');
        }
        out
    }

    /// modules.alias as depmod writes it.
    pub fn modules_alias_text(&self) -> String {
        let mut out = String::from(ALIAS_HEADER);
        for a in &self.aliases {
            out.push_str(&format!("alias {} {}\n", a.pattern, a.module));
        }
        out
    }

    /// Module names for a modalias (or module name), in kmod's order, each once.
    pub fn resolve(&self, modalias: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in self.resolve_explained(modalias) {
            if !out.contains(&m.module) {
                out.push(m.module);
            }
        }
        out
    }

    /// Every match kmod's lookup yields, in its order: `modprobe --resolve-alias`
    /// prints a module once per alias line that matched it, and so do we.
    /// Follows kmod's lookup: module name, then modules.alias, then builtin aliases,
    /// then builtin names; the legacy maps when nothing else knows a PCI/USB device.
    pub fn resolve_explained(&self, modalias: &str) -> Vec<Match> {
        let Some(key) = normalize_alias(modalias) else {
            return Vec::new();
        };
        if self.by_name.contains_key(&key) {
            return vec![Match { module: key, why: "module name".into() }];
        }
        let found = self.match_aliases(&self.aliases, &self.alias_index, &key, false);
        if !found.is_empty() {
            return found;
        }
        // A kernel with only the legacy maps: they stand where modules.alias would.
        if !self.legacy.is_empty() {
            let found = self.resolve_legacy(modalias);
            if !found.is_empty() {
                return found;
            }
        }
        let found = self.match_aliases(&self.builtin_aliases, &self.builtin_alias_index, &key, true);
        if !found.is_empty() {
            return found;
        }
        if self.builtins.contains(&key) {
            return vec![Match { module: key, why: "builtin module name".into() }];
        }
        Vec::new()
    }

    /// PCI/USB drivers from modules.pcimap/usbmap, plus the storage stack the
    /// controller's class calls for (only modules this kernel has).
    fn resolve_legacy(&self, modalias: &str) -> Vec<Match> {
        let mut out: Vec<Match> = Vec::new();
        for m in self.legacy.resolve(modalias) {
            let exists = self.by_name.contains_key(&m.module) || self.builtins.contains(&m.module);
            if exists && !out.iter().any(|o| o.module == m.module) {
                out.push(m);
            }
        }
        out
    }

    /// Matching aliases in kmod's order: depmod gives each alias the priority of its
    /// module's position (modules.order), and a (pattern, module) pair counts
    /// as often as it is listed. Builtin aliases all have priority 0, where kmod's index puts later ones first.
    fn match_aliases(&self, aliases: &[Alias], index: &AliasIndex, key: &str, builtin: bool) -> Vec<Match> {
        let mut hits: Vec<(usize, std::cmp::Reverse<usize>)> = index
            .matches(aliases, key)
            .map(|i| {
                let prio = if builtin { 0 } else { self.by_name.get(&aliases[i].module).copied().unwrap_or(usize::MAX) };
                (prio, std::cmp::Reverse(i))
            })
            .collect();
        hits.sort();
        hits.into_iter()
            .map(|(_, std::cmp::Reverse(i))| Match { module: aliases[i].module.clone(), why: format!("alias {}", aliases[i].pattern) })
            .collect()
    }

    /// Deps first (in load order), then the module itself. Empty for an unknown module.
    pub fn load_order(&self, module: &str) -> Vec<String> {
        let Some(&i) = self.by_name.get(&normalize_module_name(module)) else {
            return Vec::new();
        };
        let m = &self.modules[i];
        let mut out: Vec<String> = m.deps.iter().rev().filter_map(|d| self.modules.get(*d)).map(|d| d.name.clone()).collect();
        out.push(m.name.clone());
        out
    }

    /// Direct dependencies are not kept apart; this is the full list from modules.dep.
    pub fn dependencies(&self, module: &str) -> Vec<String> {
        let mut order = self.load_order(module);
        order.pop();
        order
    }

    /// softdep lines of a module: (pre, post) module names or aliases.
    pub fn softdeps(&self, module: &str) -> (Vec<String>, Vec<String>) {
        let (mut pre, mut post) = (Vec::new(), Vec::new());
        if let Some(&i) = self.by_name.get(&normalize_module_name(module)) {
            for s in &self.modules[i].softdeps {
                let mut into_pre = true;
                for w in s.split_whitespace() {
                    match w {
                        "pre:" => into_pre = true,
                        "post:" => into_pre = false,
                        w if into_pre => pre.push(w.to_string()),
                        w => post.push(w.to_string()),
                    }
                }
            }
        }
        (pre, post)
    }

    pub fn module_path(&self, module: &str) -> Option<&Path> {
        self.by_name.get(&normalize_module_name(module)).map(|&i| self.modules[i].path.as_path())
    }

    pub fn is_builtin(&self, module: &str) -> bool {
        self.builtins.contains(&normalize_module_name(module))
    }

    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.modules.iter().map(|m| m.name.as_str())
    }

    /// (pattern, module) of every modules.alias entry, in file order.
    pub fn aliases(&self) -> impl Iterator<Item = (&str, &str)> {
        self.aliases.iter().map(|a| (a.pattern.as_str(), a.module.as_str()))
    }

    /// True when PCI/USB detection runs on modules.pcimap/usbmap.
    pub fn uses_legacy_maps(&self) -> bool {
        !self.legacy.is_empty()
    }

    /// Replaces the legacy maps (tests, export-legacy round trips).
    pub fn set_legacy(&mut self, legacy: LegacyMaps) {
        self.legacy = legacy;
    }

    /// Drops modules.alias (to exercise the legacy-map path on a modern tree).
    pub fn without_aliases(&self) -> ModuleTables {
        let mut t = self.clone();
        t.aliases.clear();
        t.reindex();
        t
    }
}

/// depmod's files when the directory has them, else the tables built from the .ko
/// files; the warnings about skipped lines go to the log.
pub fn load_tables(release_dir: &std::path::Path) -> Result<ModuleTables, HwError> {
    let has_text = ["modules.dep", "modules.alias", "modules.pcimap", "modules.usbmap"].iter().any(|f| release_dir.join(f).exists());
    let (tables, warnings) = if has_text { ModuleTables::load(release_dir)? } else { ModuleTables::build(release_dir)? };
    for w in &warnings {
        log::warn!("hw: {w}");
    }
    Ok(tables)
}

/// One modules.alias line: Some(Ok((pattern, module))), Some(Err) when malformed,
/// None for comments and blank lines.
pub fn parse_alias_line(line: &str) -> Option<Result<(&str, &str), String>> {
    if line.trim().is_empty() || line.starts_with('#') {
        return None;
    }
    let mut words = line.split_whitespace();
    Some(match (words.next(), words.next(), words.next(), words.next()) {
        (Some("alias"), Some(pattern), Some(module), None) => Ok((pattern, module)),
        _ => Err(format!("expected \"alias PATTERN MODULE\", got {line:?}")),
    })
}

/// A parsed modules.dep line: (path relative to the release dir, module name, dep paths).
pub type DepLine = (String, String, Vec<String>);

/// One modules.dep line; Some(Err) when malformed, None for comments and blank lines.
pub fn parse_dep_line(line: &str) -> Option<Result<DepLine, String>> {
    if line.trim().is_empty() || line.starts_with('#') {
        return None;
    }
    let Some((path, deps)) = line.split_once(':') else {
        return Some(Err(format!("no ':' in {line:?}")));
    };
    let path = relative_module_path(path.trim());
    let Some(name) = module_name_from_path(&path) else {
        return Some(Err(format!("{path:?} is not a module file name")));
    };
    Some(Ok((path, name, deps.split_whitespace().map(relative_module_path).collect())))
}

fn lines_text(lines: &[String]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// 2.6-era modules.dep uses absolute paths (/lib/modules/<release>/kernel/...);
/// keep them relative to the release directory.
fn relative_module_path(path: &str) -> String {
    if let Some(pos) = path.find("/lib/modules/") {
        let rest = &path[pos + "/lib/modules/".len()..];
        if let Some((_, rel)) = rest.split_once('/') {
            return rel.to_string();
        }
    }
    path.to_string()
}

/// depmod's dependency ordering, step for step, so modules.dep lines come out
/// identical: a topological sort that pops modules without users from a stack
/// (in module order), then each module's transitive deps (collected depth-first)
/// sorted by that sort position. Returns the sorted deps and which modules sit in
/// a cycle (those depmod leaves out).
fn depmod_dependency_order(direct: &[Vec<usize>]) -> (Vec<Vec<usize>>, Vec<bool>) {
    let n = direct.len();
    let mut users = vec![0usize; n];
    for deps in direct {
        for &d in deps {
            if let Some(u) = users.get_mut(d) {
                *u += 1;
            }
        }
    }
    let mut remaining = users.clone();
    let mut roots: Vec<usize> = (0..n).filter(|&i| users[i] == 0).collect();
    let mut sort_idx = vec![usize::MAX; n];
    let mut sorted = 0usize;
    while let Some(src) = roots.pop() {
        sort_idx[src] = sorted;
        sorted += 1;
        for &d in &direct[src] {
            if let Some(r) = remaining.get_mut(d) {
                *r = r.saturating_sub(1);
                if *r == 0 {
                    roots.push(d);
                }
            }
        }
    }
    let in_cycle: Vec<bool> = (0..n).map(|i| remaining[i] > 0).collect();
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        if in_cycle[i] {
            all.push(Vec::new());
            continue;
        }
        let mut deps: Vec<usize> = Vec::new();
        let mut seen = vec![false; 0];
        seen.resize(n, false);
        let mut stack: Vec<(usize, usize)> = vec![(i, 0)];
        // Iterative depth-first preorder over direct deps (no recursion on deep chains).
        while let Some((m, k)) = stack.pop() {
            if let Some(&d) = direct[m].get(k) {
                stack.push((m, k + 1));
                if !seen[d] && d != i {
                    seen[d] = true;
                    deps.push(d);
                    stack.push((d, 0));
                }
            }
        }
        deps.retain(|d| !in_cycle[*d]);
        deps.sort_by_key(|d| sort_idx[*d]);
        all.push(deps);
    }
    (all, in_cycle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_order_matches_depmod_rules() {
        // 0 uses 1 and 2; 1 uses 2; 3 is alone.
        let (deps, cyc) = depmod_dependency_order(&[vec![1, 2], vec![2], vec![], vec![]]);
        assert_eq!(deps[0], vec![1, 2]);
        assert_eq!(deps[1], vec![2]);
        assert!(cyc.iter().all(|c| !c));
    }

    #[test]
    fn cycles_are_detected_and_dropped() {
        let (deps, cyc) = depmod_dependency_order(&[vec![1], vec![0], vec![0]]);
        assert_eq!(cyc, vec![true, true, false]);
        assert!(deps[2].is_empty());
    }

    #[test]
    fn alias_normalization_like_kmod() {
        assert_eq!(normalize_alias("fs-ext4").as_deref(), Some("fs_ext4"));
        assert_eq!(normalize_alias("a[-x]-b").as_deref(), Some("a[-x]_b"));
        assert_eq!(normalize_alias("a]b"), None);
        assert_eq!(normalize_alias("a[b"), None);
    }

    #[test]
    fn absolute_legacy_dep_paths_become_relative() {
        assert_eq!(relative_module_path("/lib/modules/2.6.18/kernel/drivers/a.ko"), "kernel/drivers/a.ko");
        assert_eq!(relative_module_path("kernel/a.ko"), "kernel/a.ko");
    }
}

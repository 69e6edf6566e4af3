//! The detection engine PID 1 runs: coldplug walk + uevent listener feed modaliases
//! to the matcher; matched modules load in background threads (dependencies first,
//! independent modules in parallel, each module once); "settled" means a quiet
//! period after the last uevent and the last finished load, with a hard cap.

use super::coldplug::walk_modaliases;
use super::error::HwError;
use super::index::{load_tables, ModuleTables};
use super::legacy::parse_pci_modalias;
use super::loader::{KernelLoader, LoadModule};
use super::modinfo::normalize_module_name;
use super::uevent::UeventSocket;
use crate::cmdline::{Cmdline, ModuleOptions};
use crate::disks::controllers;
use nix::errno::Errno;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct DetectOptions {
    pub modules_dir: PathBuf,
    pub sysfs: PathBuf,
    pub blacklist: Vec<String>,
    pub force_load: Vec<String>,
    /// module name -> "p1=v1 p2=v2"
    pub params: HashMap<String, String>,
    pub parallel: bool,
    pub quiet: Duration,
    pub cap: Duration,
    /// Load the drivers of the fastest storage (virtio, NVMe) and the forced modules
    /// first, and hold every other driver until [`Detector::open_gate`] (or settling) asks
    /// for them: on a machine that boots from NVMe, the SATA, USB and sound stacks then
    /// do not compete for the CPU with the path to the image.
    pub fast_first: bool,
    /// Longest wait for one module: a load not done by then counts as hung, the boot
    /// goes on without it (a blocked finit_module cannot be cancelled) and reports it.
    pub load_timeout: Duration,
}

impl DetectOptions {
    /// Defaults for a boot: parallel, 500 ms quiet period, 20 s cap.
    pub fn new(modules_dir: PathBuf, sysfs: PathBuf) -> DetectOptions {
        DetectOptions {
            modules_dir,
            sysfs,
            blacklist: Vec::new(),
            force_load: Vec::new(),
            params: HashMap::new(),
            parallel: true,
            quiet: Duration::from_millis(500),
            cap: Duration::from_secs(20),
            fast_first: false,
            load_timeout: Duration::from_secs(20),
        }
    }

    /// Takes `module.param=value`, `modprobe.blacklist=a,b`, `rd.driver.blacklist=`,
    /// `viver.modules=a,b` and `rd.driver.pre=` from a kernel command line, read by the
    /// one command-line parser ([`crate::cmdline`]).
    pub fn apply_cmdline(&mut self, cmdline: &str) {
        self.apply_module_options(Cmdline::parse(cmdline).module_options());
    }

    /// Adds the module options of a parsed command line (or of the boot's settings).
    pub fn apply_module_options(&mut self, options: ModuleOptions) {
        self.blacklist.extend(options.blacklist);
        self.force_load.extend(options.force_load);
        for (module, words) in options.params {
            let entry = self.params.entry(module).or_default();
            if !entry.is_empty() {
                entry.push(' ');
            }
            entry.push_str(&words);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Settled {
    Quiet,
    Capped,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadRecord {
    pub module: String,
    /// Why it was loaded: the modalias, "dependency of X", "viver.modules", ...
    pub reason: String,
    pub ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DetectReport {
    pub loaded: Vec<LoadRecord>,
    pub builtin_skipped: Vec<String>,
    pub blacklisted: Vec<String>,
    /// Modaliases no module (nor builtin) claims.
    pub unmatched: Vec<String>,
    pub uevents: u64,
    pub modaliases: usize,
    /// Every distinct modalias seen (walk and uevents), in the order seen: which
    /// devices were present, so each `loaded` reason can be checked against them.
    pub devices: Vec<String>,
    /// Loads that were given up on (hung in the kernel): the boot went on without them.
    pub stuck: Vec<StuckLoad>,
}

/// A module whose load had not finished when someone stopped waiting for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StuckLoad {
    pub module: String,
    /// Why it was being loaded.
    pub reason: String,
    /// When its load started, in ms after detection started.
    pub since_ms: u64,
    /// How long it had been loading when given up on.
    pub waited_ms: u64,
}

impl std::fmt::Display for StuckLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "module {} ({}) still loading after {:.1} s (since {:.1} s into detection)",
            self.module,
            self.reason,
            self.waited_ms as f64 / 1000.0,
            self.since_ms as f64 / 1000.0
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ModState {
    Loading { since: Instant, reason: String },
    Loaded,
    Failed(String),
}

struct State {
    generation: u64,
    seen_modaliases: HashSet<String>,
    modules: HashMap<String, ModState>,
    queued: HashSet<String>,
    queue: VecDeque<(String, String)>,
    busy: usize,
    last_activity: Instant,
    report: DetectReport,
    stop: bool,
    /// Drivers held back while the gate is closed (see DetectOptions::fast_first).
    held: VecDeque<(String, String)>,
    gate_open: bool,
    /// The full coldplug walk was put off until the gate opens.
    walk_pending: bool,
}

struct Inner {
    tables: ModuleTables,
    opts: DetectOptions,
    loader: Arc<dyn LoadModule>,
    state: Mutex<State>,
    cond: Condvar,
    started: Instant,
}

/// Runs in background threads after start().
pub struct Detector {
    inner: Arc<Inner>,
}

fn errno_text(e: &HwError) -> String {
    match e {
        HwError::LoadFailed { errno, .. } => format!("{} ({})", errno, errno.desc()),
        other => other.to_string(),
    }
}

impl Detector {
    /// Opens netlink, walks sysfs, starts loading. The tables come from the module
    /// directory: depmod's files when present, else built from the .ko files.
    pub fn start(opts: DetectOptions) -> Result<Detector, HwError> {
        let tables = load_tables(&opts.modules_dir)?;
        Ok(Detector::start_with_tables(opts, tables))
    }

    /// [`start`](Self::start) with the tables given (empty tables: the kernel's
    /// built-in drivers only, when the initrd has no modules for the running kernel).
    pub fn start_with_tables(opts: DetectOptions, tables: ModuleTables) -> Detector {
        // The kernel's own module requests (crypto-crc32c, fs-*) must reach our modprobe.
        super::modprobe::point_kernel_at_modprobe(std::path::Path::new("/proc/sys"));
        let socket = match UeventSocket::open() {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("hw: no uevent socket ({e}); only devices present now are handled");
                None
            }
        };
        let loader = Arc::new(KernelLoader { release_dir: opts.modules_dir.clone() });
        Detector::start_with(opts, tables, loader, socket)
    }

    /// [`start`](Self::start) with the tables, loader and (optional) uevent source given.
    pub fn start_with(opts: DetectOptions, tables: ModuleTables, loader: Arc<dyn LoadModule>, socket: Option<UeventSocket>) -> Detector {
        let workers = if opts.parallel { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 8) } else { 1 };
        let now = Instant::now();
        let inner = Arc::new(Inner {
            tables,
            loader,
            state: Mutex::new(State {
                generation: 0,
                seen_modaliases: HashSet::new(),
                modules: HashMap::new(),
                queued: HashSet::new(),
                queue: VecDeque::new(),
                busy: 0,
                last_activity: now,
                report: DetectReport::default(),
                stop: false,
                held: VecDeque::new(),
                gate_open: !opts.fast_first,
                walk_pending: false,
            }),
            cond: Condvar::new(),
            started: now,
            opts,
        });
        // The socket is already open: events during the walk wait in its queue.
        if let Some(socket) = socket {
            let inner = Arc::clone(&inner);
            std::thread::spawn(move || listen(inner, socket));
        }
        for _ in 0..workers {
            let inner = Arc::clone(&inner);
            std::thread::spawn(move || work(inner));
        }
        // PCI devices first: their drivers (storage and USB controllers) are the long pole
        // and everything else hangs below them. Reading their few modalias files lets the
        // loads start before the walk of the whole /sys/devices tree (thousands of
        // directories, slow on a small machine) has finished.
        let pci = pci_modaliases(&inner.opts.sysfs);
        let has_fast_storage = pci.iter().any(|(_, modalias)| fast_storage(modalias));
        for (devpath, modalias) in pci {
            inner.handle_modalias(&devpath, &modalias);
        }
        // Forced modules (the image's squashfs, loop, overlay) are needed only once a medium
        // is found: after the controllers, before the rest of the walk.
        for m in inner.opts.force_load.clone() {
            for module in inner.tables.resolve(&m) {
                inner.enqueue(&module, "viver.modules");
            }
            if inner.tables.resolve(&m).is_empty() {
                log::warn!("hw: viver.modules names {m}, which no module or alias matches");
            }
        }
        let detector = Detector { inner };
        if has_fast_storage && !detector.inner.lock().gate_open {
            // The walk of the whole tree (thousands of directories) only finds drivers
            // that would be held anyway: it runs when the gate opens, off the fast path.
            detector.inner.lock().walk_pending = true;
        } else {
            detector.walk_all();
            // Nothing to put first: every driver goes at once.
            detector.open_gate();
        }
        detector
    }

    pub fn wait_settled(&self) -> Settled {
        // Settling means every device has its driver: nothing may stay held.
        self.open_gate();
        let inner = &self.inner;
        let mut rescanned_at: Option<u64> = None;
        let mut st = inner.lock();
        loop {
            let now = Instant::now();
            let idle = st.queue.is_empty() && st.busy == 0;
            let quiet_for = now.duration_since(st.last_activity);
            if idle && quiet_for >= inner.opts.quiet {
                // Safety net for lost uevents (socket overrun, no socket at all): one
                // more walk after each burst of activity; new devices mean not settled.
                if rescanned_at == Some(st.generation) {
                    return Settled::Quiet;
                }
                let before = st.report.modaliases;
                drop(st);
                for (devpath, modalias) in walk_modaliases(&inner.opts.sysfs) {
                    inner.handle_modalias(&devpath, &modalias);
                }
                st = inner.lock();
                if st.report.modaliases == before {
                    return Settled::Quiet;
                }
                rescanned_at = Some(st.generation);
                continue;
            }
            let elapsed = now.duration_since(inner.started);
            if elapsed >= inner.opts.cap {
                return Settled::Capped;
            }
            let until_cap = inner.opts.cap - elapsed;
            let until_quiet = if idle { inner.opts.quiet.saturating_sub(quiet_for) } else { until_cap };
            let wait = until_cap.min(until_quiet).max(Duration::from_millis(1));
            st = inner.cond.wait_timeout(st, wait).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
    }

    pub fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    /// How long detection has been idle (no load queued or running, no uevent), or None
    /// while it is busy. Lets a caller poll for quiet instead of blocking in
    /// [`Detector::wait_settled`].
    pub fn idle_for(&self) -> Option<Duration> {
        let st = self.inner.lock();
        (st.queue.is_empty() && st.busy == 0 && st.held.is_empty()).then(|| st.last_activity.elapsed())
    }

    /// Lets the held drivers load (the fast storage did not carry the image, or the
    /// search needs every medium to decide).
    pub fn open_gate(&self) {
        let walk = std::mem::take(&mut self.inner.lock().walk_pending);
        let mut st = self.inner.lock();
        if st.gate_open && !walk {
            return;
        }
        st.gate_open = true;
        if walk {
            drop(st);
            self.walk_all();
            st = self.inner.lock();
        }
        let held: Vec<_> = st.held.drain(..).collect();
        if !held.is_empty() {
            log::debug!("hw: loading the {} driver(s) held back for the fast storage", held.len());
        }
        st.queue.extend(held);
        self.inner.touch(&mut st);
    }

    /// Coldplug: every modalias under /sys/devices.
    fn walk_all(&self) {
        for (devpath, modalias) in walk_modaliases(&self.inner.opts.sysfs) {
            self.inner.handle_modalias(&devpath, &modalias);
        }
    }

    /// Like [`Detector::idle_for`], but counting only the loads that are not held back.
    pub fn idle_for_ignoring_held(&self) -> Option<Duration> {
        let st = self.inner.lock();
        (st.queue.is_empty() && st.busy == 0).then(|| st.last_activity.elapsed())
    }

    /// True while drivers are held back behind the gate.
    pub fn holding(&self) -> bool {
        let st = self.inner.lock();
        !st.gate_open && (!st.held.is_empty() || st.walk_pending)
    }

    /// Ends detection before the hand-over to the real system: no new load starts, and
    /// this returns once the loads under way have finished, or after `wait` at most. A
    /// load cut short by exec can leave a driver half initialised (booster #120); a load
    /// hung in the kernel cannot be cancelled: those still under way are returned (and
    /// recorded in the report) so the caller can name them.
    pub fn finish(&self, wait: Duration) -> Vec<StuckLoad> {
        let deadline = Instant::now() + wait;
        let mut st = self.inner.lock();
        st.stop = true;
        self.inner.cond.notify_all();
        loop {
            let loading = st.modules.values().any(|m| matches!(m, ModState::Loading { .. }));
            if st.busy == 0 && !loading {
                return Vec::new();
            }
            let now = Instant::now();
            if now >= deadline {
                let stuck = self.inner.under_way(&st);
                for s in &stuck {
                    if !st.report.stuck.iter().any(|r| r.module == s.module) {
                        st.report.stuck.push(s.clone());
                    }
                }
                return stuck;
            }
            let step = (deadline - now).min(Duration::from_millis(20));
            st = self.inner.cond.wait_timeout(st, step).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// The loads under way now, with since when.
    pub fn loads_under_way(&self) -> Vec<StuckLoad> {
        let st = self.inner.lock();
        self.inner.under_way(&st)
    }

    pub fn wait_for_change(&self, since: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.lock();
        while st.generation <= since {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self.inner.cond.wait_timeout(st, deadline - now).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
        st.generation
    }

    /// Resolves a module name or alias ("fs-ext4", "squashfs", "loop", "overlay"),
    /// loads it with its dependencies and waits, at most `load_timeout`: the load runs
    /// on a thread of its own, so a driver whose init never returns cannot block the
    /// caller. Builtins succeed at once.
    pub fn load_module(&self, name_or_alias: &str) -> Result<(), HwError> {
        let modules = self.inner.tables.resolve(name_or_alias);
        if modules.is_empty() {
            return Err(HwError::NotFound(name_or_alias.to_string()));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = Arc::clone(&self.inner);
        let name = name_or_alias.to_string();
        let candidates = modules.clone();
        let spawned = std::thread::Builder::new().name(format!("load {name}")).spawn(move || {
            let mut first_err = None;
            for m in &candidates {
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.ensure_loaded(m, &format!("requested as {name}"), 0)))
                        .unwrap_or_else(|_| Err(format!("module {m}: internal error while loading (see the message above)")));
                match outcome {
                    Ok(()) => {
                        let _ = tx.send(Ok(()));
                        return;
                    }
                    Err(reason) => {
                        first_err.get_or_insert(HwError::Module { module: m.clone(), reason });
                    }
                }
            }
            let _ = tx.send(Err(first_err.unwrap_or(HwError::NotFound(name))));
        });
        if let Err(e) = spawned {
            return Err(HwError::Module { module: name_or_alias.to_string(), reason: format!("cannot start a loader thread: {e}") });
        }
        match rx.recv_timeout(self.inner.opts.load_timeout) {
            Ok(result) => result,
            Err(_) => {
                let stuck = self.inner.under_way(&self.inner.lock());
                let named: Vec<String> =
                    stuck.iter().filter(|s| modules.contains(&s.module) || stuck.len() == 1).map(|s| s.to_string()).collect();
                Err(HwError::Module {
                    module: modules.join(","),
                    reason: format!(
                        "gave up waiting after {:.1} s (the boot goes on without it){}",
                        self.inner.opts.load_timeout.as_secs_f64(),
                        if named.is_empty() { String::new() } else { format!(": {}", named.join("; ")) }
                    ),
                })
            }
        }
    }

    /// Queues a module by name or alias without waiting for it (modules named by a
    /// medium's viver.conf, read while detection runs). False when nothing matches.
    pub fn request(&self, name_or_alias: &str, reason: &str) -> bool {
        let modules = self.inner.tables.resolve(name_or_alias);
        for module in &modules {
            self.inner.enqueue(module, reason);
        }
        !modules.is_empty()
    }

    pub fn report(&self) -> DetectReport {
        self.inner.lock().report.clone()
    }

    pub fn tables(&self) -> &ModuleTables {
        &self.inner.tables
    }
}

impl Drop for Detector {
    fn drop(&mut self) {
        self.inner.lock().stop = true;
        self.inner.cond.notify_all();
    }
}

/// The modalias of every PCI and virtio device, by its device path (as the full walk
/// names it): the controllers, and virtio disks whose virtio_pci is built in.
fn pci_modaliases(sysfs: &std::path::Path) -> Vec<(String, String)> {
    let entries = ["bus/pci/devices", "bus/virtio/devices"]
        .iter()
        .filter_map(|bus| std::fs::read_dir(sysfs.join(bus)).ok())
        .flat_map(|dir| dir.flatten());
    let mut found: Vec<(String, String)> = entries
        .filter_map(|entry| {
            let real = std::fs::canonicalize(entry.path()).ok()?;
            let alias = std::fs::read_to_string(real.join("modalias")).ok()?;
            let devpath = real.strip_prefix(sysfs).ok()?.to_string_lossy().into_owned();
            Some((format!("/{devpath}"), alias.trim_end_matches(['\n', '\0']).to_string()))
        })
        .filter(|(_, alias)| !alias.is_empty())
        .collect();
    found.sort_by_key(|(devpath, alias)| (storage_priority(alias), devpath.clone()));
    found
}

/// Is this the modalias of fast storage (a virtio or NVMe controller, a virtio disk)?
fn fast_storage(modalias: &str) -> bool {
    if let Some(rest) = modalias.strip_prefix("virtio:") {
        // virtio device ids 2 (block) and 8 (SCSI).
        return rest.starts_with("d00000002") || rest.starts_with("d00000008");
    }
    modalias.starts_with("pci:") && storage_priority(modalias) == 0
}

/// The order in which PCI drivers are loaded: the controllers of the fastest media first
/// (the boot medium is most likely there, and the search may stop once it is found),
/// other storage next, then USB and SD hosts, then everything else. The tiers are the
/// controller table's ([`crate::disks::controllers`]).
fn storage_priority(modalias: &str) -> u8 {
    match parse_pci_modalias(modalias) {
        Some(id) => controllers::tier(id.vendor, id.class),
        None => controllers::OTHER_TIER,
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self, st: &mut State) {
        st.generation += 1;
        st.last_activity = Instant::now();
        self.cond.notify_all();
    }

    /// Each modalias is handled once, however often it is seen (walk + uevent).
    fn handle_modalias(&self, devpath: &str, modalias: &str) {
        {
            let mut st = self.lock();
            if !st.seen_modaliases.insert(modalias.to_string()) {
                return;
            }
            st.report.modaliases += 1;
            st.report.devices.push(modalias.to_string());
        }
        let matches = self.tables.resolve(modalias);
        let mut st = self.lock();
        if matches.is_empty() {
            log::debug!("hw: no module for {modalias} ({devpath})");
            st.report.unmatched.push(modalias.to_string());
            return;
        }
        drop(st);
        for m in matches {
            if self.opts.blacklist.contains(&m) && !self.opts.force_load.iter().any(|f| normalize_module_name(f) == m) {
                let mut st = self.lock();
                if !st.report.blacklisted.contains(&m) {
                    log::info!("hw: {m} blacklisted (modprobe.blacklist), not loaded for {modalias}");
                    st.report.blacklisted.push(m);
                }
                continue;
            }
            self.enqueue_tiered(&m, modalias, fast_storage(modalias));
        }
    }

    fn enqueue(&self, module: &str, reason: &str) {
        self.enqueue_tiered(module, reason, true);
    }

    /// Queues a load; with the gate closed, only fast-storage drivers go to the queue and
    /// the rest wait in `held`.
    fn enqueue_tiered(&self, module: &str, reason: &str, fast: bool) {
        let mut st = self.lock();
        if self.tables.is_builtin(module) && self.tables.module_path(module).is_none() {
            if !st.report.builtin_skipped.iter().any(|b| b == module) {
                st.report.builtin_skipped.push(module.to_string());
            }
            return;
        }
        if st.modules.contains_key(module) || !st.queued.insert(module.to_string()) {
            return;
        }
        if !fast && !st.gate_open {
            st.held.push_back((module.to_string(), reason.to_string()));
            return;
        }
        st.queue.push_back((module.to_string(), reason.to_string()));
        self.cond.notify_all();
    }

    /// Loads the module's dependencies (and pre softdeps) then the module, each once.
    fn ensure_loaded(&self, module: &str, reason: &str, depth: usize) -> Result<(), String> {
        let (pre, post) = self.tables.softdeps(module);
        if depth < 3 {
            for s in pre {
                for m in self.tables.resolve(&s) {
                    // Soft dependencies are best effort: their failure is logged, never fatal.
                    let _ = self.ensure_loaded(&m, &format!("softdep of {module}"), depth + 1);
                }
            }
        }
        let mut order = self.tables.load_order(module);
        if order.is_empty() {
            if !self.tables.is_builtin(module) {
                return Err(format!("module {module} is not in the tables"));
            }
            // Builtin: load_one records it as skipped.
            order.push(module.to_string());
        }
        let mut result = Ok(());
        for m in &order {
            let why = if m == module { reason.to_string() } else { format!("dependency of {module}") };
            if let Err(e) = self.load_one(m, &why) {
                if m == module {
                    result = Err(e);
                }
                // A failed dependency is logged; the module is still tried (the kernel decides).
            }
        }
        if depth < 3 {
            for s in post {
                for m in self.tables.resolve(&s) {
                    let _ = self.ensure_loaded(&m, &format!("softdep of {module}"), depth + 1);
                }
            }
        }
        result
    }

    /// The modules being loaded now, with since when (see [`StuckLoad`]).
    fn under_way(&self, st: &State) -> Vec<StuckLoad> {
        let now = Instant::now();
        let mut out: Vec<StuckLoad> = st
            .modules
            .iter()
            .filter_map(|(module, state)| match state {
                ModState::Loading { since, reason } => Some(StuckLoad {
                    module: module.clone(),
                    reason: reason.clone(),
                    since_ms: since.duration_since(self.started).as_millis() as u64,
                    waited_ms: now.duration_since(*since).as_millis() as u64,
                }),
                _ => None,
            })
            .collect();
        out.sort_by_key(|s| s.since_ms);
        out
    }

    fn load_one(&self, module: &str, reason: &str) -> Result<(), String> {
        let mut st = self.lock();
        loop {
            match st.modules.get(module) {
                Some(ModState::Loaded) => return Ok(()),
                Some(ModState::Failed(e)) => return Err(e.clone()),
                Some(ModState::Loading { since, reason: why }) => {
                    // Another thread loads it: wait, but not longer than a load may take.
                    let (since, why) = (*since, why.clone());
                    let waited = since.elapsed();
                    if waited >= self.opts.load_timeout || st.stop {
                        let stuck = StuckLoad {
                            module: module.to_string(),
                            reason: why,
                            since_ms: since.duration_since(self.started).as_millis() as u64,
                            waited_ms: waited.as_millis() as u64,
                        };
                        log::warn!("hw: {stuck}; going on without it");
                        let text = stuck.to_string();
                        if !st.report.stuck.iter().any(|r| r.module == module) {
                            st.report.stuck.push(stuck);
                        }
                        return Err(text);
                    }
                    let step = (self.opts.load_timeout - waited).min(Duration::from_millis(100));
                    st = self.cond.wait_timeout(st, step).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
                }
                None => break,
            }
        }
        if self.tables.is_builtin(module) || self.tables.module_path(module).is_none() {
            st.modules.insert(module.to_string(), ModState::Loaded);
            if !st.report.builtin_skipped.iter().any(|b| b == module) {
                st.report.builtin_skipped.push(module.to_string());
            }
            return Ok(());
        }
        st.modules.insert(module.to_string(), ModState::Loading { since: Instant::now(), reason: reason.to_string() });
        drop(st);
        // If the loader panics, the module must not stay "loading" for ever.
        let guard = LoadingGuard { inner: self, module, reason };

        let path = self.tables.module_path(module).map(|p| p.to_path_buf()).unwrap_or_default();
        let params = self.opts.params.get(module).cloned().unwrap_or_default();
        let t0 = Instant::now();
        let outcome = match self.loader.load(module, &path, &params) {
            Ok(()) | Err(HwError::LoadFailed { errno: Errno::EEXIST, .. }) => Ok(()),
            Err(e) => Err(errno_text(&e)),
        };
        std::mem::forget(guard);
        let ms = t0.elapsed().as_millis() as u64;
        match &outcome {
            Ok(()) => log::info!("hw: loaded {module} in {ms} ms ({reason})"),
            Err(e) => log::warn!("hw: module {module} failed to load: {e} ({reason})"),
        }
        self.record(module, reason, ms, outcome.clone());
        outcome
    }

    fn record(&self, module: &str, reason: &str, ms: u64, outcome: Result<(), String>) {
        let mut st = self.lock();
        st.modules.insert(
            module.to_string(),
            match &outcome {
                Ok(()) => ModState::Loaded,
                Err(e) => ModState::Failed(e.clone()),
            },
        );
        // A load given up on that finished after all is no longer stuck.
        st.report.stuck.retain(|s| s.module != module);
        st.report.loaded.push(LoadRecord { module: module.to_string(), reason: reason.to_string(), ms, error: outcome.err() });
        self.touch(&mut st);
    }
}

/// Marks a module failed when its load unwinds (a panic in the loader).
struct LoadingGuard<'a> {
    inner: &'a Inner,
    module: &'a str,
    reason: &'a str,
}

impl Drop for LoadingGuard<'_> {
    fn drop(&mut self) {
        let error = format!("internal error while loading {} (see the message above)", self.module);
        log::warn!("hw: module {} failed to load: {error} ({})", self.module, self.reason);
        self.inner.record(self.module, self.reason, 0, Err(error));
    }
}

fn work(inner: Arc<Inner>) {
    loop {
        let job = {
            let mut st = inner.lock();
            loop {
                if st.stop {
                    return;
                }
                if let Some(job) = st.queue.pop_front() {
                    st.busy += 1;
                    break job;
                }
                st = inner.cond.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        // A panic here must not leave `busy` raised nor kill the worker: the module
        // counts as failed (see LoadingGuard) and the worker takes the next job.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.ensure_loaded(&job.0, &job.1, 0)));
        if outcome.is_err() {
            log::warn!("hw: internal error while loading {} ({}); counted as failed", job.0, job.1);
        }
        let mut st = inner.lock();
        st.busy -= 1;
        inner.touch(&mut st);
    }
}

fn listen(inner: Arc<Inner>, socket: UeventSocket) {
    loop {
        if inner.lock().stop {
            return;
        }
        match socket.recv(Duration::from_millis(200)) {
            Ok(Some(ev)) => {
                {
                    let mut st = inner.lock();
                    st.report.uevents += 1;
                    inner.touch(&mut st);
                }
                if ev.action == "add" || ev.action == "bind" {
                    if let Some(m) = ev.modalias() {
                        inner.handle_modalias(&ev.devpath, m);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!("hw: uevent socket: {e}; rescanning sysfs");
                // Events were lost (ENOBUFS): a walk finds the devices they announced.
                for (devpath, modalias) in walk_modaliases(&inner.opts.sysfs) {
                    inner.handle_modalias(&devpath, &modalias);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[cfg(test)]
mod priority_tests {
    use super::storage_priority;

    #[test]
    fn fast_storage_controllers_come_first() {
        let virtio_blk = "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00";
        let nvme = "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02";
        let ahci = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01";
        let piix_ide = "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80";
        let xhci = "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30";
        let vga = "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00";
        let order: Vec<u8> = [virtio_blk, nvme, ahci, piix_ide, xhci, vga].iter().map(|m| storage_priority(m)).collect();
        assert_eq!(order, vec![0, 0, 1, 3, 4, 6]);
        assert_eq!(storage_priority("garbage"), 6);
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;
    use std::path::Path;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hardware/mini")
    }

    fn sysfs(tag: &str, devices: &[(&str, &str)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("viver-deadline-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("devices")).unwrap();
        for (dev, alias) in devices {
            let d = root.join("devices").join(dev);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("modalias"), format!("{alias}\n")).unwrap();
        }
        root
    }

    const AHCI: &str = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01";

    /// A loader whose call for `hang` never returns (a driver init that blocks for
    /// ever), and which panics for `boom`.
    struct Loader {
        hang: &'static str,
    }

    impl LoadModule for Loader {
        fn load(&self, module: &str, _path: &Path, _params: &str) -> Result<(), HwError> {
            if module == self.hang {
                loop {
                    std::thread::park();
                }
            }
            if module == "ext4" {
                panic!("a bug in the loader");
            }
            Ok(())
        }
    }

    fn options(sysfs: PathBuf) -> DetectOptions {
        let mut o = DetectOptions::new(fixture(), sysfs);
        o.quiet = Duration::from_millis(50);
        o.cap = Duration::from_secs(2);
        o.load_timeout = Duration::from_millis(300);
        o
    }

    #[test]
    fn a_load_that_never_returns_is_given_up_on_and_named() {
        let sysfs = sysfs("hang", &[("pci0000:00/0000:00:1f.2", AHCI)]);
        let (tables, _) = ModuleTables::load(&fixture()).unwrap();
        // libata is a dependency of ahci: its load hangs, ahci's worker waits for it.
        let det = Detector::start_with(options(sysfs), tables, Arc::new(Loader { hang: "libata" }), None);
        assert_eq!(det.wait_settled(), Settled::Capped, "a hung load keeps the hardware busy");
        let under_way: Vec<String> = det.loads_under_way().into_iter().map(|s| s.module).collect();
        assert_eq!(under_way, vec!["libata".to_string()]);
        // A request that needs it returns with the module's name instead of blocking.
        let err = det.load_module("libata").unwrap_err().to_string();
        assert!(err.contains("module libata") && err.contains("still loading"), "{err}");
        // The hand-over waits a bounded time, then names what it leaves behind.
        let stuck = det.finish(Duration::from_millis(100));
        assert_eq!(stuck.iter().map(|s| s.module.as_str()).collect::<Vec<_>>(), vec!["libata"]);
        assert!(stuck[0].reason.contains("dependency of"), "{:?}", stuck[0]);
        let report = det.report();
        assert_eq!(report.stuck.iter().map(|s| s.module.as_str()).collect::<Vec<_>>(), vec!["libata"]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["stuck"][0]["module"], "libata");
    }

    #[test]
    fn a_panic_in_a_load_counts_as_a_failed_module() {
        let sysfs = sysfs("panic", &[]);
        let (tables, _) = ModuleTables::load(&fixture()).unwrap();
        let mut o = options(sysfs);
        o.force_load = vec!["ext4".into()];
        let det = Detector::start_with(o, tables, Arc::new(Loader { hang: "none" }), None);
        assert_eq!(det.wait_settled(), Settled::Quiet, "the panicking worker must not stay busy");
        let report = det.report();
        let ext4 = report.loaded.iter().find(|r| r.module == "ext4").expect("ext4 recorded");
        assert!(ext4.error.as_deref().unwrap_or_default().contains("internal error"), "{ext4:?}");
        assert!(det.load_module("ext4").is_err());
        assert!(det.finish(Duration::from_millis(100)).is_empty());
    }
}

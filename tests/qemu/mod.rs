//! Support for tests that boot VIVER (or anything else) under QEMU.
//!
//! Used from `tests/qemu_*.rs` with `mod qemu;`. Every VM runs with `-accel tcg` (CI
//! machines have no KVM), one CPU and 512 MB unless told otherwise, no network, and
//! its serial console (ttyS0) appended to `target/qemu-logs/<name>.log`, whose first
//! line is the QEMU command line: after a failure, that file is the whole story.
//!
//! Devices get predictable ids so a test can unplug them through the monitor:
//! `virtio<N>`, `nvme<N>`, `ahci<N>`, `ide<N>`, `cdide<N>`, `cdahci<N>`, `usbx<N>`
//! (stick on xHCI), `usbe<N>` (stick on EHCI), `sd<N>`, N counting from 0 per kind.
//! [`Vm::device_ids`] lists them.
#![allow(dead_code)] // each test file uses its own subset of this module

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Root of the repository (the crate's manifest directory).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_dir().join("target"),
    }
}

/// The unpacked Debian kernel package: `$VIVER_KERNEL_ROOT` or the harness cache.
/// Panics (failing the test) with the fix when it is missing: a test that needs the
/// kernel must not pass silently without it.
pub fn kernel_root() -> PathBuf {
    let root = match std::env::var_os("VIVER_KERNEL_ROOT") {
        Some(dir) => PathBuf::from(dir),
        None => repo_dir().join("qemu-harness/cache/kernel/root"),
    };
    assert!(
        root.join("boot").is_dir() && root.join("lib/modules").is_dir(),
        "no kernel at {} (boot/ and lib/modules/ expected): run qemu-harness/setup first",
        root.display()
    );
    root
}

/// Kernel release of the harness kernel, e.g. `6.1.0-56-amd64` (the one directory
/// under `lib/modules`).
pub fn kernel_version() -> String {
    let modules = kernel_root().join("lib/modules");
    let mut versions: Vec<String> = fs::read_dir(&modules)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", modules.display()))
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    versions
        .pop()
        .unwrap_or_else(|| panic!("no kernel version under {}: run qemu-harness/setup first", modules.display()))
}

/// The harness kernel image (`boot/vmlinuz-<version>`).
pub fn kernel() -> PathBuf {
    let path = kernel_root().join("boot").join(format!("vmlinuz-{}", kernel_version()));
    assert!(path.is_file(), "missing {}: run qemu-harness/setup first", path.display());
    path
}

/// `lib/modules/<version>` of the harness kernel (read-only: copy before depmod).
pub fn modules_dir() -> PathBuf {
    kernel_root().join("lib/modules").join(kernel_version())
}

/// One module file of the harness kernel, found by name (`-` and `_` are the same).
pub fn module_path(name: &str) -> PathBuf {
    let wanted = format!("{}.ko", name.replace('-', "_"));
    find_file(&modules_dir().join("kernel"), &|file_name: &str| file_name.replace('-', "_") == wanted)
        .unwrap_or_else(|| panic!("module {name} not found under {}", modules_dir().display()))
}

fn find_file(dir: &Path, matches: &dyn Fn(&str) -> bool) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, matches) {
                return Some(found);
            }
        } else if matches(&entry.file_name().to_string_lossy()) {
            return Some(path);
        }
    }
    None
}

/// The static release binary (`/init` of the initramfs). Panics with the fix if absent.
pub fn viver_bin() -> PathBuf {
    let path = target_dir().join("x86_64-unknown-linux-gnu/release/viver");
    assert!(path.is_file(), "missing {}: run `cargo build --release` first", path.display());
    path
}

/// `qemu-harness/work`: test roots and other artifacts built by the harness scripts.
pub fn work_dir() -> PathBuf {
    repo_dir().join("qemu-harness/work")
}

/// The busybox test root built by `qemu-harness/make-testroot`.
pub fn testroot_dir() -> PathBuf {
    let dir = work_dir().join("testroot");
    assert!(dir.join("sbin/init").is_file(), "missing {}: run qemu-harness/make-testroot first", dir.display());
    dir
}

/// The Debian 12 root tarball built by `qemu-harness/make-debian-root`.
pub fn debian_root_tarball() -> PathBuf {
    let path = work_dir().join("debian-root.tar.zst");
    assert!(path.exists(), "missing {}: run qemu-harness/make-debian-root first", path.display());
    path
}

/// A fresh, empty directory for one test: `target/qemu-tmp/<name>`. Wiped on creation
/// rather than on drop, so a failed test's files stay there to be looked at.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = target_dir().join("qemu-tmp").join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("cannot wipe {}: {e}", dir.display()));
    }
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Pack a directory into a newc initramfs with the `cpio` tool (like the kernel
/// expects: relative paths, `.` first).
pub fn make_cpio(dir: &Path, out: &Path) -> Result<(), String> {
    let file = fs::File::create(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let script = "find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0";
    let status = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .stdout(file)
        .status()
        .map_err(|e| format!("run cpio in {}: {e}", dir.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cpio of {} failed: {status}", dir.display()))
    }
}

#[derive(Clone, Debug)]
enum Bus {
    Virtio,
    Nvme,
    Ahci,
    Ide,
    CdromIde,
    CdromAhci,
    UsbXhci,
    UsbEhci,
    Sd,
}

impl Bus {
    fn id_prefix(&self) -> &'static str {
        match self {
            Bus::Virtio => "virtio",
            Bus::Nvme => "nvme",
            Bus::Ahci => "ahci",
            Bus::Ide => "ide",
            Bus::CdromIde => "cdide",
            Bus::CdromAhci => "cdahci",
            Bus::UsbXhci => "usbx",
            Bus::UsbEhci => "usbe",
            Bus::Sd => "sd",
        }
    }
    fn is_cdrom(&self) -> bool {
        matches!(self, Bus::CdromIde | Bus::CdromAhci)
    }
    fn is_usb(&self) -> bool {
        matches!(self, Bus::UsbXhci | Bus::UsbEhci)
    }
}

#[derive(Clone, Debug)]
struct Disk {
    bus: Bus,
    path: PathBuf,
    id: String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum BootFrom {
    /// `-kernel`/`-initrd` given directly to QEMU.
    Kernel,
    /// SeaBIOS boots the first CD-ROM.
    Cdrom,
    /// SeaBIOS boots the first USB stick.
    Usb,
}

/// A VM to be started: a builder for the QEMU command line.
#[derive(Clone, Debug)]
pub struct Vm {
    name: String,
    machine: String,
    memory_mb: u32,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    append: Vec<String>,
    disks: Vec<Disk>,
    boot: BootFrom,
    extra_args: Vec<String>,
}

impl Vm {
    /// `name` names the log file (`target/qemu-logs/<name>.log`) and the sockets: make it
    /// unique per test.
    pub fn new(name: &str) -> Vm {
        Vm {
            name: name.to_string(),
            machine: "pc".to_string(),
            memory_mb: 512,
            kernel: None,
            initrd: None,
            append: vec!["console=ttyS0".to_string(), "panic=-1".to_string()],
            disks: Vec::new(),
            boot: BootFrom::Kernel,
            extra_args: Vec::new(),
        }
    }

    /// `pc` (i440FX, PIIX IDE) or `q35` (ICH9, AHCI built in).
    pub fn machine(mut self, machine: &str) -> Vm {
        self.machine = machine.to_string();
        self
    }

    pub fn memory_mb(mut self, mb: u32) -> Vm {
        self.memory_mb = mb;
        self
    }

    pub fn kernel(mut self, path: impl AsRef<Path>) -> Vm {
        self.kernel = Some(path.as_ref().to_path_buf());
        self
    }

    pub fn initrd(mut self, path: impl AsRef<Path>) -> Vm {
        self.initrd = Some(path.as_ref().to_path_buf());
        self
    }

    /// Adds words to the kernel command line (which starts as `console=ttyS0 panic=-1`:
    /// a panic powers the VM off at once instead of hanging until the timeout).
    pub fn append(mut self, cmdline: &str) -> Vm {
        self.append.extend(cmdline.split_whitespace().map(str::to_string));
        self
    }

    /// Replaces the whole kernel command line.
    pub fn cmdline(mut self, cmdline: &str) -> Vm {
        self.append = cmdline.split_whitespace().map(str::to_string).collect();
        self
    }

    fn disk(mut self, bus: Bus, path: impl AsRef<Path>) -> Vm {
        let n = self.disks.iter().filter(|d| d.bus.id_prefix() == bus.id_prefix()).count();
        let id = format!("{}{n}", bus.id_prefix());
        self.disks.push(Disk { bus, path: path.as_ref().to_path_buf(), id });
        self
    }

    /// virtio-blk-pci disk (`/dev/vdX`).
    pub fn disk_virtio(self, path: impl AsRef<Path>) -> Vm {
        self.disk(Bus::Virtio, path)
    }
    /// NVMe controller with one namespace (`/dev/nvmeXn1`).
    pub fn disk_nvme(self, path: impl AsRef<Path>) -> Vm {
        self.disk(Bus::Nvme, path)
    }
    /// Disk on an added AHCI controller (`/dev/sdX`), on both machines.
    pub fn disk_ahci(self, path: impl AsRef<Path>) -> Vm {
        self.disk(Bus::Ahci, path)
    }
    /// Disk on the machine's built-in controller: PIIX IDE on `pc` (ata_piix), the
    /// ICH9 AHCI on `q35` (which has no IDE).
    pub fn disk_ide(self, path: impl AsRef<Path>) -> Vm {
        self.disk(Bus::Ide, path)
    }
    /// CD-ROM (read-only) on the built-in controller (see [`Vm::disk_ide`]).
    pub fn cdrom_ide(self, path: impl AsRef<Path>) -> Vm {
        self.disk(Bus::CdromIde, path)
    }
    /// CD-ROM on an added AHCI controller.
    pub fn cdrom_ahci(self, path: impl AsRef<Path>) -> Vm {
        self.disk(Bus::CdromAhci, path)
    }
    /// USB mass-storage stick on a qemu-xhci (USB 3) controller.
    pub fn usb_stick_xhci(self, path: impl AsRef<Path>) -> Vm {
        self.disk(Bus::UsbXhci, path)
    }
    /// USB mass-storage stick on an EHCI (USB 2) controller.
    pub fn usb_stick_ehci(self, path: impl AsRef<Path>) -> Vm {
        self.disk(Bus::UsbEhci, path)
    }
    /// SD card on an sdhci-pci controller (`/dev/mmcblkX`).
    pub fn sd_card(self, path: impl AsRef<Path>) -> Vm {
        self.disk(Bus::Sd, path)
    }

    /// Boot real media: SeaBIOS boots the first CD-ROM; no `-kernel`.
    pub fn boot_from_cdrom(mut self) -> Vm {
        self.boot = BootFrom::Cdrom;
        self
    }
    /// Boot real media: SeaBIOS boots the first USB stick; no `-kernel`.
    pub fn boot_from_usb(mut self) -> Vm {
        self.boot = BootFrom::Usb;
        self
    }

    /// Raw QEMU arguments appended at the end, for what the builder does not cover.
    pub fn arg(mut self, arg: &str) -> Vm {
        self.extra_args.push(arg.to_string());
        self
    }

    /// Ids of the attached devices, in the order they were added (see the module doc).
    pub fn device_ids(&self) -> Vec<String> {
        self.disks.iter().map(|d| d.id.clone()).collect()
    }

    /// The QEMU arguments (without the program and without the per-run log/monitor
    /// paths, which [`Vm::spawn`] adds).
    pub fn qemu_args(&self) -> Result<Vec<String>, String> {
        let mut args: Vec<String> = [
            "-accel", "tcg", "-machine", &self.machine, "-smp", "1", "-nographic", "-no-reboot",
            "-nic", "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("-m".into());
        args.push(self.memory_mb.to_string());

        match self.boot {
            BootFrom::Kernel => {
                let kernel = self
                    .kernel
                    .as_ref()
                    .ok_or_else(|| format!("vm {}: no .kernel() and no boot_from_*()", self.name))?;
                args.push("-kernel".into());
                args.push(path_arg(kernel)?);
                if let Some(initrd) = &self.initrd {
                    args.push("-initrd".into());
                    args.push(path_arg(initrd)?);
                }
                args.push("-append".into());
                args.push(self.append.join(" "));
            }
            BootFrom::Cdrom | BootFrom::Usb => {
                if self.kernel.is_some() || self.initrd.is_some() {
                    return Err(format!("vm {}: boot_from_*() boots media; .kernel()/.initrd() would bypass it", self.name));
                }
            }
        }

        let is_q35 = self.machine.starts_with("q35");
        let mut boot_index_given = false;
        let mut builtin_slot = 0usize; // next free port of the built-in IDE/AHCI
        let mut ahci_port = 0usize;
        let (mut has_ahci, mut has_xhci, mut has_ehci, mut has_sdhci) = (false, false, false, false);

        for disk in &self.disks {
            let bootable = match self.boot {
                BootFrom::Cdrom => disk.bus.is_cdrom(),
                BootFrom::Usb => disk.bus.is_usb(),
                BootFrom::Kernel => false,
            };
            let boot_index = if bootable && !boot_index_given {
                boot_index_given = true;
                ",bootindex=0"
            } else {
                ""
            };
            let media = if disk.bus.is_cdrom() { ",media=cdrom,readonly=on" } else { "" };
            args.push("-drive".into());
            args.push(format!("file={},if=none,id=drv-{},format=raw{media}", drive_path(&disk.path)?, disk.id));

            let mut devices: Vec<String> = Vec::new();
            let builtin_bus = |slot: usize| {
                if is_q35 {
                    format!("bus=ide.{slot}")
                } else {
                    format!("bus=ide.{},unit={}", slot / 2, slot % 2)
                }
            };
            match disk.bus {
                Bus::Virtio => devices.push(format!("virtio-blk-pci,drive=drv-{0},id={0}", disk.id)),
                Bus::Nvme => devices.push(format!("nvme,drive=drv-{0},id={0},serial=viver-{0}", disk.id)),
                Bus::Ahci | Bus::CdromAhci => {
                    if !has_ahci {
                        devices.push("ahci,id=ahcictl".into());
                        has_ahci = true;
                    }
                    let kind = if disk.bus.is_cdrom() { "ide-cd" } else { "ide-hd" };
                    devices.push(format!("{kind},drive=drv-{0},id={0},bus=ahcictl.{ahci_port}", disk.id));
                    ahci_port += 1;
                }
                Bus::Ide | Bus::CdromIde => {
                    let max = if is_q35 { 6 } else { 4 };
                    if builtin_slot >= max {
                        return Err(format!("vm {}: more than {max} disks on the built-in controller", self.name));
                    }
                    let kind = if disk.bus.is_cdrom() { "ide-cd" } else { "ide-hd" };
                    devices.push(format!("{kind},drive=drv-{0},id={0},{1}", disk.id, builtin_bus(builtin_slot)));
                    builtin_slot += 1;
                }
                Bus::UsbXhci => {
                    if !has_xhci {
                        devices.push("qemu-xhci,id=xhcictl".into());
                        has_xhci = true;
                    }
                    devices.push(format!("usb-storage,drive=drv-{0},id={0},bus=xhcictl.0,removable=on", disk.id));
                }
                Bus::UsbEhci => {
                    if !has_ehci {
                        devices.push("usb-ehci,id=ehcictl".into());
                        has_ehci = true;
                    }
                    devices.push(format!("usb-storage,drive=drv-{0},id={0},bus=ehcictl.0,removable=on", disk.id));
                }
                Bus::Sd => {
                    if !has_sdhci {
                        devices.push("sdhci-pci,id=sdhcictl".into());
                        has_sdhci = true;
                    }
                    devices.push(format!("sd-card,drive=drv-{0},id={0}", disk.id));
                }
            }
            if let Some(last) = devices.last_mut() {
                last.push_str(boot_index);
            }
            for device in devices {
                args.push("-device".into());
                args.push(device);
            }
        }
        if self.boot != BootFrom::Kernel {
            if !boot_index_given {
                return Err(format!("vm {}: boot_from_*() but no matching device attached", self.name));
            }
            args.push("-boot".into());
            args.push("strict=on".into());
        }
        args.extend(self.extra_args.iter().cloned());
        Ok(args)
    }

    /// Starts QEMU and returns at once; the caller drives it (monitor, wait_for_line).
    pub fn spawn(&self) -> Result<RunningVm, String> {
        let logs = target_dir().join("qemu-logs");
        fs::create_dir_all(&logs).map_err(|e| format!("create {}: {e}", logs.display()))?;
        let log_path = logs.join(format!("{}.log", self.name));
        let stderr_path = logs.join(format!("{}.qemu-stderr.log", self.name));
        // Unix socket paths are limited to 108 bytes: keep them short, out of target/.
        let short_name: String = self.name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(48).collect();
        let qmp_path = std::env::temp_dir().join(format!("viver-qmp-{}-{short_name}.sock", std::process::id()));
        let _ = fs::remove_file(&qmp_path);

        let mut args = self.qemu_args()?;
        args.push("-chardev".into());
        args.push(format!("file,id=serial0,path={},append=on", path_arg(&log_path)?));
        args.push("-serial".into());
        args.push("chardev:serial0".into());
        args.push("-monitor".into());
        args.push("none".into());
        args.push("-qmp".into());
        args.push(format!("unix:{},server=on,wait=off", path_arg(&qmp_path)?));

        // The log starts with the command line (shell-quoted, to paste and rerun by hand);
        // QEMU appends the serial console below it.
        let mut header = String::from("# qemu-system-x86_64");
        for arg in &args {
            let _ = write!(header, " {}", shell_quote(arg));
        }
        header.push_str("\n# --- serial console (ttyS0) ---\n");
        fs::write(&log_path, &header).map_err(|e| format!("write {}: {e}", log_path.display()))?;
        let stderr = fs::File::create(&stderr_path).map_err(|e| format!("create {}: {e}", stderr_path.display()))?;

        let child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("vm {}: cannot start qemu-system-x86_64: {e} (run qemu-harness/setup)", self.name))?;
        Ok(RunningVm {
            name: self.name.clone(),
            child,
            status: None,
            log_path,
            log_header_len: header.len(),
            stderr_path,
            qmp_path,
            qmp: None,
            started: Instant::now(),
        })
    }

    /// Boots, waits until QEMU exits (the guest powers off) and returns the serial
    /// console. Err if QEMU cannot start, exits with an error, or runs past `timeout`
    /// (then it is killed); the message ends with the tail of the serial log.
    pub fn run(&self, timeout: Duration) -> Result<SerialLog, String> {
        let mut vm = self.spawn()?;
        vm.wait(timeout)?;
        Ok(vm.serial())
    }
}

/// A QEMU process. Killed on drop, so a failing test leaves no VM behind.
pub struct RunningVm {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    log_path: PathBuf,
    log_header_len: usize,
    stderr_path: PathBuf,
    qmp_path: PathBuf,
    qmp: Option<Qmp>,
    started: Instant,
}

struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl RunningVm {
    /// The serial console so far (without the command-line header).
    pub fn serial(&self) -> SerialLog {
        let bytes = fs::read(&self.log_path).unwrap_or_default();
        let text = String::from_utf8_lossy(bytes.get(self.log_header_len..).unwrap_or_default()).into_owned();
        SerialLog { text }
    }

    /// Where the log lives (command line + serial console).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether QEMU has exited (and records its status).
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
            }
        }
        self.status.is_some()
    }

    /// Waits until a serial line contains `pattern` and returns that line. Lines printed
    /// before the call count too. Err on timeout or when QEMU exits first.
    pub fn wait_for_line(&mut self, pattern: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.has_exited();
            if let Some(line) = self.serial().text.lines().find(|l| l.contains(pattern)) {
                return Ok(line.trim_end_matches('\r').to_string());
            }
            if exited {
                return Err(self.failure(&format!("QEMU exited ({}) before printing {pattern:?}", self.status_text())));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!("no line with {pattern:?} within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for QEMU to exit. On timeout kills it and returns Err with the log tail;
    /// a non-zero QEMU exit status (bad arguments, crash) is an Err too.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while !self.has_exited() {
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.failure(&format!("timeout: QEMU still running after {timeout:?}, killed")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        match self.status {
            Some(status) if status.success() => Ok(()),
            _ => Err(self.failure(&format!("QEMU failed: {}", self.status_text()))),
        }
    }

    /// Kills QEMU now (no-op if it already exited).
    pub fn kill(&mut self) {
        if !self.has_exited() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// A human monitor (HMP) command such as `device_del usbx0` or `info block`; returns
    /// its text output. Sent through QMP's `human-monitor-command`, which gives the
    /// output without the HMP prompt/echo noise and reports errors as errors.
    pub fn monitor(&mut self, command: &str) -> Result<String, String> {
        let request = serde_json::json!({
            "execute": "human-monitor-command",
            "arguments": { "command-line": command },
        });
        let answer = self.qmp(&request)?;
        let output = answer.as_str().unwrap_or_default().to_string();
        // HMP reports most failures as text ("Error: ...", "Device 'x' not found").
        if output.starts_with("Error") || output.contains("not found") {
            return Err(format!("vm {}: monitor command {command:?} failed: {}", self.name, output.trim_end()));
        }
        Ok(output)
    }

    /// A raw QMP command (`{"execute": ..., "arguments": ...}`); returns its `return`
    /// value, Err with QMP's error description.
    pub fn qmp(&mut self, request: &serde_json::Value) -> Result<serde_json::Value, String> {
        if self.qmp.is_none() {
            self.qmp = Some(self.qmp_connect()?);
        }
        let name = self.name.clone();
        let qmp = self.qmp.as_mut().ok_or("qmp not connected")?;
        let line = format!("{request}\n");
        qmp.writer.write_all(line.as_bytes()).map_err(|e| format!("vm {name}: qmp write: {e}"))?;
        read_qmp_answer(&mut qmp.reader).map_err(|e| format!("vm {name}: qmp {request}: {e}"))
    }

    fn qmp_connect(&mut self) -> Result<Qmp, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(&self.qmp_path) {
                Ok(stream) => break stream,
                Err(e) => {
                    if self.has_exited() || Instant::now() >= deadline {
                        return Err(self.failure(&format!("cannot connect to QMP at {}: {e}", self.qmp_path.display())));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let writer = stream.try_clone().map_err(|e| format!("qmp socket: {e}"))?;
        let mut qmp = Qmp { reader: BufReader::new(stream), writer };
        // The greeting, then capability negotiation, before any command is accepted.
        let mut greeting = String::new();
        qmp.reader.read_line(&mut greeting).map_err(|e| format!("qmp greeting: {e}"))?;
        qmp.writer
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
            .map_err(|e| format!("qmp write: {e}"))?;
        read_qmp_answer(&mut qmp.reader)?;
        Ok(qmp)
    }

    fn status_text(&self) -> String {
        match self.status {
            Some(status) => status.to_string(),
            None => "still running".to_string(),
        }
    }

    /// An error message: what went wrong, where the logs are, QEMU's stderr and the
    /// tail of the serial console.
    fn failure(&self, what: &str) -> String {
        let stderr = fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let mut message = format!("vm {}: {what} after {:.1?}\nlog: {}\n", self.name, self.started.elapsed(), self.log_path.display());
        if !stderr.trim().is_empty() {
            let _ = writeln!(message, "--- qemu stderr ---\n{}", stderr.trim_end());
        }
        let _ = write!(message, "--- serial tail ---\n{}", self.serial().tail(40));
        message
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_file(&self.qmp_path);
    }
}

fn read_qmp_answer(reader: &mut BufReader<UnixStream>) -> Result<serde_json::Value, String> {
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(|e| format!("qmp read: {e}"))?;
        if n == 0 {
            return Err("qmp connection closed".to_string());
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("qmp answer {line:?} is not JSON: {e}"))?;
        if let Some(ret) = value.get("return") {
            return Ok(ret.clone());
        }
        if let Some(error) = value.get("error") {
            return Err(format!("qmp error: {error}"));
        }
        // Anything else is an asynchronous event (DEVICE_DELETED, SHUTDOWN...): skip it.
    }
}

fn path_arg(path: &Path) -> Result<String, String> {
    let text = path.to_str().ok_or_else(|| format!("path {} is not UTF-8", path.display()))?;
    Ok(text.to_string())
}

/// QEMU's -drive uses `,` as a separator; a comma in a path is written `,,`.
fn drive_path(path: &Path) -> Result<String, String> {
    if !path.exists() {
        return Err(format!("disk image {} does not exist", path.display()));
    }
    Ok(path_arg(path)?.replace(',', ",,"))
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c)) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// What the guest printed on its serial console.
#[derive(Clone, Debug)]
pub struct SerialLog {
    pub text: String,
}

impl SerialLog {
    pub fn contains(&self, needle: &str) -> bool {
        self.text.contains(needle)
    }

    /// The rest of the first line starting with `prefix` (after trimming leading
    /// whitespace), e.g. `line_after("PERSIST: ")`.
    pub fn line_after(&self, prefix: &str) -> Option<String> {
        self.lines().find_map(|line| line.trim_start().strip_prefix(prefix).map(|rest| rest.trim_end().to_string()))
    }

    /// Lines without the serial `\r`.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.lines().map(|l| l.trim_end_matches('\r'))
    }

    /// Lines strictly between the first `begin` marker line and the next `end` line.
    pub fn section(&self, begin: &str, end: &str) -> Option<Vec<String>> {
        let mut lines = self.lines().skip_while(|l| l.trim() != begin);
        lines.next()?;
        let mut out = Vec::new();
        for line in lines {
            if line.trim() == end {
                return Some(out);
            }
            out.push(line.to_string());
        }
        None
    }

    /// `/run/viver/boot.json` as printed by the test root between BOOT-JSON-BEGIN/END.
    pub fn boot_json(&self) -> Result<serde_json::Value, String> {
        let lines = self
            .section("BOOT-JSON-BEGIN", "BOOT-JSON-END")
            .ok_or_else(|| format!("no BOOT-JSON-BEGIN..END section in the serial log; tail:\n{}", self.tail(30)))?;
        // Kernel messages may interleave with the output: keep only JSON-looking lines.
        let text: String = lines.iter().filter(|l| !is_kernel_message(l)).map(|l| format!("{l}\n")).collect();
        serde_json::from_str(&text).map_err(|e| format!("boot.json from the serial log is not JSON: {e}\n{text}"))
    }

    /// `/proc/mounts` of the booted root as (device, mount point, fstype, options).
    pub fn mounts(&self) -> Vec<Mount> {
        self.section("MOUNTS-BEGIN", "MOUNTS-END")
            .unwrap_or_default()
            .iter()
            .filter(|l| !is_kernel_message(l))
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some(Mount {
                    device: fields.next()?.to_string(),
                    mount_point: fields.next()?.to_string(),
                    fstype: fields.next()?.to_string(),
                    options: fields.next()?.to_string(),
                })
            })
            .collect()
    }

    /// The mount at exactly `mount_point`, if any (the last one: it is the visible one).
    pub fn mount_at(&self, mount_point: &str) -> Option<Mount> {
        self.mounts().into_iter().rev().find(|m| m.mount_point == mount_point)
    }

    /// The last `n` lines, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.lines().collect();
        lines.get(lines.len().saturating_sub(n)..).unwrap_or_default().join("\n")
    }
}

/// `[   12.345678] text`: a kernel message on the console, possibly interleaved with
/// what the test root prints.
fn is_kernel_message(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix('[') else { return false };
    let Some((stamp, _)) = rest.split_once(']') else { return false };
    let stamp = stamp.trim_start();
    match stamp.split_once('.') {
        Some((secs, micros)) => {
            !secs.is_empty()
                && secs.chars().all(|c| c.is_ascii_digit())
                && micros.len() == 6
                && micros.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fstype: String,
    pub options: String,
}

/// The harness kernel's modules needed to load `names`, dependencies first (resolved
/// with `modinfo -F depends`, since the package ships no modules.dep).
pub fn modules_with_deps(names: &[&str]) -> Vec<PathBuf> {
    fn visit(name: &str, seen: &mut Vec<String>, out: &mut Vec<PathBuf>) {
        let key = name.replace('-', "_");
        if seen.contains(&key) {
            return;
        }
        seen.push(key);
        let path = module_path(name);
        let output = Command::new("modinfo")
            .args(["-F", "depends"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("modinfo {}: {e} (apt-get install kmod)", path.display()));
        let depends = String::from_utf8_lossy(&output.stdout).into_owned();
        for dep in depends.trim().split(',').filter(|d| !d.is_empty()) {
            visit(dep, seen, out);
        }
        out.push(path);
    }
    let (mut seen, mut out) = (Vec::new(), Vec::new());
    for name in names {
        visit(name, &mut seen, &mut out);
    }
    out
}

/// The static busybox of the host (package busybox-static).
pub fn busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no busybox: run qemu-harness/setup (busybox-static)"))
}

/// A minimal initramfs for testing the harness itself: busybox at /bin/busybox with
/// /bin/sh, `init_script` as /init, and `modules` (plus their dependencies) as
/// /modules/NNN-<name>.ko, numbered in load order so that
/// `for m in /modules/*.ko; do insmod $m; done` loads them right.
/// Built in `dir` (which must be fresh, see [`temp_dir`]); returns the cpio path.
pub fn busybox_initramfs(dir: &Path, init_script: &str, modules: &[&str]) -> PathBuf {
    let root = dir.join("initramfs-root");
    for sub in ["bin", "modules", "proc", "sys", "dev", "mnt", "tmp"] {
        fs::create_dir_all(root.join(sub)).unwrap_or_else(|e| panic!("mkdir in {}: {e}", root.display()));
    }
    fs::copy(busybox(), root.join("bin/busybox")).unwrap_or_else(|e| panic!("copy busybox: {e}"));
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap_or_else(|e| panic!("symlink sh: {e}"));
    for (i, module) in modules_with_deps(modules).iter().enumerate() {
        let name = module.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        fs::copy(module, root.join("modules").join(format!("{i:03}-{name}")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", module.display()));
    }
    let init = root.join("init");
    fs::write(&init, init_script).unwrap_or_else(|e| panic!("write {}: {e}", init.display()));
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("chmod init: {e}"));
    let cpio = dir.join("initramfs.cpio");
    make_cpio(&root, &cpio).unwrap_or_else(|e| panic!("{e}"));
    cpio
}

/// Runs `qemu-harness/mkdisk ARGS...` (see that script for the kinds and options).
pub fn mkdisk(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let script = repo_dir().join("qemu-harness/mkdisk");
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| format!("run {}: {e}", script.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("mkdisk {args:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim_end()))
    }
}

/// Options of the filesystem disk images.
#[derive(Clone, Debug, Default)]
pub struct DiskOpts {
    /// Put the filesystem in partition 1 of an MBR table (at 1 MiB) instead of the whole disk.
    pub mbr: bool,
    /// Size in MiB; None: the contents plus slack.
    pub size_mib: Option<u32>,
    pub label: Option<String>,
}

fn mkdisk_fs(kind: &str, src: &Path, out: &Path, opts: &DiskOpts) -> PathBuf {
    let size = opts.size_mib.map(|s| s.to_string());
    let mut args: Vec<&std::ffi::OsStr> = vec![kind.as_ref(), src.as_os_str(), out.as_os_str()];
    if opts.mbr {
        args.push("--mbr".as_ref());
    }
    if let Some(size) = &size {
        args.push("--size".as_ref());
        args.push(size.as_ref());
    }
    if let Some(label) = &opts.label {
        args.push("--label".as_ref());
        args.push(label.as_ref());
    }
    mkdisk(&args).unwrap_or_else(|e| panic!("{e}"));
    out.to_path_buf()
}

/// ext4 image with `dir`'s contents (owners and modes kept).
pub fn disk_ext4(dir: &Path, out: &Path, opts: &DiskOpts) -> PathBuf {
    mkdisk_fs("ext4", dir, out, opts)
}
/// FAT32 image with `dir`'s contents.
pub fn disk_vfat(dir: &Path, out: &Path, opts: &DiskOpts) -> PathBuf {
    mkdisk_fs("vfat", dir, out, opts)
}
/// ISO 9660 (Rock Ridge + Joliet) image of `dir` (no MBR, not bootable).
pub fn disk_iso(dir: &Path, out: &Path) -> PathBuf {
    mkdisk_fs("iso", dir, out, &DiskOpts { label: None, ..DiskOpts::default() })
}
/// A squashfs file as a whole disk (or as partition 1 with `mbr`).
pub fn disk_squashfs(squashfs: &Path, out: &Path, mbr: bool) -> PathBuf {
    mkdisk_fs("squashfs", squashfs, out, &DiskOpts { mbr, ..DiskOpts::default() })
}
/// `mib` MiB of random bytes, optionally under an MBR with one (garbage) partition.
pub fn disk_garbage(out: &Path, mib: u32, mbr: bool) -> PathBuf {
    let size = mib.to_string();
    let mut args: Vec<&std::ffi::OsStr> = vec!["garbage".as_ref(), out.as_os_str(), "--size".as_ref(), size.as_ref()];
    if mbr {
        args.push("--mbr".as_ref());
    }
    mkdisk(&args).unwrap_or_else(|e| panic!("{e}"));
    out.to_path_buf()
}

/// Lays out a medium's directory the way VIVER looks for it:
/// `dir/viver/<name>.squashfs` + `dir/viver/<name>.toml`. Returns `dir`.
pub fn viver_medium_dir(image: &Path, manifest: &Path, dir: &Path, name: &str) -> PathBuf {
    let viver = dir.join("viver");
    fs::create_dir_all(&viver).unwrap_or_else(|e| panic!("mkdir {}: {e}", viver.display()));
    fs::copy(image, viver.join(format!("{name}.squashfs"))).unwrap_or_else(|e| panic!("copy {}: {e}", image.display()));
    fs::copy(manifest, viver.join(format!("{name}.toml"))).unwrap_or_else(|e| panic!("copy {}: {e}", manifest.display()));
    dir.to_path_buf()
}

/// Unpacks the Debian root (make-debian-root) into `dest` (as root: keeps owners).
pub fn extract_debian_root(dest: &Path) -> PathBuf {
    let tarball = debian_root_tarball();
    fs::create_dir_all(dest).unwrap_or_else(|e| panic!("mkdir {}: {e}", dest.display()));
    let status = Command::new("tar")
        .args(["--zstd", "--numeric-owner", "-xpf"])
        .arg(&tarball)
        .arg("-C")
        .arg(dest)
        .status()
        .unwrap_or_else(|e| panic!("tar: {e}"));
    assert!(status.success(), "extracting {} into {} failed", tarball.display(), dest.display());
    dest.to_path_buf()
}

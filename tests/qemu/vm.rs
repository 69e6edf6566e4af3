//! The `Vm` builder: a QEMU command line from devices and boot choices.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::paths::target_dir;
use super::running::{RunningVm, RunningVmFiles};
use super::serial::SerialLog;

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

/// The machine's firmware. SeaBIOS is QEMU's default; OVMF is Debian's `ovmf` package
/// (UEFI), flashed as two pflash devices: the code read-only, a per-VM copy of the
/// variable store (boot entries and Secure Boot keys live there).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Firmware {
    SeaBios,
    /// OVMF without Secure Boot.
    Ovmf,
    /// OVMF with Secure Boot enforced: the SMM build and a variable store with
    /// Microsoft's keys enrolled (what PCs ship with); needs q35 with SMM.
    OvmfSecureBoot,
}

pub const OVMF_DIR: &str = "/usr/share/OVMF";

impl Firmware {
    /// (code, variable store template) in [`OVMF_DIR`], None for SeaBIOS.
    pub fn ovmf_files(self) -> Option<(PathBuf, PathBuf)> {
        let dir = Path::new(OVMF_DIR);
        match self {
            Firmware::SeaBios => None,
            Firmware::Ovmf => Some((dir.join("OVMF_CODE_4M.fd"), dir.join("OVMF_VARS_4M.fd"))),
            Firmware::OvmfSecureBoot => Some((dir.join("OVMF_CODE_4M.secboot.fd"), dir.join("OVMF_VARS_4M.ms.fd"))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum BootFrom {
    /// `-kernel`/`-initrd` given directly to QEMU.
    Kernel,
    /// SeaBIOS boots the first CD-ROM.
    Cdrom,
    /// SeaBIOS boots the first USB stick.
    Usb,
    /// The firmware boots the first hard disk (not a CD, not a stick).
    Disk,
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
    /// Raw bytes added to the kernel command line (need not be UTF-8).
    append_bytes: Vec<u8>,
    firmware: Firmware,
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
            append_bytes: Vec::new(),
            firmware: Firmware::SeaBios,
        }
    }

    /// The firmware (default SeaBIOS). OVMF with Secure Boot needs `machine("q35")`.
    pub fn firmware(mut self, firmware: Firmware) -> Vm {
        self.firmware = firmware;
        self
    }

    /// This VM's copy of the OVMF variable store (made fresh by [`Vm::spawn`]).
    fn vars_copy(&self) -> PathBuf {
        target_dir().join("qemu-tmp").join(format!("{}.OVMF_VARS.fd", self.name))
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

    /// Adds one word of raw bytes to the kernel command line (QEMU's -append takes
    /// bytes: a word that is not UTF-8 reaches the kernel as it is).
    pub fn append_bytes(mut self, word: &[u8]) -> Vm {
        self.append_bytes.push(b' ');
        self.append_bytes.extend_from_slice(word);
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

    /// Boot real media: the first hard disk; no `-kernel`.
    pub fn boot_from_disk(mut self) -> Vm {
        self.boot = BootFrom::Disk;
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
        let machine = match self.firmware {
            Firmware::OvmfSecureBoot if !self.machine.starts_with("q35") => {
                return Err(format!("vm {}: Secure Boot needs SMM, which OVMF supports on q35 only", self.name));
            }
            Firmware::OvmfSecureBoot => format!("{},smm=on", self.machine),
            _ => self.machine.clone(),
        };
        let mut args: Vec<String> = ["-accel", "tcg", "-machine", &machine, "-smp", "1", "-nographic", "-no-reboot", "-nic", "none"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some((code, _)) = self.firmware.ovmf_files() {
            if !code.is_file() {
                return Err(format!("vm {}: no {} (run qemu-harness/setup: package ovmf)", self.name, code.display()));
            }
            args.push("-drive".into());
            args.push(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", drive_path(&code)?));
            args.push("-drive".into());
            // The copy exists only once spawn() made it: name it without checking.
            args.push(format!("if=pflash,format=raw,unit=1,file={}", path_arg(&self.vars_copy())?.replace(',', ",,")));
        }
        if self.firmware == Firmware::OvmfSecureBoot {
            // Only SMM code may write the variable store, so the OS cannot change the keys;
            // S3 off, as OVMF's Secure Boot build requires.
            for global in ["driver=cfi.pflash01,property=secure,value=on", "ICH9-LPC.disable_s3=1"] {
                args.push("-global".into());
                args.push(global.into());
            }
        }
        args.push("-m".into());
        args.push(self.memory_mb.to_string());

        match self.boot {
            BootFrom::Kernel => {
                let kernel = self.kernel.as_ref().ok_or_else(|| format!("vm {}: no .kernel() and no boot_from_*()", self.name))?;
                args.push("-kernel".into());
                args.push(path_arg(kernel)?);
                if let Some(initrd) = &self.initrd {
                    args.push("-initrd".into());
                    args.push(path_arg(initrd)?);
                }
                args.push("-append".into());
                args.push(self.append.join(" "));
            }
            BootFrom::Cdrom | BootFrom::Usb | BootFrom::Disk => {
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
                BootFrom::Disk => !disk.bus.is_usb() && !disk.bus.is_cdrom(),
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

        if let Some((_, vars)) = self.firmware.ovmf_files() {
            let copy = self.vars_copy();
            if let Some(dir) = copy.parent() {
                fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            }
            fs::copy(&vars, &copy).map_err(|e| format!("vm {}: copy {} (package ovmf): {e}", self.name, vars.display()))?;
        }
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

        let mut os_args: Vec<std::ffi::OsString> = args.iter().map(std::ffi::OsString::from).collect();
        if !self.append_bytes.is_empty() {
            use std::os::unix::ffi::{OsStrExt, OsStringExt};
            if let Some(i) = args.iter().position(|a| a == "-append") {
                let mut line = os_args[i + 1].as_bytes().to_vec();
                line.extend_from_slice(&self.append_bytes);
                os_args[i + 1] = std::ffi::OsString::from_vec(line);
            }
        }
        let child = Command::new("qemu-system-x86_64")
            .args(&os_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("vm {}: cannot start qemu-system-x86_64: {e} (run qemu-harness/setup)", self.name))?;
        Ok(RunningVm::started(
            RunningVmFiles { name: self.name.clone(), log_path, log_header_len: header.len(), stderr_path, qmp_path },
            child,
        ))
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

//! The first things PID 1 does: the kernel's virtual filesystems, a console on fds 0-2,
//! and a reaper for orphans.

use super::log::BootLogger;
use super::report::Failure;
use super::Boot;
use nix::mount::{mount, MsFlags};
use std::path::Path;

impl Boot {
    pub(super) fn early(&mut self) -> Result<(), Failure> {
        let problems = mount_api_filesystems();
        attach_console();
        set_environment();
        BootLogger::install();
        self.kmsg_ratelimit = super::log::lift_kmsg_ratelimit();
        start_reaper();
        for problem in problems {
            ::log::warn!("{problem}");
            self.report.problems.push(problem);
        }
        self.report.kernel = kernel_release();
        ::log::info!("VIVER {} on Linux {}", env!("CARGO_PKG_VERSION"), self.report.kernel);
        Ok(())
    }
}

/// The API filesystems, mounted where every Linux program expects them. /run gets the
/// options systemd's initrd interface asks for, since it is handed over as it is.
const API_MOUNTS: &[(&str, &str, &str, Option<&str>)] = &[
    ("proc", "/proc", "proc", None),
    ("sysfs", "/sys", "sysfs", None),
    ("devtmpfs", "/dev", "devtmpfs", Some("mode=0755")),
    ("tmpfs", "/run", "tmpfs", Some("mode=0755")),
];

/// Mounts /proc, /sys, /dev and /run. A failure here is reported, not fatal: a kernel
/// that already mounted devtmpfs (CONFIG_DEVTMPFS_MOUNT) answers EBUSY, and the boot can
/// still tell the user what is wrong on a console that works.
pub fn mount_api_filesystems() -> Vec<String> {
    let mut problems = Vec::new();
    for (source, target, fstype, data) in API_MOUNTS {
        let _ = std::fs::create_dir_all(target);
        let flags = match *fstype {
            "proc" | "sysfs" => MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            "devtmpfs" => MsFlags::MS_NOSUID,
            // systemd's initrd interface: /run is nodev,nosuid,strictatime (flags, not data).
            _ => MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        };
        if let Err(errno) = mount(Some(*source), *target, Some(*fstype), flags, *data) {
            if errno != nix::errno::Errno::EBUSY {
                problems.push(format!("mounting {fstype} on {target}: {errno}"));
            }
        }
    }
    problems
}

/// Makes sure fds 0, 1 and 2 are the console. The kernel opens /dev/console for init
/// only if the initramfs has that node; without it they are closed, and every message
/// would vanish.
pub fn attach_console() {
    use std::os::fd::AsRawFd;
    if nix::fcntl::fcntl(unsafe { std::os::fd::BorrowedFd::borrow_raw(1) }, nix::fcntl::FcntlArg::F_GETFD).is_ok() {
        return;
    }
    if let Ok(console) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/console") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which are closed (checked above).
            unsafe { libc::dup2(console.as_raw_fd(), fd) };
        }
    }
}

/// Orphans are re-parented to PID 1; without a reaper they stay zombies. The reaper
/// pauses while a foreground child (the rescue shell) is being waited for.
pub static REAPER_PAUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn start_reaper() {
    let _ = std::thread::Builder::new().name("reaper".into()).spawn(|| loop {
        if !REAPER_PAUSED.load(std::sync::atomic::Ordering::Acquire) {
            use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
            while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                if status == WaitStatus::StillAlive {
                    break;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    });
}

/// A sane environment for anything we start (the rescue shell, the real init).
pub fn set_environment() {
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    std::env::set_var("HOME", "/root");
    if std::env::var_os("TERM").is_none() {
        std::env::set_var("TERM", "linux");
    }
}

pub fn kernel_release() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

pub fn exists(path: &str) -> bool {
    Path::new(path).exists()
}

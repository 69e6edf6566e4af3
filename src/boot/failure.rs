//! When the boot cannot go on: say which stage failed, what was tried, what was found and
//! why it was rejected, then follow `viver.panic=`. Never a bare kernel panic (PID 1 must
//! not exit), never a blank screen.

use super::log::BootLogger;
use super::report::{BootReport, Failure};
use super::settings::PanicPolicy;
use std::time::Duration;

/// Where the initrd's rescue shell lives when the kit added one (`--rescue-shell`).
pub const RESCUE_SHELLS: &[&str] = &["/bin/sh", "/bin/busybox"];

/// The initrd's rescue shell, opened before the initramfs is freed: after that its file
/// is gone (and `/bin/sh` names the new root's, which may be what failed), but an open
/// descriptor still runs it (fexecve). Close-on-exec: the real init does not inherit it.
static KEPT_SHELL: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

/// Opens the initrd's rescue shell, if it has one, for [`apply_policy`] after the hand-over.
pub fn keep_rescue_shell() {
    if KEPT_SHELL.get().is_some() {
        return;
    }
    // Only a real binary can be run from a descriptor (a script would need its path).
    for shell in ["/bin/busybox", "/bin/sh"] {
        if let Ok(file) = std::fs::File::open(shell) {
            let _ = KEPT_SHELL.set(file.into());
            return;
        }
    }
}

/// Runs the kept rescue shell in the foreground and waits for it; false if there is none
/// or it could not start.
fn run_kept_shell() -> bool {
    use std::os::fd::AsFd;
    let Some(fd) = KEPT_SHELL.get() else { return false };
    // Everything the child needs is made before the fork.
    let argv = [c"sh"];
    let envp = [c"PS1=(viver rescue) # ", c"PATH=/usr/sbin:/usr/bin:/sbin:/bin", c"HOME=/"];
    super::early::REAPER_PAUSED.store(true, std::sync::atomic::Ordering::Release);
    // SAFETY: the child only calls fexecve and _exit, both async-signal-safe.
    let started = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let _ = nix::unistd::fexecve(fd.as_fd(), &argv, &envp);
            unsafe { libc::_exit(127) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let status = nix::sys::wait::waitpid(child, None);
            !matches!(status, Ok(nix::sys::wait::WaitStatus::Exited(_, 127)))
        }
        Err(e) => {
            say(&format!("could not start the rescue shell: {e}"));
            false
        }
    };
    super::early::REAPER_PAUSED.store(false, std::sync::atomic::Ordering::Release);
    started
}

pub fn render(failure: &Failure) -> String {
    let mut text = String::new();
    text.push_str("========================================================================\n");
    text.push_str(&format!("VIVER could not boot: the {} stage failed.\n", failure.stage));
    text.push_str(&format!("{}\n", failure.message));
    for line in &failure.details {
        text.push_str(&format!("  - {line}\n"));
    }
    text.push_str("The full report is in /run/viver/boot.json, the log in /run/viver/boot.log.\n");
    text.push_str("========================================================================");
    text
}

/// Shows the failure, writes the report, and never returns.
/// `wait`: how long the report stays on screen before a reboot or power-off
/// (tiny-initramfs's lesson: a message that scrolls away at once was never shown).
pub fn fail(report: &mut BootReport, failure: Failure, policy: PanicPolicy, wait: Duration) -> ! {
    let text = render(&failure);
    report.failure = Some(failure);
    let logger = BootLogger::get();
    match logger {
        Some(logger) => logger.console_always(&text),
        None => eprintln!("{text}"),
    }
    let lines = logger.map(|l| l.lines()).unwrap_or_default();
    if let Err(e) = report.write(std::path::Path::new("/run/viver"), &lines) {
        say(&format!("(could not write /run/viver/boot.json: {e})"));
    }
    apply_policy(policy, wait)
}

fn say(text: &str) {
    match BootLogger::get() {
        Some(logger) => logger.console_always(text),
        None => eprintln!("{text}"),
    }
}

pub fn apply_policy(policy: PanicPolicy, wait: Duration) -> ! {
    nix::unistd::sync();
    match policy {
        PanicPolicy::Shell => {
            if KEPT_SHELL.get().is_some() {
                say("Starting the initrd's rescue shell (kept open across the hand-over). Leave it with 'exit' to reboot.");
                if !run_kept_shell() {
                    say("The rescue shell could not start.");
                }
            } else if let Some(shell) = RESCUE_SHELLS.iter().find(|s| std::path::Path::new(s).exists()) {
                say(&format!("Starting a rescue shell ({shell}). Leave it with 'exit' to reboot."));
                run_shell(shell);
            } else {
                say("This initrd has no rescue shell (add one with 'viver-kit initrd --rescue-shell').");
            }
            countdown_and(PanicPolicy::Reboot, wait)
        }
        other => countdown_and(other, wait),
    }
}

/// Runs the rescue shell in the foreground on the console and waits for it.
pub fn run_shell(shell: &str) {
    super::early::REAPER_PAUSED.store(true, std::sync::atomic::Ordering::Release);
    let mut command = std::process::Command::new(shell);
    if shell.ends_with("busybox") {
        command.arg("sh");
    }
    command.env("PS1", "(viver rescue) # ");
    match command.spawn() {
        Ok(mut child) => {
            let _ = child.wait();
        }
        Err(e) => say(&format!("could not start {shell}: {e}")),
    }
    super::early::REAPER_PAUSED.store(false, std::sync::atomic::Ordering::Release);
}

fn countdown_and(policy: PanicPolicy, wait: Duration) -> ! {
    use nix::sys::reboot::{reboot, RebootMode};
    let mode = match policy {
        PanicPolicy::Halt => {
            say(&format!("Powering off in {} seconds.", wait.as_secs()));
            std::thread::sleep(wait);
            RebootMode::RB_POWER_OFF
        }
        _ => {
            say(&format!("Rebooting in {} seconds.", wait.as_secs()));
            std::thread::sleep(wait);
            RebootMode::RB_AUTOBOOT
        }
    };
    nix::unistd::sync();
    let _ = reboot(mode);
    // reboot(2) only returns on error (not PID 1, no CAP_SYS_BOOT): stay alive, never exit.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

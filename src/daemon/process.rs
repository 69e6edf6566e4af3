//! Starting the daemon from `/init`, and the daemon's own start: `@` argv[0], its own
//! session, locked memory, the kernel-log logger, then the command loop of [`super::work`].

use super::control::{self, Command, ControlError, Reply};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

/// `argv[0]` of the daemon. systemd leaves processes whose `argv[0]` starts with `@`
/// alone at shutdown (they may serve the root filesystem); `ps` shows this name.
pub const ARGV0: &str = "@viver-daemon";
/// The descriptor number the daemon finds its end of the control socket at.
pub const CONTROL_FD: RawFd = 3;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start the daemon ({exe}): {source}")]
    Exec { exe: String, source: std::io::Error },
    #[error("{0}")]
    Control(#[from] ControlError),
    #[error("the daemon did not answer within {0:?}")]
    NoAnswer(Duration),
}

/// `/init`'s side: the control socket of a running daemon.
pub struct DaemonHandle {
    control: UnixDatagram,
    pub pid: u32,
}

/// Starts `exe` (normally `/proc/self/exe`, i.e. `/init`) as the daemon.
pub fn spawn(exe: &Path, debug: bool) -> Result<DaemonHandle, SpawnError> {
    let (ours, theirs) = control::pair()?;
    let theirs_fd = theirs.as_raw_fd();
    let mut command = std::process::Command::new(exe);
    command.arg0(ARGV0).arg("daemon").arg("--control-fd").arg(CONTROL_FD.to_string());
    if debug {
        command.arg("--debug");
    }
    command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl, setsid).
    unsafe {
        command.pre_exec(move || {
            if theirs_fd == CONTROL_FD {
                // Already in place: only drop close-on-exec.
                if libc::fcntl(CONTROL_FD, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(theirs_fd, CONTROL_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // No controlling terminal: a Ctrl-C on the console must not reach it.
            libc::setsid();
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| SpawnError::Exec { exe: exe.display().to_string(), source })?;
    drop(theirs);
    Ok(DaemonHandle { control: ours, pid: child.id() })
}

impl DaemonHandle {
    /// Sends `command` (with `fds`) and waits at most `deadline` for the answer.
    pub fn request(&self, command: &Command, fds: &[RawFd], deadline: Duration) -> Result<Reply, SpawnError> {
        control::send(&self.control, command, fds)?;
        self.control.set_read_timeout(Some(deadline.max(Duration::from_millis(1)))).map_err(ControlError::Io)?;
        match control::receive::<Reply>(&self.control) {
            Ok((reply, _)) => Ok(reply),
            Err(ControlError::Sys(nix::Error::EAGAIN)) => Err(SpawnError::NoAnswer(deadline)),
            Err(e) => Err(e.into()),
        }
    }
}

/// The daemon's `main` (`viver daemon --control-fd N`): never returns while there is
/// something to serve.
pub fn main(control_fd: RawFd, debug: bool) -> i32 {
    super::kmsg_log::KmsgLogger::install(debug);
    // SAFETY: plain syscalls on this process.
    unsafe {
        // Every page now and later stays in RAM: a page fault must never wait on the
        // root filesystem this process serves. ONFAULT: thread stacks are not filled in
        // up front.
        if libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) != 0 {
            log::warn!("mlockall: {} (serving on with pageable memory)", std::io::Error::last_os_error());
        }
        // Shutdown and a closing terminal must not stop the server of the root.
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    let _ = std::env::set_current_dir("/");
    // SAFETY: /init passed this descriptor to us at exec; nothing else owns it.
    let control = unsafe { UnixDatagram::from_raw_fd(control_fd) };
    log::info!("started (pid {}), memory locked", std::process::id());
    let mut work = super::work::Work::default();
    loop {
        match control::receive::<serde_json::Value>(&control) {
            Ok((value, fds)) => {
                let reply = match serde_json::from_value::<Command>(value) {
                    Ok(command) => work.handle(command, fds),
                    Err(e) => Reply::Error { message: format!("not a command: {e}") },
                };
                if let Err(e) = control::send(&control, &reply, &[]) {
                    log::warn!("control socket: {e}");
                }
            }
            Err(ControlError::Closed) => break,
            Err(ControlError::Sys(nix::Error::EINTR)) => continue,
            Err(e) => {
                log::warn!("control socket: {e}; taking no more commands");
                break;
            }
        }
    }
    drop(control);
    log::info!("{}", work.describe_after_hand_over());
    work.serve_for_ever()
}

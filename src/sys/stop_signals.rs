//! SIGINT and SIGTERM for a foreground command that must end cleanly (`viver nbd
//! attach`, `viver vfield`): blocked in every thread and taken synchronously, so the
//! command decides what stopping means (detach the device, a planned leave).

use nix::sys::signal::{SigSet, Signal};
use std::time::Duration;

pub struct StopSignals(SigSet);

impl StopSignals {
    /// Blocks SIGINT and SIGTERM; call before any thread starts so every thread
    /// inherits the mask.
    pub fn block() -> Result<StopSignals, String> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.thread_block().map_err(|e| format!("block signals: {e}"))?;
        Ok(StopSignals(set))
    }

    /// The signal that came within `timeout`, if any.
    pub fn wait(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
        // SAFETY: the set is a valid sigset; no siginfo wanted.
        let sig = unsafe { libc::sigtimedwait(self.0.as_ref(), std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }
}

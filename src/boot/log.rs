//! PID 1's logger: every line to `/dev/kmsg` (so `dmesg` and the journal keep it), and to
//! the console when the kernel would not echo it there itself.
//!
//! The kernel echoes a kmsg line to the console when its level is below the console log
//! level (`quiet` lowers that to 4). Writing to both unconditionally would print every line
//! twice; writing to kmsg only would leave a `quiet` boot without its warnings. So: kmsg
//! always, the console only for what the kernel will not show, and under `quiet` only
//! warnings and errors. Every line is also kept in memory for `/run/viver/boot.log`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

pub struct BootLogger {
    kmsg: Mutex<Option<File>>,
    console: Mutex<Option<File>>,
    /// The kernel's console log level when we started (first field of /proc/sys/kernel/printk).
    console_loglevel: u8,
    quiet: std::sync::atomic::AtomicBool,
    debug: std::sync::atomic::AtomicBool,
    lines: Mutex<Vec<String>>,
}

static LOGGER: OnceLock<BootLogger> = OnceLock::new();

/// Seconds since boot, as the kernel stamps its own lines.
pub fn uptime() -> f64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9,
        Err(_) => 0.0,
    }
}

fn kmsg_level(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 5, // notice: a stage line is more than chatter
        log::Level::Debug | log::Level::Trace => 7,
    }
}

impl BootLogger {
    /// Installs the logger. Safe to call once; later calls only return the first one.
    pub fn install() -> &'static BootLogger {
        let logger = LOGGER.get_or_init(|| {
            let kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
            let console = OpenOptions::new().write(true).open("/dev/console").ok();
            let console_loglevel = std::fs::read_to_string("/proc/sys/kernel/printk")
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse().ok()))
                .unwrap_or(7);
            BootLogger {
                kmsg: Mutex::new(kmsg),
                console: Mutex::new(console),
                console_loglevel,
                quiet: false.into(),
                debug: false.into(),
                lines: Mutex::new(Vec::new()),
            }
        });
        // A second install (there is none on the boot path) must not fail the boot.
        let _ = log::set_logger(logger);
        log::set_max_level(log::LevelFilter::Debug);
        logger
    }

    pub fn get() -> Option<&'static BootLogger> {
        LOGGER.get()
    }

    pub fn set_verbosity(&self, quiet: bool, debug: bool) {
        self.quiet.store(quiet, std::sync::atomic::Ordering::Relaxed);
        self.debug.store(debug, std::sync::atomic::Ordering::Relaxed);
    }

    /// Everything logged so far, one line each, with its time stamp.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// A line that must reach the console whatever `quiet` says (the hand-over line, the
    /// failure report).
    pub fn console_always(&self, text: &str) {
        // Level 5 (notice); the kernel echoes it to the console itself unless `quiet`.
        if !self.write_kmsg(5, text) {
            self.write_console(text);
        }
        self.remember(text);
    }

    /// Writes `text` to /dev/kmsg at `level`; true when the kernel will also show it on
    /// the console (so writing it there ourselves would print it twice).
    fn write_kmsg(&self, level: u8, text: &str) -> bool {
        let Ok(mut kmsg) = self.kmsg.lock() else { return false };
        let Some(file) = kmsg.as_mut() else { return false };
        let mut ok = true;
        for line in text.lines() {
            ok &= file.write_all(format!("<{level}>viver: {line}\n").as_bytes()).is_ok();
        }
        ok && level < self.console_loglevel
    }

    fn write_console(&self, text: &str) {
        let stamp = uptime();
        if let Ok(mut console) = self.console.lock() {
            let mut out = String::new();
            for line in text.lines() {
                out.push_str(&format!("[{stamp:12.6}] viver: {line}\n"));
            }
            match console.as_mut() {
                Some(c) => {
                    let _ = c.write_all(out.as_bytes());
                }
                None => {
                    let _ = std::io::stderr().write_all(out.as_bytes());
                }
            }
        }
    }

    fn remember(&self, text: &str) {
        if let Ok(mut lines) = self.lines.lock() {
            let stamp = uptime();
            lines.extend(text.lines().map(|l| format!("[{stamp:12.6}] {l}")));
        }
    }
}

impl log::Log for BootLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info || self.debug.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = match record.level() {
            log::Level::Error => format!("error: {}", record.args()),
            log::Level::Warn => format!("warning: {}", record.args()),
            _ => record.args().to_string(),
        };
        let echoed_by_kernel = self.write_kmsg(kmsg_level(record.level()), &text);
        let quiet = self.quiet.load(std::sync::atomic::Ordering::Relaxed);
        if !echoed_by_kernel && (!quiet || record.level() <= log::Level::Warn) {
            self.write_console(&text);
        }
        self.remember(&text);
    }

    fn flush(&self) {}
}

/// Lets every line through to the console: the kernel's per-writer rate limit on
/// /dev/kmsg (10 lines per 5 s by default) would otherwise swallow a busy boot's log.
/// Returns the old setting, to be put back before the real init starts.
pub fn lift_kmsg_ratelimit() -> Option<String> {
    let path = "/proc/sys/kernel/printk_devkmsg";
    let old = std::fs::read_to_string(path).ok()?.trim().to_string();
    if old == "ratelimit" {
        std::fs::write(path, "on\n").ok()?;
        Some(old)
    } else {
        None
    }
}

pub fn restore_kmsg_ratelimit(old: Option<String>) {
    if let Some(old) = old {
        let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", format!("{old}\n"));
    }
}

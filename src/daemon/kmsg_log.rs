//! The daemon's logger: each line to `/dev/kmsg` as `viver-daemon[PID]: text`, so it is
//! in `dmesg` and the journal whatever the state of the root filesystem. The file is
//! opened once, before the hand-over.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

pub struct KmsgLogger {
    kmsg: Mutex<Option<File>>,
    pid: u32,
}

fn syslog_level(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

impl KmsgLogger {
    /// Installs the logger (info and above; `debug` for more). Without /dev/kmsg (a
    /// test outside a VM without the right), lines go to stderr.
    pub fn install(debug: bool) {
        let kmsg = std::fs::OpenOptions::new().write(true).open("/dev/kmsg").ok();
        let logger = Box::leak(Box::new(KmsgLogger { kmsg: Mutex::new(kmsg), pid: std::process::id() }));
        if log::set_logger(logger).is_ok() {
            log::set_max_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
        }
    }
}

impl log::Log for KmsgLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        let Ok(mut kmsg) = self.kmsg.lock() else { return };
        // One write per line: /dev/kmsg takes one record per write.
        for line in text.lines() {
            let record = format!("<{}>viver-daemon[{}]: {line}\n", syslog_level(record.level()), self.pid);
            let written = kmsg.as_mut().map(|f| f.write_all(record.as_bytes()).is_ok()).unwrap_or(false);
            if !written {
                eprintln!("viver-daemon: {line}");
            }
        }
    }

    fn flush(&self) {}
}

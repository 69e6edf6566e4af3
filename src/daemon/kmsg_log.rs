//! The daemon's logger: each line to `/dev/kmsg` as `viver-daemon[PID]: text`, so it is
//! in `dmesg` and the journal whatever the state of the root filesystem. The file is
//! opened once, before the hand-over.
//!
//! The kernel lets one writer of /dev/kmsg put 10 lines per 5 s through and drops the
//! rest (`printk_devkmsg=ratelimit`, the default once `/init` has put it back). The
//! daemon's lines matter most when many come at once (a boot server taking over, a
//! swarm losing its last holder of a chunk), so the logger paces itself under that
//! limit: a line over it waits in a queue that a thread drains as the limit allows, and
//! only a queue overflow loses lines, said in the next line that gets through.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines per window this writer allows itself (the kernel's burst is 10, its window 5 s
/// in jiffies: a margin on both).
const BURST: usize = 9;
const WINDOW: Duration = Duration::from_millis(5200);
/// Lines waiting before the oldest are dropped.
const QUEUE: usize = 2000;

pub struct KmsgLogger {
    inner: Mutex<Inner>,
    pid: u32,
}

struct Inner {
    kmsg: Option<File>,
    pacer: Pacer,
}

/// Which lines may be written when: at most [`BURST`] in any [`WINDOW`].
#[derive(Default)]
struct Pacer {
    written: VecDeque<Instant>,
    queue: VecDeque<String>,
    dropped: u64,
}

impl Pacer {
    /// Queues `line` and returns the lines that may be written at `now`, in order.
    fn offer(&mut self, line: Option<String>, now: Instant) -> Vec<String> {
        if let Some(line) = line {
            if self.queue.len() >= QUEUE {
                self.queue.pop_front();
                self.dropped += 1;
            }
            self.queue.push_back(line);
        }
        while self.written.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            self.written.pop_front();
        }
        let mut out = Vec::new();
        while self.written.len() < BURST {
            let next = if self.dropped > 0 {
                let n = std::mem::take(&mut self.dropped);
                format!("<4>{n} log lines were dropped (the kernel log's rate limit)\n")
            } else {
                match self.queue.pop_front() {
                    Some(line) => line,
                    None => break,
                }
            };
            self.written.push_back(now);
            out.push(next);
        }
        out
    }
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
        let logger: &'static KmsgLogger =
            Box::leak(Box::new(KmsgLogger { inner: Mutex::new(Inner { kmsg, pacer: Pacer::default() }), pid: std::process::id() }));
        if log::set_logger(logger).is_ok() {
            log::set_max_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
            let _ = std::thread::Builder::new().name("viver-kmsg".into()).spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250));
                logger.write(None);
            });
        }
    }

    fn write(&self, line: Option<String>) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let ready = inner.pacer.offer(line, Instant::now());
        for record in ready {
            let written = inner.kmsg.as_mut().map(|f| f.write_all(record.as_bytes()).is_ok()).unwrap_or(false);
            if !written {
                eprint!("viver-daemon: {}", record.split_once('>').map_or(record.as_str(), |(_, text)| text));
            }
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
        // One write per line: /dev/kmsg takes one record per write.
        for line in text.lines() {
            self.write(Some(format!("<{}>viver-daemon[{}]: {line}\n", syslog_level(record.level()), self.pid)));
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_over_the_rate_limit_wait_and_none_is_lost() {
        let mut pacer = Pacer::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        for n in 0..25 {
            out.extend(pacer.offer(Some(format!("line {n}\n")), t0));
        }
        assert_eq!(out.len(), BURST, "a burst goes through at once, up to the limit");
        assert!(pacer.offer(None, t0 + WINDOW / 2).is_empty(), "nothing more within the window");
        out.extend(pacer.offer(None, t0 + WINDOW));
        out.extend(pacer.offer(None, t0 + WINDOW * 2));
        assert_eq!(out, (0..25).map(|n| format!("line {n}\n")).collect::<Vec<_>>(), "every line, in order");
    }

    #[test]
    fn an_overflow_is_said_in_the_next_line_that_gets_through() {
        let mut pacer = Pacer::default();
        let t0 = Instant::now();
        for n in 0..(BURST + QUEUE + 5) {
            pacer.offer(Some(format!("line {n}\n")), t0);
        }
        let next = pacer.offer(None, t0 + WINDOW);
        assert_eq!(next[0], "<4>5 log lines were dropped (the kernel log's rate limit)\n");
        assert_eq!(next[1], format!("line {}\n", BURST + 5));
    }
}

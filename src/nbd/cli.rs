//! `viver nbd attach|detach`: a network block device from a file or an HTTP URL, on any
//! Linux with nbd.ko.

use super::attach;
use super::source::{BlockSource, FileSource, HttpSource, HttpSourceOptions};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Subcommand)]
pub enum NbdCommand {
    /// Serve an image as /dev/nbdN in the foreground until Ctrl-C / SIGTERM (or detach).
    Attach(AttachArgs),
    /// Disconnect a device (its server, wherever it runs, then exits).
    Detach {
        /// The device, e.g. /dev/nbd0.
        device: String,
    },
}

#[derive(Args)]
pub struct AttachArgs {
    /// The image on an HTTP server (Range requests), read lazily and kept in RAM.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    url: Option<String>,
    /// A local image file or block device.
    #[arg(long)]
    file: Option<PathBuf>,
    #[arg(long, default_value = "/dev/nbd0")]
    device: String,
    /// Export only this many bytes (default: the whole image).
    #[arg(long)]
    size: Option<u64>,
    /// Fetch the whole image into RAM in the background (with --url).
    #[arg(long)]
    fill: bool,
    /// Seconds before the kernel drops a request's socket; 0 = wait for ever.
    #[arg(long, default_value_t = 0)]
    timeout: u64,
    /// Seconds the kernel keeps a dead connection's device for a RECONFIGURE.
    #[arg(long, default_value_t = 3600)]
    dead_timeout: u64,
    /// Chunk size of the RAM cache (with --url).
    #[arg(long, default_value_t = 256 << 10)]
    chunk: u64,
    /// The device is still connected but its server died: hand it this one
    /// (NBD_CMD_RECONFIGURE) instead of connecting anew.
    #[arg(long)]
    reconnect: bool,
    /// Reads served at once.
    #[arg(long, default_value_t = 4)]
    workers: usize,
}

pub fn run(cmd: NbdCommand) -> i32 {
    match cmd {
        NbdCommand::Attach(args) => match attach_foreground(args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("viver nbd attach: {e}");
                1
            }
        },
        NbdCommand::Detach { device } => {
            let Some(index) = super::netlink::device_index(&device) else {
                eprintln!("viver nbd detach: {device} is not /dev/nbdN");
                return 2;
            };
            match attach::detach_index(index) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("viver nbd detach {device}: {e}");
                    1
                }
            }
        }
    }
}

fn attach_foreground(args: AttachArgs) -> Result<(), String> {
    let index = super::netlink::device_index(&args.device).ok_or_else(|| format!("{} is not /dev/nbdN", args.device))?;
    // Block SIGINT/SIGTERM before any thread starts, and wait for them here.
    let signals = crate::sys::stop_signals::StopSignals::block()?;

    let mut http: Option<Arc<HttpSource>> = None;
    let source: Arc<dyn BlockSource> = match (&args.url, &args.file) {
        (Some(url), _) => {
            let options = HttpSourceOptions { chunk_size: args.chunk, size: args.size, ..Default::default() };
            let src = Arc::new(HttpSource::open(url, options).map_err(|e| format!("{url}: {e}"))?);
            http = Some(src.clone());
            src
        }
        (None, Some(file)) => Arc::new(FileSource::open(file, args.size).map_err(|e| e.to_string())?),
        (None, None) => return Err("--url or --file".into()),
    };
    let size = source.size();
    let started = Instant::now();
    let attached = if args.reconnect {
        attach::reattach(index, source, args.workers)
    } else {
        attach::attach(
            Some(index),
            source,
            |c| {
                c.timeout = args.timeout;
                c.dead_conn_timeout = args.dead_timeout;
            },
            args.workers,
        )
    }
    .map_err(|e| format!("{}: {e}", args.device))?;
    log::info!("/dev/nbd{} attached: {size} bytes, read-only", attached.index);
    println!("NBD-ATTACHED /dev/nbd{} {size}", attached.index);
    if args.fill {
        if let Some(src) = &http {
            let src = src.clone();
            std::thread::spawn(move || {
                if let Err(e) = src.fill() {
                    log::warn!("nbd: background fill stopped: {e}");
                }
            });
        }
    }
    loop {
        if attached.finished() {
            break;
        }
        if let Some(sig) = signals.wait(std::time::Duration::from_millis(300)) {
            log::info!("signal {sig}: disconnecting /dev/nbd{}", attached.index);
            break;
        }
    }
    // Unblock reads stalled on a dead server before waiting for the serving thread.
    if let Some(src) = &http {
        src.stop();
    }
    let stats = attached.stats.clone();
    let ended = attached.detach().map_err(|e| format!("detach: {e}"))?;
    let served = stats.bytes_read.load(std::sync::atomic::Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let mut line = format!("NBD-DETACHED {ended:?} served={served} seconds={secs:.2}");
    if let Some(src) = &http {
        let fetched = src.stats.bytes_fetched.load(std::sync::atomic::Ordering::Relaxed);
        line.push_str(&format!(" fetched={fetched} of={size}"));
    }
    println!("{line}");
    Ok(())
}

//! The one error type of the disks module. Every variant names the file, device or
//! value it is about, so a boot log line is enough to find the culprit.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot read sysfs {path}: {source}")]
    Sysfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sysfs attribute {path} has unexpected value {value:?}: {reason}")]
    BadAttribute { path: PathBuf, value: String, reason: &'static str },
    #[error("cannot read device {device} at offset {offset}: {source}")]
    Read {
        device: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open device {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("device node {path}: {reason}")]
    Node { path: PathBuf, reason: String },
    #[error("cannot mount {device} ({fstype}) read-only on {target}: {source}")]
    Mount {
        device: PathBuf,
        target: PathBuf,
        fstype: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("read test on {path} returned no data")]
    EmptyRead { path: PathBuf },
    #[error("viver.media={value:?}: {reason}")]
    MediaSpec { value: String, reason: String },
}

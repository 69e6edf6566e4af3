//! Hardware autodetection without udev or modprobe: the kernel's module tables
//! (built from the .ko files or read from depmod's files, legacy maps too), kmod-exact
//! modalias matching, the sysfs walk and uevent listener, and the parallel loader.

pub mod cli;
pub mod coldplug;
pub mod detect;
pub mod error;
pub mod fnmatch;
pub mod index;
pub mod legacy;
pub mod loader;
pub mod matches;
pub mod modinfo;
pub mod modprobe;
pub mod uevent;

pub use detect::{DetectOptions, DetectReport, Detector, LoadRecord, Settled};
pub use error::{HwError, TableWarning};
pub use index::{Match, ModuleTables};

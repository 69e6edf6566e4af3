//! Hardware autodetection without udev or modprobe: the kernel's module tables
//! (built from the .ko files or read from depmod's files, legacy maps too), kmod-exact
//! modalias matching, the sysfs walk and uevent listener, and the parallel loader.

pub mod cli;
pub mod error;
pub mod fnmatch;
pub mod index;
pub mod legacy;
pub mod modinfo;

pub use error::{HwError, TableWarning};
pub use index::{Match, ModuleTables};

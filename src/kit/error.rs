//! Everything that can go wrong while building an image, an initrd or a boot medium.
//! Each variant names the file, tool or module involved so the person can act on it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{tool} not found: install the Debian package `{package}` (apt-get install {package})")]
    MissingTool { tool: String, package: String },
    #[error("{tool} failed ({status}): {detail}")]
    ToolFailed { tool: String, status: String, detail: String },
    #[error("{0}")]
    BadInput(String),
    #[error("module tables of {release_dir}: {message}")]
    Tables { release_dir: PathBuf, message: String },
    #[error("{path}: not enough free space ({message})")]
    NoSpace { path: PathBuf, message: String },
}

impl KitError {
    /// Wraps an I/O error with the path it concerns; ENOSPC gets its own, clearer message.
    pub fn io(path: &Path, source: std::io::Error) -> KitError {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return KitError::NoSpace { path: path.to_path_buf(), message: source.to_string() };
        }
        KitError::Io { path: path.to_path_buf(), source }
    }
}

/// `result.at(path)?` attaches the path to an I/O error.
pub trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, KitError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T, KitError> {
        self.map_err(|e| KitError::io(path, e))
    }
}

//! Errors and warnings of the hardware engine. Every variant names the file, line,
//! module or device it is about, so a boot log line is enough to find the culprit.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HwError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a kernel module: {reason}")]
    NotAModule { path: PathBuf, reason: String },
    #[error("module directory {0} holds neither modules.dep nor any .ko file")]
    NoModules(PathBuf),
    #[error("no module or alias matches {0:?}")]
    NotFound(String),
    #[error("module {module}: load failed: {errno}")]
    LoadFailed { module: String, errno: nix::errno::Errno },
    #[error("module {module}: {reason}")]
    Module { module: String, reason: String },
    #[error("uevent socket: {0}")]
    Netlink(nix::errno::Errno),
}

impl HwError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> HwError {
        HwError::Io { path: path.into(), source }
    }
}

/// A problem in the input that was skipped; the rest of the tables is still usable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableWarning {
    /// The file (or module) the problem is in.
    pub file: PathBuf,
    /// 1-based line number, when the problem is in a text table.
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for TableWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl TableWarning {
    pub fn at(file: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> TableWarning {
        TableWarning { file: file.into(), line, message: message.into() }
    }
}

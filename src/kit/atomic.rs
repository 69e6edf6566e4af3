//! Outputs are written under a temporary name in the final directory and renamed at the
//! end, so an interrupted or failed run never leaves a half-written file under the name
//! the person asked for.

use super::error::{IoContext, KitError};
use std::path::{Path, PathBuf};

pub struct PendingOutput {
    pub final_path: PathBuf,
    pub temp_path: PathBuf,
    committed: bool,
}

impl PendingOutput {
    pub fn new(final_path: &Path) -> Result<PendingOutput, KitError> {
        let name = final_path.file_name().ok_or_else(|| KitError::BadInput(format!("output {} has no file name", final_path.display())))?;
        let dir = match final_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(KitError::BadInput(format!("output directory {} does not exist", dir.display())));
        }
        let temp_name = format!(".{}.viver-tmp-{}", name.to_string_lossy(), std::process::id());
        let temp_path = dir.join(temp_name);
        // A leftover from an earlier crash with the same pid would confuse appending tools.
        let _ = std::fs::remove_file(&temp_path);
        Ok(PendingOutput { final_path: final_path.to_path_buf(), temp_path, committed: false })
    }

    /// Moves the finished temporary file under its final name.
    pub fn commit(mut self) -> Result<(), KitError> {
        std::fs::rename(&self.temp_path, &self.final_path).at(&self.final_path)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

/// A scratch directory removed when dropped.
pub struct ScratchDir {
    pub path: PathBuf,
}

impl ScratchDir {
    pub fn new(purpose: &str) -> Result<ScratchDir, KitError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
        let path = base.join(format!("viver-kit-{purpose}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).at(&path)?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// SOURCE_DATE_EPOCH when set (reproducible builds), else `fallback`.
pub fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse().ok())
}

//! A local file or block device as the source (tests, and `viver.toram` copies).

use super::{BlockSource, SourceError};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub struct FileSource {
    file: File,
    size: u64,
    name: String,
}

impl FileSource {
    /// Opens `path` read-only; its size is the file's, a block device's capacity, or
    /// `size` when given (which must not exceed it).
    pub fn open(path: &Path, size: Option<u64>) -> Result<FileSource, SourceError> {
        let name = path.display().to_string();
        let io = |source| SourceError::Io { what: name.clone(), offset: 0, len: 0, source };
        let mut file = File::open(path).map_err(io)?;
        // seek(End) gives a block device's capacity too, where metadata says 0.
        let real = file.seek(SeekFrom::End(0)).map_err(io)?;
        let size = match size {
            Some(s) if s > real => return Err(SourceError::OutOfRange { offset: 0, len: 0, size: real }),
            Some(s) => s,
            None => real,
        };
        Ok(FileSource { file, size, name })
    }
}

impl BlockSource for FileSource {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > self.size) {
            return Err(SourceError::OutOfRange { offset, len: buf.len(), size: self.size });
        }
        self.file.read_exact_at(buf, offset).map_err(|source| SourceError::Io { what: self.name.clone(), offset, len: buf.len(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ranges_and_refuses_past_the_end() {
        let dir = std::env::temp_dir().join(format!("viver-nbd-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img");
        std::fs::write(&path, (0..5000u32).map(|i| i as u8).collect::<Vec<_>>()).unwrap();
        let src = FileSource::open(&path, None).unwrap();
        assert_eq!(src.size(), 5000);
        let mut buf = [0u8; 4];
        src.read_at(4996, &mut buf).unwrap();
        assert_eq!(buf, [0x84, 0x85, 0x86, 0x87]);
        assert!(src.read_at(4997, &mut buf).is_err());
        assert!(src.read_at(u64::MAX, &mut buf).is_err());
        assert!(FileSource::open(&path, Some(5001)).is_err());
        assert_eq!(FileSource::open(&path, Some(4096)).unwrap().size(), 4096);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

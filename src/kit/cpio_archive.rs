//! A deterministic newc cpio archive: entries sorted by path (so parents precede their
//! children), uid/gid 0, one fixed mtime, inode numbers given in order. The same inputs
//! give byte-identical archives, which is what makes initrds comparable and cacheable.

use super::error::{IoContext, KitError};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum Content {
    Dir,
    /// A file copied from the host when the archive is written.
    HostFile(PathBuf),
    Bytes(Vec<u8>),
    Symlink(String),
    CharDevice {
        major: u32,
        minor: u32,
    },
}

#[derive(Debug, Clone)]
pub struct Node {
    pub mode: u32,
    pub content: Content,
}

#[derive(Default)]
pub struct Archive {
    nodes: BTreeMap<String, Node>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds a directory and all its missing parents.
    pub fn dir(&mut self, path: &str) {
        let mut prefix = String::new();
        for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.nodes.entry(prefix.clone()).or_insert(Node { mode: 0o755, content: Content::Dir });
        }
    }

    fn parent_dirs(&mut self, path: &str) -> String {
        let path = path.trim_matches('/').to_string();
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        path
    }

    pub fn file(&mut self, path: &str, mode: u32, content: Content) {
        let path = self.parent_dirs(path);
        self.nodes.insert(path, Node { mode, content });
    }

    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path.trim_matches('/'))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Writes the archive; returns the unpacked size (sum of file contents).
    pub fn write<W: Write>(&self, mut out: W, mtime: u32) -> Result<(W, u64), KitError> {
        let mut unpacked = 0u64;
        let sink = Path::new("<archive>");
        for (ino, (path, node)) in self.nodes.iter().enumerate() {
            let (kind, nlink) = match node.content {
                Content::Dir => (S_IFDIR, 2),
                Content::HostFile(_) | Content::Bytes(_) => (S_IFREG, 1),
                Content::Symlink(_) => (S_IFLNK, 1),
                Content::CharDevice { .. } => (S_IFCHR, 1),
            };
            let mut builder = cpio::newc::Builder::new(path)
                .ino(ino as u32 + 1)
                .mode(kind | (node.mode & 0o7777))
                .uid(0)
                .gid(0)
                .nlink(nlink)
                .mtime(mtime);
            if let Content::CharDevice { major, minor } = node.content {
                builder = builder.rdev_major(major).rdev_minor(minor);
            }
            let data: std::borrow::Cow<[u8]> = match &node.content {
                Content::HostFile(src) => std::fs::read(src).at(src)?.into(),
                Content::Bytes(b) => b.as_slice().into(),
                Content::Symlink(target) => target.as_bytes().into(),
                Content::Dir | Content::CharDevice { .. } => (&[][..]).into(),
            };
            let size = u32::try_from(data.len()).map_err(|_| KitError::BadInput(format!("{path}: too large for a cpio archive")))?;
            unpacked += data.len() as u64;
            let mut writer = builder.write(out, size);
            writer.write_all(&data).at(sink)?;
            out = writer.finish().at(sink)?;
        }
        let out = cpio::newc::trailer(out).at(sink)?;
        Ok((out, unpacked))
    }
}

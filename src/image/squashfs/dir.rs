//! Directory listings and path lookup (symlinks inside the image followed).

use super::inode::{Inode, InodeKind};
use super::metadata::Cursor;
use super::{Archive, SquashError, Source};

/// Linux's own limit on symlinks followed in one lookup.
const MAX_HOPS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    /// Reference of its inode (for [`Archive::inode`]).
    pub inode: u64,
    pub kind: u16,
}

impl<S: Source + ?Sized> Archive<'_, S> {
    /// The entries of directory `dir`, in the image's (sorted) order.
    pub fn list(&self, dir: &Inode) -> Result<Vec<Entry>, SquashError> {
        let InodeKind::Dir { start_block, offset, file_size, .. } = dir.kind else {
            return Err(SquashError::corrupt("listing something that is not a directory"));
        };
        let mut remaining = (file_size as usize).saturating_sub(3);
        let block = self.sb.directory_table + u64::from(start_block);
        if block >= self.sb.bytes_used {
            return Err(SquashError::corrupt("directory listing outside the image"));
        }
        let mut cur = Cursor { archive: self, block, offset: usize::from(offset) };
        let mut entries = Vec::new();
        while remaining > 0 {
            if remaining < 12 {
                return Err(SquashError::corrupt("a directory listing ends inside a header"));
            }
            let count = cur.u32()? as usize + 1;
            let start = cur.u32()?;
            let _inode_number = cur.u32()?;
            remaining -= 12;
            if count > 256 {
                return Err(SquashError::corrupt(format!("directory header with {count} entries")));
            }
            for _ in 0..count {
                if remaining < 8 {
                    return Err(SquashError::corrupt("a directory listing ends inside an entry"));
                }
                let offset = cur.u16()?;
                let _inode_offset = cur.u16()?;
                let kind = cur.u16()?;
                let name_size = usize::from(cur.u16()?) + 1;
                remaining -= 8;
                if name_size > remaining || name_size > 256 {
                    return Err(SquashError::corrupt("a directory entry name runs past its listing"));
                }
                let name = cur.take(name_size)?;
                remaining -= name_size;
                entries.push(Entry { name, inode: (u64::from(start) << 16) | u64::from(offset), kind });
            }
        }
        Ok(entries)
    }

    /// The inode at `path` (absolute, inside the image), following symlinks in every
    /// component, the last one too. Returns the resolved path with it.
    pub fn lookup(&self, path: &str) -> Result<(String, Inode), SquashError> {
        self.lookup_from(path, true)
    }

    /// Like [`Archive::lookup`]; `follow_last: false` returns a final symlink itself.
    pub fn lookup_from(&self, path: &str, follow_last: bool) -> Result<(String, Inode), SquashError> {
        let root = self.root()?;
        // The directories from the root down to where we are, as (name, inode).
        let mut stack: Vec<(Vec<u8>, Inode)> = Vec::new();
        let mut pending: Vec<Vec<u8>> = components(path.as_bytes());
        pending.reverse();
        let mut hops = 0;
        while let Some(name) = pending.pop() {
            let current = stack.last().map(|(_, i)| i).unwrap_or(&root).clone();
            match name.as_slice() {
                b"." => continue,
                b".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let entries = self.list(&current).map_err(|e| match e {
                SquashError::Corrupt(_) if !matches!(current.kind, InodeKind::Dir { .. }) => {
                    SquashError::NotFound(path.to_string())
                }
                other => other,
            })?;
            let entry = entries.into_iter().find(|e| e.name == name).ok_or_else(|| SquashError::NotFound(path.to_string()))?;
            let inode = self.inode(entry.inode)?;
            if let InodeKind::Symlink { target } = &inode.kind {
                if pending.is_empty() && !follow_last {
                    stack.push((name, inode));
                    break;
                }
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(SquashError::Loop(path.to_string()));
                }
                if target.first() == Some(&b'/') {
                    stack.clear();
                }
                let mut parts = components(target);
                parts.reverse();
                pending.extend(parts);
                continue;
            }
            stack.push((name, inode));
        }
        let resolved: Vec<String> = stack.iter().map(|(n, _)| String::from_utf8_lossy(n).into_owned()).collect();
        let inode = stack.pop().map(|(_, i)| i).unwrap_or(root);
        Ok((format!("/{}", resolved.join("/")), inode))
    }
}

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|b| *b == b'/').filter(|c| !c.is_empty()).map(<[u8]>::to_vec).collect()
}

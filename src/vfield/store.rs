//! What a node holds for the swarm: verified chunks, within a budget.
//!
//! A seed holds the whole image in its file; every chunk it reads is checked against the
//! manifest before it is served (a file changed under the seed is refused, not spread).
//! A joiner holds chunks in RAM up to `budget` bytes. When the budget is full, the chunk
//! given up is the one with the most other holders ([`Store::victim`]): what the node
//! keeps follows the swarm's replica counts, not only what the node itself read.

use super::disk_store::DiskSlots;
use super::meta::Meta;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// A chunk not kept: every held chunk is at least as rare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not kept: every held chunk is as rare")]
pub struct NotKept;

pub enum Store {
    /// The whole image in a file (a seed).
    File {
        file: File,
        path: String,
    },
    Ram {
        budget: u64,
        chunks: HashMap<u32, Arc<Vec<u8>>>,
        held: u64,
    },
    /// Slots on a disk, partition or file the user named (kept across reboots).
    Disk(DiskSlots),
}

impl Store {
    pub fn ram(budget: u64) -> Store {
        Store::Ram { budget, chunks: HashMap::new(), held: 0 }
    }

    /// A seed of a file opened earlier (a boot server opens everything before the hand-over).
    pub fn open_file(file: File, label: String) -> Store {
        Store::File { file, path: label }
    }

    /// A store on the disk, partition or file at `path`, at most `budget` bytes (None: all
    /// of it); see [`DiskSlots::open`] for what it refuses.
    pub fn disk(path: &std::path::Path, meta: &Meta, budget: Option<u64>) -> Result<Store, String> {
        DiskSlots::open(path, meta, budget).map(Store::Disk)
    }

    pub fn file(path: &std::path::Path) -> Result<Store, String> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Store::File { file, path: path.display().to_string() })
    }

    pub fn budget(&self, meta: &Meta) -> u64 {
        match self {
            Store::File { .. } => meta.manifest.size,
            Store::Ram { budget, .. } => *budget,
            Store::Disk(disk) => disk.budget(),
        }
    }

    pub fn held_bytes(&self, meta: &Meta) -> u64 {
        match self {
            Store::File { .. } => meta.manifest.size,
            Store::Ram { held, .. } => *held,
            Store::Disk(disk) => disk.held_bytes(),
        }
    }

    pub fn holds(&self, index: u32) -> bool {
        match self {
            Store::File { .. } => true,
            Store::Ram { chunks, .. } => chunks.contains_key(&index),
            Store::Disk(disk) => disk.holds(index),
        }
    }

    pub fn held(&self, meta: &Meta) -> Vec<bool> {
        (0..meta.chunk_count() as u32).map(|i| self.holds(i)).collect()
    }

    /// A held chunk, verified. A seed's file that no longer matches is an error.
    pub fn get(&self, meta: &Meta, index: u32) -> Result<Option<Arc<Vec<u8>>>, String> {
        match self {
            Store::Ram { chunks, .. } => Ok(chunks.get(&index).cloned()),
            Store::Disk(disk) => disk.get(meta, index),
            Store::File { file, path } => {
                if index as usize >= meta.chunk_count() {
                    return Ok(None);
                }
                let (start, _) = meta.layout.range(index as u64);
                let mut data = vec![0u8; meta.chunk_len(index)];
                file.read_exact_at(&mut data, start).map_err(|e| format!("{path}: chunk {index}: {e}"))?;
                meta.verify(index, &data).map_err(|e| format!("{path}: {e}: the file changed, not serving it"))?;
                Ok(Some(Arc::new(data)))
            }
        }
    }

    /// Would a new chunk fit without giving one up?
    pub fn has_room(&self, meta: &Meta, index: u32) -> bool {
        match self {
            Store::File { .. } => false,
            Store::Ram { budget, held, .. } => held + meta.chunk_len(index) as u64 <= *budget,
            Store::Disk(disk) => disk.has_room(),
        }
    }

    /// The held chunk to give up for a chunk with `incoming` other holders: the one with
    /// the most other holders, if it has more than `incoming` (else keeping is better).
    pub fn victim(&self, incoming: u32, holders: impl Fn(u32) -> u32) -> Option<u32> {
        let held: Vec<u32> = match self {
            Store::File { .. } => return None,
            Store::Ram { chunks, .. } => chunks.keys().copied().collect(),
            Store::Disk(disk) => disk.indices().collect(),
        };
        let (index, most) = held.into_iter().map(|i| (i, holders(i))).max_by_key(|&(i, h)| (h, std::cmp::Reverse(i)))?;
        (most > incoming).then_some(index)
    }

    /// Keeps a verified chunk, giving up others as the budget needs; returns what was
    /// given up (to announce), or `Err` with the chunk not kept when keeping it would
    /// cost a rarer one.
    pub fn insert(&mut self, meta: &Meta, index: u32, data: Arc<Vec<u8>>, holders: impl Fn(u32) -> u32) -> Result<Vec<u32>, NotKept> {
        if self.holds(index) {
            return Ok(Vec::new());
        }
        let mut dropped = Vec::new();
        while !self.has_room(meta, index) {
            let victim = self.victim(holders(index), &holders).ok_or(NotKept)?;
            self.remove(meta, victim);
            dropped.push(victim);
        }
        match self {
            Store::Ram { chunks, held, .. } => {
                *held += data.len() as u64;
                chunks.insert(index, data);
            }
            Store::Disk(disk) => {
                // A disk that fails a write keeps the chunk out; its reader has it anyway.
                if let Err(e) = disk.insert(index, &data) {
                    log::warn!("V-FIELD: {e}");
                    return Err(NotKept);
                }
            }
            Store::File { .. } => {}
        }
        Ok(dropped)
    }

    pub fn remove(&mut self, meta: &Meta, index: u32) {
        match self {
            Store::Ram { chunks, held, .. } => {
                if chunks.remove(&index).is_some() {
                    *held -= meta.chunk_len(index) as u64;
                }
            }
            Store::Disk(disk) => disk.remove(meta, index),
            Store::File { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(dir: &std::path::Path) -> (Meta, Vec<u8>) {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("img.bin");
        let data: Vec<u8> = (0..(4u32 << 16)).map(|i| (i * 31 % 255) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        (Meta::for_file(&path, 64 << 10).unwrap(), data)
    }

    #[test]
    fn a_full_store_gives_up_the_most_replicated_chunk_and_keeps_the_rarest() {
        let dir = std::env::temp_dir().join(format!("viver-store-{}", std::process::id()));
        let (meta, data) = meta(&dir);
        let chunk = |i: usize| Arc::new(data[i << 16..(i + 1) << 16].to_vec());
        let mut store = Store::ram(2 << 16);
        let holders = |i: u32| [5, 1, 3, 0][i as usize];
        assert_eq!(store.insert(&meta, 0, chunk(0), holders), Ok(vec![]));
        assert_eq!(store.insert(&meta, 1, chunk(1), holders), Ok(vec![]));
        // Chunk 3 has no other holder: chunk 0 (5 holders) makes room.
        assert_eq!(store.insert(&meta, 3, chunk(3), holders), Ok(vec![0]));
        // Chunk 2 (3 holders) is not worth chunk 1 (1) nor chunk 3 (0).
        assert_eq!(store.insert(&meta, 2, chunk(2), holders), Err(NotKept));
        assert_eq!(store.held(&meta), [false, true, false, true]);
        assert_eq!(store.held_bytes(&meta), 2 << 16);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_seed_refuses_a_file_changed_under_it() {
        let dir = std::env::temp_dir().join(format!("viver-store-seed-{}", std::process::id()));
        let (meta, mut data) = meta(&dir);
        let store = Store::file(&dir.join("img.bin")).unwrap();
        assert!(store.get(&meta, 1).unwrap().is_some());
        data[(1 << 16) + 5] ^= 0xff;
        std::fs::write(dir.join("img.bin"), &data).unwrap();
        assert!(store.get(&meta, 1).unwrap_err().contains("changed"));
        assert!(store.get(&meta, 0).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

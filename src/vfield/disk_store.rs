//! A V-FIELD store on a disk, a partition or a file the user named
//! (`viver.vfield.disk=`, `viver vfield --store-disk`): chunks in fixed slots, so a node
//! holds more than its RAM allows and keeps what it held across a reboot.
//!
//! Layout: a 4 KiB header (magic, the swarm's info hash, chunk size, slot count), the
//! slot table (one little-endian u32 chunk index per slot, `u32::MAX` when free) and the
//! slots, 4 KiB aligned. A chunk's data is written before its table entry, and every chunk
//! is checked against the manifest when the store is opened and again on every read: a
//! disk that rots or a store of another image never gives an unverified byte.
//!
//! Never a disk by surprise: a device is used only if it already is a V-FIELD store (of
//! any image) or its first MiB is blank; anything else is refused with what to do.

use super::meta::Meta;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

const MAGIC: &[u8; 16] = b"VIVER-VFIELD-S1\n";
const HEADER: u64 = 4096;
const FREE: u32 = u32::MAX;
/// The start that must be blank on a device not yet a store.
const BLANK_CHECK: usize = 1 << 20;

pub struct DiskSlots {
    file: File,
    path: String,
    chunk: u64,
    data_start: u64,
    /// Slot -> chunk held there.
    slots: Vec<Option<u32>>,
    /// Chunk -> its slot.
    at: HashMap<u32, usize>,
    held: u64,
}

fn align(n: u64) -> u64 {
    n.div_ceil(4096) * 4096
}

/// Slots that fit in `size` bytes (header, table and data) with chunks of `chunk`.
fn slots_for(size: u64, chunk: u64) -> u64 {
    let mut slots = size.saturating_sub(HEADER) / (chunk + 4);
    while slots > 0 && align(HEADER + 4 * slots) + slots * chunk > size {
        slots -= 1;
    }
    slots
}

impl DiskSlots {
    /// Opens the store at `path` for `meta`'s swarm, at most `budget` bytes of chunks
    /// (None: the whole device). Chunks of this image already there are checked and kept.
    pub fn open(path: &std::path::Path, meta: &Meta, budget: Option<u64>) -> Result<DiskSlots, String> {
        let shown = path.display().to_string();
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| format!("{shown}: {e}"))?;
        let size = device_size(&file).map_err(|e| format!("{shown}: {e}"))?;
        let chunk = meta.layout.chunk;
        let mut head = vec![0u8; HEADER as usize];
        let got = read_up_to(&file, &mut head, 0).map_err(|e| format!("{shown}: {e}"))?;
        let is_store = got >= 64 && &head[..16] == MAGIC;
        if !is_store {
            let mut start = vec![0u8; BLANK_CHECK.min(size as usize)];
            read_up_to(&file, &mut start, 0).map_err(|e| format!("{shown}: {e}"))?;
            if start.iter().any(|b| *b != 0) {
                return Err(format!(
                    "{shown} holds data (its first MiB is not blank) and is no V-FIELD store: not touching it. \
                     To give it to V-FIELD, blank its start (wipefs -a {shown}; dd if=/dev/zero of={shown} bs=1M count=1)"
                ));
            }
        }
        let slots = slots_for(size, chunk).min(budget.map_or(u64::MAX, |b| b / chunk)).min(meta.chunk_count() as u64);
        let same = is_store
            && head[16..48] == meta.info_hash
            && u64::from_le_bytes(head[48..56].try_into().unwrap_or_default()) == chunk
            && u64::from_le_bytes(head[56..64].try_into().unwrap_or_default()) == slots;
        if slots == 0 {
            return Err(format!("{shown}: {size} bytes hold no chunk of {chunk} bytes"));
        }
        let data_start = align(HEADER + 4 * slots);
        let mut store =
            DiskSlots { file, path: shown.clone(), chunk, data_start, slots: vec![None; slots as usize], at: HashMap::new(), held: 0 };
        if same {
            store.load(meta)?;
        } else {
            // Another image, chunk size or budget: start empty (the old chunks are useless).
            let table = vec![0xffu8; 4 * slots as usize];
            store.file.write_all_at(&table, HEADER).map_err(|e| format!("{shown}: {e}"))?;
            head = vec![0u8; HEADER as usize];
            head[..16].copy_from_slice(MAGIC);
            head[16..48].copy_from_slice(&meta.info_hash);
            head[48..56].copy_from_slice(&chunk.to_le_bytes());
            head[56..64].copy_from_slice(&slots.to_le_bytes());
            store.file.write_all_at(&head, 0).map_err(|e| format!("{shown}: {e}"))?;
            store.file.sync_data().map_err(|e| format!("{shown}: {e}"))?;
        }
        log::info!(
            "V-FIELD: store on {shown}: {} slots of {} KiB, {} chunks of this image kept from before{}",
            store.slots.len(),
            chunk >> 10,
            store.at.len(),
            if same { "" } else { " (made new: another image, chunk size or budget before)" }
        );
        Ok(store)
    }

    /// Reads the slot table, keeping the chunks that still match the manifest.
    fn load(&mut self, meta: &Meta) -> Result<(), String> {
        let mut table = vec![0u8; 4 * self.slots.len()];
        self.file.read_exact_at(&mut table, HEADER).map_err(|e| format!("{}: slot table: {e}", self.path))?;
        for slot in 0..self.slots.len() {
            let index = u32::from_le_bytes(table[4 * slot..4 * slot + 4].try_into().unwrap_or([0xff; 4]));
            if index == FREE || index as usize >= meta.chunk_count() || self.at.contains_key(&index) {
                continue;
            }
            match self.read_slot(meta, slot, index) {
                Ok(_) => {
                    self.slots[slot] = Some(index);
                    self.at.insert(index, slot);
                    self.held += meta.chunk_len(index) as u64;
                }
                Err(e) => {
                    log::warn!("V-FIELD: {e}: slot {slot} freed");
                    let _ = self.file.write_all_at(&FREE.to_le_bytes(), HEADER + 4 * slot as u64);
                }
            }
        }
        Ok(())
    }

    fn read_slot(&self, meta: &Meta, slot: usize, index: u32) -> Result<Vec<u8>, String> {
        let mut data = vec![0u8; meta.chunk_len(index)];
        self.file
            .read_exact_at(&mut data, self.data_start + slot as u64 * self.chunk)
            .map_err(|e| format!("{}: chunk {index}: {e}", self.path))?;
        meta.verify(index, &data).map_err(|e| format!("{}: {e}", self.path))?;
        Ok(data)
    }

    pub fn budget(&self) -> u64 {
        self.slots.len() as u64 * self.chunk
    }

    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    pub fn holds(&self, index: u32) -> bool {
        self.at.contains_key(&index)
    }

    pub fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.at.keys().copied()
    }

    pub fn has_room(&self) -> bool {
        self.at.len() < self.slots.len()
    }

    /// A held chunk, checked again (the disk may have changed since it was written).
    pub fn get(&self, meta: &Meta, index: u32) -> Result<Option<Arc<Vec<u8>>>, String> {
        let Some(&slot) = self.at.get(&index) else { return Ok(None) };
        self.read_slot(meta, slot, index).map(|d| Some(Arc::new(d)))
    }

    /// Writes a verified chunk into a free slot (the caller made room).
    pub fn insert(&mut self, index: u32, data: &[u8]) -> Result<(), String> {
        let slot = self.slots.iter().position(|s| s.is_none()).ok_or_else(|| format!("{}: no free slot", self.path))?;
        self.file.write_all_at(data, self.data_start + slot as u64 * self.chunk).map_err(|e| format!("{}: {e}", self.path))?;
        self.file.write_all_at(&index.to_le_bytes(), HEADER + 4 * slot as u64).map_err(|e| format!("{}: {e}", self.path))?;
        self.slots[slot] = Some(index);
        self.at.insert(index, slot);
        self.held += data.len() as u64;
        Ok(())
    }

    pub fn remove(&mut self, meta: &Meta, index: u32) {
        if let Some(slot) = self.at.remove(&index) {
            self.slots[slot] = None;
            self.held -= meta.chunk_len(index) as u64;
            if let Err(e) = self.file.write_all_at(&FREE.to_le_bytes(), HEADER + 4 * slot as u64) {
                log::warn!("V-FIELD: {}: freeing slot {slot}: {e}", self.path);
            }
        }
    }
}

/// The size of a file or a block device (whose metadata says 0).
fn device_size(file: &File) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    let size = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(size)
}

/// Reads what there is of `buf.len()` bytes at `offset` (a short device reads short).
fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(name: &str) -> (std::path::PathBuf, Meta, Vec<u8>) {
        let dir = std::env::temp_dir().join(format!("viver-disk-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..(8u32 << 16) + 1000).map(|i| (i.wrapping_mul(2654435761) >> 9) as u8).collect();
        std::fs::write(dir.join("img.bin"), &data).unwrap();
        let meta = Meta::for_file(&dir.join("img.bin"), 64 << 10).unwrap();
        (dir, meta, data)
    }

    fn chunk(data: &[u8], i: usize) -> Vec<u8> {
        data[i << 16..((i + 1) << 16).min(data.len())].to_vec()
    }

    #[test]
    fn chunks_written_survive_a_reopen_and_a_rotten_one_is_dropped() {
        let (dir, meta, data) = setup("reopen");
        let disk = dir.join("disk.img");
        std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
        let mut store = DiskSlots::open(&disk, &meta, Some(4 << 16)).unwrap();
        assert_eq!(store.budget(), 4 << 16);
        for i in [3, 8, 1] {
            store.insert(i, &chunk(&data, i as usize)).unwrap();
        }
        store.remove(&meta, 1);
        assert_eq!(*store.get(&meta, 8).unwrap().unwrap(), chunk(&data, 8), "the short last chunk");
        drop(store);
        let again = DiskSlots::open(&disk, &meta, Some(4 << 16)).unwrap();
        let mut held: Vec<u32> = again.indices().collect();
        held.sort();
        assert_eq!(held, [3, 8], "what was held comes back, the removed chunk does not");
        assert_eq!(again.held_bytes(), (1 << 16) + 1000);
        drop(again);
        // One byte of chunk 3 rots on the disk: it is dropped, not served.
        let mut bytes = std::fs::read(&disk).unwrap();
        let at = bytes.windows(64).position(|w| w == &chunk(&data, 3)[..64]).unwrap();
        bytes[at + 100] ^= 1;
        std::fs::write(&disk, &bytes).unwrap();
        let rotten = DiskSlots::open(&disk, &meta, Some(4 << 16)).unwrap();
        assert!(!rotten.holds(3) && rotten.holds(8));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_disk_with_data_on_it_is_never_touched() {
        let (dir, meta, _) = setup("foreign");
        let disk = dir.join("disk.img");
        let mut content = vec![0u8; 2 << 20];
        content[1080..1082].copy_from_slice(&[0x53, 0xef]); // an ext4 superblock's magic
        std::fs::write(&disk, &content).unwrap();
        let err = DiskSlots::open(&disk, &meta, None).err().unwrap();
        assert!(err.contains("holds data") && err.contains("wipefs"), "{err}");
        assert!(std::fs::read(&disk).unwrap() == content, "the refused disk was written");
        // Too small for one chunk: refused too.
        std::fs::write(&disk, vec![0u8; 8192]).unwrap();
        assert!(DiskSlots::open(&disk, &meta, None).err().unwrap().contains("hold no chunk"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_store_of_another_image_starts_empty() {
        let (dir, meta, data) = setup("other");
        let disk = dir.join("disk.img");
        std::fs::write(&disk, vec![0u8; 2 << 20]).unwrap();
        let mut store = DiskSlots::open(&disk, &meta, None).unwrap();
        store.insert(0, &chunk(&data, 0)).unwrap();
        drop(store);
        std::fs::write(dir.join("other.bin"), vec![7u8; 300_000]).unwrap();
        let other = Meta::for_file(&dir.join("other.bin"), 64 << 10).unwrap();
        let store = DiskSlots::open(&disk, &other, None).unwrap();
        assert_eq!(store.indices().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! What a swarm shares: one image described by its manifest. The manifest's chunk hashes
//! are BEP 52's piece layer and its `chunks.root` the file's `pieces root`, so the
//! BitTorrent v2 info dictionary (and its info hash, the swarm's name on the wire) is
//! derived from the manifest alone, and `.torrent` files for standard clients too.
//!
//! A joiner gets the manifest text from a peer and accepts it only as the trust rules
//! say ([`crate::image::trust`]): with trusted keys, only a manifest one of them signed.

use super::bencode::Value;
use crate::image::chunks::{self, Layout};
use crate::image::manifest::{Chunks, Manifest, FORMAT_V2};
use crate::image::trust::{self, TrustedKeys};
use crate::nbd::source::{ChunkVerifier, ManifestChunks};
use sha2::{Digest, Sha256};
use std::path::Path;

pub struct Meta {
    /// The manifest's text as signed and shipped (what joiners are given).
    pub text: Vec<u8>,
    pub manifest: Manifest,
    pub layout: Layout,
    verifier: ManifestChunks,
    /// SHA-256 of the bencoded info dictionary (BEP 52); the wire carries its first 20 bytes.
    pub info_hash: [u8; 32],
}

impl Meta {
    /// From a manifest's text; `origin` names it in errors.
    pub fn from_text(text: Vec<u8>, origin: &str) -> Result<Meta, String> {
        let string = std::str::from_utf8(&text).map_err(|_| format!("{origin}: manifest is not UTF-8"))?;
        let manifest = Manifest::parse(string, origin).map_err(|e| e.to_string())?;
        let verifier = ManifestChunks::from_manifest(&manifest)?;
        let chunks = manifest.chunks.as_ref().ok_or_else(|| format!("{origin}: no chunk hashes"))?;
        if chunks.size > u32::MAX as u64 || chunks.layout(manifest.size).count() > u32::MAX as u64 {
            return Err(format!("{origin}: chunk size or count does not fit the wire's 32-bit indices"));
        }
        let layout = chunks.layout(manifest.size);
        let info_hash = Sha256::digest(info_dict(&manifest, chunks).encode()).into();
        Ok(Meta { text, manifest, layout, verifier, info_hash })
    }

    /// A kit image's manifest, `IMAGE` with `.toml` for `.squashfs`, or any file: its
    /// hashes computed now, in chunks of `chunk` bytes.
    pub fn for_file(path: &Path, chunk: u64) -> Result<Meta, String> {
        let shown = path.display().to_string();
        let beside = path.with_extension("toml");
        if beside.exists() && beside != path {
            let text = std::fs::read(&beside).map_err(|e| format!("{}: {e}", beside.display()))?;
            let meta = Meta::from_text(text, &beside.display().to_string())?;
            let size = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?.len();
            if size != meta.manifest.size {
                return Err(format!("{shown} has {size} bytes, its manifest {} says {}", beside.display(), meta.manifest.size));
            }
            return Ok(meta);
        }
        let mut file = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
        let digest = chunks::digest(&mut file, chunk).map_err(|e| format!("{shown}: {e}"))?;
        if digest.size == 0 {
            return Err(format!("{shown} is empty: nothing to share"));
        }
        let hex = chunks::hex(&digest.sha256);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let manifest = Manifest {
            format: FORMAT_V2,
            id: crate::image::manifest::id_from_checksum(&hex),
            name: name.clone(),
            image: name,
            created: 0,
            size: digest.size,
            checksum: format!("sha256:{hex}"),
            compressor: "none".into(),
            kernels: Vec::new(),
            chunks: Some(Chunks::from_digest(&digest)),
            verity: None,
            profile: None,
            seal: None,
        };
        Meta::from_text(manifest.to_signed_text(None).into_bytes(), &shown)
    }

    /// Checks the manifest against the node's trusted keys (none: accepted, unauthenticated).
    pub fn check_trust(&self, keys: &TrustedKeys) -> Result<trust::Decision, String> {
        trust::check(keys, Some(&self.manifest)).map_err(|e| format!("manifest {}: {e}", self.manifest.id))
    }

    pub fn chunk_count(&self) -> usize {
        self.layout.count() as usize
    }

    pub fn chunk_len(&self, index: u32) -> usize {
        let (start, end) = self.layout.range(index as u64);
        (end - start) as usize
    }

    /// Is `data` chunk `index`, byte for byte as the manifest says?
    pub fn verify(&self, index: u32, data: &[u8]) -> Result<(), String> {
        self.verifier.verify(index as u64, data)
    }

    /// The 20 bytes BEP 52 puts in the handshake.
    pub fn wire_hash(&self) -> [u8; 20] {
        let mut h = [0u8; 20];
        h.copy_from_slice(&self.info_hash[..20]);
        h
    }

    /// A BitTorrent v2 `.torrent` (info dictionary plus piece layers) for standard clients.
    pub fn torrent(&self) -> Vec<u8> {
        let Some(chunks) = self.manifest.chunks.as_ref() else { return Vec::new() };
        let mut top = vec![("info", info_dict(&self.manifest, chunks))];
        if self.manifest.size > chunks.size {
            let layer: Vec<u8> = chunks.parsed_hashes().unwrap_or_default().concat();
            let root = chunks.root_hash().unwrap_or_default();
            top.push(("piece layers", Value::Dict([(root.to_vec(), Value::Bytes(layer))].into_iter().collect())));
        }
        Value::Dict(top.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect()).encode()
    }
}

/// BEP 52's info dictionary of a one-file torrent.
fn info_dict(manifest: &Manifest, chunks: &Chunks) -> Value {
    let root = chunks.root_hash().unwrap_or_default();
    let file = Value::dict([("length", Value::Int(manifest.size as i64)), ("pieces root", Value::bytes(root.to_vec()))]);
    let tree = Value::Dict([(manifest.image.as_bytes().to_vec(), Value::dict([("", file)]))].into_iter().collect());
    Value::dict([
        ("file tree", tree),
        ("meta version", Value::Int(2)),
        ("name", Value::bytes(manifest.image.as_bytes())),
        ("piece length", Value::Int(chunks.size as i64)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_file_gets_a_manifest_an_info_hash_and_a_torrent() {
        let dir = std::env::temp_dir().join(format!("viver-meta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("blob.bin");
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let meta = Meta::for_file(&path, 256 << 10).unwrap();
        assert_eq!(meta.chunk_count(), 3);
        assert_eq!(meta.chunk_len(2), 600_000 - (512 << 10));
        meta.verify(0, &data[..256 << 10]).unwrap();
        assert!(meta.verify(1, &data[..256 << 10]).is_err());
        // The text a joiner receives describes the same swarm.
        let again = Meta::from_text(meta.text.clone(), "again").unwrap();
        assert_eq!(again.info_hash, meta.info_hash);
        let torrent = super::super::bencode::decode(&meta.torrent()).unwrap();
        let info = torrent.get("info").unwrap();
        assert_eq!(info.get("meta version").and_then(Value::as_int), Some(2));
        assert_eq!(Sha256::digest(info.encode()).as_slice(), &meta.info_hash);
        let layers = torrent.get("piece layers").and_then(Value::as_dict).unwrap();
        assert_eq!(layers.values().next().and_then(Value::as_bytes).map(<[u8]>::len), Some(3 * 32));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

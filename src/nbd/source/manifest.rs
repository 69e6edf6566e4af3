//! The manifest's chunk hashes as a [`ChunkVerifier`]: a netbooted node serves the
//! kernel no byte of the image that did not match the manifest it accepted.

use super::http::ChunkVerifier;
use crate::image::chunks::{Hash, Layout};
use crate::image::manifest::Manifest;

pub struct ManifestChunks {
    layout: Layout,
    hashes: Vec<Hash>,
}

impl ManifestChunks {
    /// Needs a format 2 manifest (per-chunk hashes, validated when it was parsed); a
    /// format 1 manifest has only the whole image's SHA-256, which no lazy read can check.
    pub fn from_manifest(manifest: &Manifest) -> Result<ManifestChunks, String> {
        let chunks = manifest.chunks.as_ref().ok_or_else(|| {
            format!(
                "manifest {} (format {}) has no chunk hashes: a network boot cannot check what it reads \
                 (make the image again with this kit, or use viver.toram)",
                manifest.id, manifest.format
            )
        })?;
        let hashes = chunks.parsed_hashes().ok_or("manifest chunk hashes are not 64 hex digits each")?;
        let layout = chunks.layout(manifest.size);
        if hashes.len() as u64 != layout.count() {
            return Err(format!("manifest lists {} chunk hashes, the image needs {}", hashes.len(), layout.count()));
        }
        Ok(ManifestChunks { layout, hashes })
    }
}

impl ChunkVerifier for ManifestChunks {
    fn chunk_size(&self) -> u64 {
        self.layout.chunk
    }

    fn verify(&self, index: u64, data: &[u8]) -> Result<(), String> {
        let want = self.hashes.get(index as usize).ok_or_else(|| format!("chunk {index} is past the image's end"))?;
        let (start, end) = self.layout.range(index);
        if data.len() as u64 != end - start {
            return Err(format!("chunk {index} has {} bytes, the manifest says {}", data.len(), end - start));
        }
        if &self.layout.chunk_hash(data) == want {
            Ok(())
        } else {
            Err(format!("chunk {index} does not match the manifest's hash"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::chunks;

    fn manifest_of(data: &[u8], chunk: u64) -> Manifest {
        let digest = chunks::digest(&mut &data[..], chunk).unwrap();
        let sha = chunks::hex(&digest.sha256);
        let text = format!(
            "format = 2\nid = \"{}\"\nname = \"t\"\nimage = \"t.squashfs\"\ncreated = 0\nsize = {}\nchecksum = \"sha256:{sha}\"\ncompressor = \"gzip\"\n{}",
            crate::image::manifest::id_from_checksum(&sha),
            data.len(),
            toml::to_string(&toml::Table::from_iter([(
                "chunks".to_string(),
                toml::Value::try_from(crate::image::manifest::Chunks::from_digest(&digest)).unwrap()
            )]))
            .unwrap()
        );
        Manifest::parse(&text, "t.toml").unwrap()
    }

    #[test]
    fn accepts_the_chunks_and_refuses_a_flipped_byte_or_a_short_read() {
        let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let verifier = ManifestChunks::from_manifest(&manifest_of(&data, 256 << 10)).unwrap();
        assert_eq!(verifier.chunk_size(), 256 << 10);
        for index in 0..3u64 {
            let (s, e) = (index as usize * (256 << 10), ((index as usize + 1) * (256 << 10)).min(data.len()));
            verifier.verify(index, &data[s..e]).unwrap();
        }
        let mut bad = data[..256 << 10].to_vec();
        bad[1000] ^= 1;
        assert!(verifier.verify(0, &bad).unwrap_err().contains("does not match"));
        assert!(verifier.verify(2, &data[512 << 10..600_000]).unwrap_err().contains("bytes"));
        assert!(verifier.verify(3, &[]).is_err());
    }
}

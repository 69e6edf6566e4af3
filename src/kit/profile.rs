//! `viver-kit profile IMAGE RECORDING`: ships a recorded boot profile
//! (`/run/viver/vfield-profile.toml` of a boot with `viver.vfield.record`) in the image's
//! manifest, so every V-FIELD node of the image prefetches what its boot will read.
//!
//! Only the manifest changes (the image's bytes, id and chunk hashes stay, so nodes with
//! the old manifest and the new one share one swarm). A signed manifest is signed again
//! with `--sign KEY` or refused: the profile changes the signed bytes, and a signature
//! must never vanish without the person asking.

use super::atomic::PendingOutput;
use super::error::{IoContext, KitError};
use super::image::{load_secret_key, manifest_path_for};
use crate::image::manifest::Manifest;
use crate::image::profile::Recorded;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Shipped {
    pub manifest_path: PathBuf,
    pub chunks: usize,
    pub chunk_count: u64,
    pub signed: bool,
}

/// Puts the recording at `recording` into the manifest beside `image` (`None`: takes the
/// profile out), signing with `sign` when given.
pub fn ship(image: &Path, recording: Option<&Path>, sign: Option<&Path>) -> Result<Shipped, KitError> {
    let manifest_path = manifest_path_for(image);
    let mut manifest = Manifest::load(&manifest_path).map_err(|e| KitError::BadInput(e.to_string()))?;
    let chunks = manifest.chunks.clone().ok_or_else(|| {
        KitError::BadInput(format!("{}: format 1 has no chunk hashes, so no profile; rebuild the image", manifest_path.display()))
    })?;
    let on_disk = std::fs::metadata(image).at(image)?.len();
    if on_disk != manifest.size {
        return Err(KitError::BadInput(format!(
            "{} has {on_disk} bytes, its manifest says {}: not the image this manifest describes",
            image.display(),
            manifest.size
        )));
    }
    let key = sign.map(load_secret_key).transpose()?;
    if manifest.seal.is_some() && key.is_none() {
        return Err(KitError::BadInput(format!(
            "{} is signed, and the profile changes what was signed: give --sign KEY to sign it again",
            manifest_path.display()
        )));
    }
    let count = chunks.layout(manifest.size).count();
    manifest.profile = match recording {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).at(path)?;
            let recorded = Recorded::parse(&text, &path.display().to_string()).map_err(KitError::BadInput)?;
            let profile =
                recorded.for_image(&manifest.id, chunks.size, count).map_err(|e| KitError::BadInput(format!("{}: {e}", path.display())))?;
            Some(profile)
        }
    };
    let shipped_chunks = manifest.profile.as_ref().map_or(0, |p| p.chunks.len());
    let text = manifest.to_signed_text(key.as_ref());
    // The result must read back as a manifest the boot accepts, before it replaces the old one.
    Manifest::parse(&text, &manifest_path.display().to_string()).map_err(|e| KitError::BadInput(e.to_string()))?;
    let out = PendingOutput::new(&manifest_path)?;
    {
        let mut f = std::fs::File::create(&out.temp_path).at(&out.temp_path)?;
        f.write_all(text.as_bytes()).at(&out.temp_path)?;
        f.sync_all().at(&out.temp_path)?;
    }
    out.commit()?;
    Ok(Shipped { manifest_path, chunks: shipped_chunks, chunk_count: count, signed: key.is_some() })
}

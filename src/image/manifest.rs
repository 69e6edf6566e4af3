//! The manifest the kit writes beside every image: `/viver/<name>.toml`.
//!
//! It lets `/init` tell one image from another without mounting it (`id`), reject a
//! truncated or altered copy before trusting it (`size`, `checksum`), and explain
//! its choice to a person (`name`, `created`, `kernels`).
//!
//! ```toml
//! format = 1
//! id = "3f9c0a6b5e7d1c24"
//! name = "debian"
//! image = "debian.squashfs"
//! created = 1764316800
//! size = 123863040
//! checksum = "sha256:9c1e...0f"
//! compressor = "zstd"
//! kernels = ["6.1.0-56-amd64"]
//! ```

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The only manifest layout this build understands; a newer one is rejected with a
/// message rather than half-read.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Layout version, [`FORMAT`].
    pub format: u32,
    /// Identity of the image's content: the first 16 hex digits of its SHA-256. The same
    /// id on two media means the same bytes, so the faster medium may serve it.
    pub id: String,
    /// A person's name for the image (the file stem by default).
    pub name: String,
    /// The image's file name, relative to the manifest's directory.
    pub image: String,
    /// Creation time, seconds since the epoch (`SOURCE_DATE_EPOCH` when set).
    pub created: u64,
    /// The image's size in bytes; a copy of another size is truncated or foreign.
    pub size: u64,
    /// `sha256:<64 hex digits>` of the whole image file.
    pub checksum: String,
    /// The SquashFS compressor (gzip, xz, zstd, lz4, lzo, lzma).
    pub compressor: String,
    /// Kernel releases found under the root's `/lib/modules`.
    #[serde(default)]
    pub kernels: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("manifest {path} is not valid TOML for a VIVER manifest: {message}")]
    Parse { path: String, message: String },
    #[error("manifest {path} has format {found}, this VIVER reads format {FORMAT}")]
    Format { path: String, found: u32 },
    #[error("manifest {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Manifest {
    /// Parse and validate a manifest's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        if manifest.format != FORMAT {
            return Err(ManifestError::Format { path: path.to_string(), found: manifest.format });
        }
        let invalid = |message: String| ManifestError::Invalid { path: path.to_string(), message };
        if manifest.id.len() != 16 || !manifest.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!("id {:?} is not 16 hex digits", manifest.id)));
        }
        if manifest.image.is_empty() || manifest.image.contains('/') {
            return Err(invalid(format!("image {:?} must be a plain file name", manifest.image)));
        }
        if manifest.checksum_hex().is_none() {
            return Err(invalid(format!("checksum {:?} is not sha256:<64 hex digits>", manifest.checksum)));
        }
        Ok(manifest)
    }

    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: shown.clone(), source })?;
        Manifest::parse(&text, &shown)
    }

    /// The checksum's hex digits, when it is a well-formed `sha256:` value.
    pub fn checksum_hex(&self) -> Option<&str> {
        let hex = self.checksum.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
    }

    pub fn to_toml(&self) -> String {
        // Serialising a plain struct of strings and numbers cannot fail; fall back to an
        // empty string rather than panic should toml ever change its mind.
        toml::to_string(self).unwrap_or_default()
    }
}

/// The id of an image whose SHA-256 is `sha256_hex`.
pub fn id_from_checksum(sha256_hex: &str) -> String {
    sha256_hex.chars().take(16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            id: "3f9c0a6b5e7d1c24".into(),
            name: "debian".into(),
            image: "debian.squashfs".into(),
            created: 1_764_316_800,
            size: 4096,
            checksum: format!("sha256:{}", "ab".repeat(32)),
            compressor: "zstd".into(),
            kernels: vec!["6.1.0-56-amd64".into()],
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_toml(), "x").unwrap(), m);
    }

    #[test]
    fn rejects_newer_format_and_bad_fields() {
        let text = sample().to_toml().replace("format = 1", "format = 2");
        assert!(matches!(Manifest::parse(&text, "x"), Err(ManifestError::Format { found: 2, .. })));
        let text = sample().to_toml().replace("sha256:", "md5:");
        assert!(matches!(Manifest::parse(&text, "x"), Err(ManifestError::Invalid { .. })));
        let text = sample().to_toml().replace("debian.squashfs", "../etc/passwd");
        assert!(matches!(Manifest::parse(&text, "x"), Err(ManifestError::Invalid { .. })));
        assert!(matches!(Manifest::parse("not toml [", "x"), Err(ManifestError::Parse { .. })));
    }
}

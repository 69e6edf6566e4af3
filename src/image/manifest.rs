//! The manifest the kit writes beside every image: `/viver/<name>.toml`.
//!
//! It lets `/init` tell one image from another without mounting it (`id`), reject a
//! truncated or altered copy before trusting it (`size`, `checksum`), and explain
//! its choice to a person (`name`, `created`, `kernels`).
//!
//! ```toml
//! format = 2
//! id = "3f9c0a6b5e7d1c24"
//! name = "debian"
//! image = "debian.squashfs"
//! created = 1764316800
//! size = 123863040
//! checksum = "sha256:9c1e...0f"
//! compressor = "zstd"
//! kernels = ["6.1.0-56-amd64"]
//!
//! [chunks]
//! size = 262144                 # bytes per chunk: a power of two, 16 KiB .. 64 MiB
//! root = "sha256:4be1...77"     # BitTorrent v2 (BEP 52) pieces root of the image
//! hashes = ["0f3a...", ...]     # one per chunk, in order: BEP 52's piece layer
//! ```
//!
//! Format 3 (what the kit writes) adds an optional `[verity]` section: the dm-verity
//! hash tree the kit appends to the image, its root hash and parameters (see
//! [`crate::image::verity`]). The chunk hashes cover the whole file, tree included: one
//! description of the image, checked in part before the hand-over (`viver.verify=`) and
//! block by block by the kernel after it.
//!
//! A signed manifest ends with a `[signature]` section (`viver-kit image --sign`): an
//! ed25519 signature over every byte of the file before the line `[signature]` (see
//! [`crate::image::signature`]). Those bytes are all the manifest is: the TOML parser
//! never sees the signature section, so nothing after it can change what was signed.
//!
//! A `[profile]` section (`viver-kit profile`) lists the chunks a recorded boot read, in
//! order (see [`crate::image::profile`]); it changes nothing of the image's identity, so
//! nodes with and without it share one swarm.
//!
//! Formats 1 (no `[chunks]`) and 2 (no `[verity]`) are still read: a format 1 image gets
//! only the quick checks (and the whole SHA-256 with `viver.verify=full`), and the boot
//! report says so.

use super::chunks;
use super::profile::Profile;
use super::signature::ManifestSignature;
use super::verity::VerityParams;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The manifest layout the kit writes; [`FORMAT_V1`] is still read, a newer one is
/// rejected with a message rather than half-read.
pub const FORMAT: u32 = 3;
/// The layout without a `[verity]` section.
pub const FORMAT_V2: u32 = 2;
/// The layout without chunk hashes.
pub const FORMAT_V1: u32 = 1;
/// The line that starts a manifest's signature section.
pub const SIGNATURE_HEADER: &str = "[signature]";

/// Where the manifest of the image at `path` (a path or a URL) is: beside it, the file
/// name's extension replaced by `.toml`, as the kit and `viver serve` lay them out.
pub fn beside(path: &str) -> String {
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    let stem_end = path[name_start..].rfind('.').map_or(path.len(), |i| name_start + i);
    format!("{}.toml", &path[..stem_end])
}

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
    /// Per-chunk hashes (format 2; absent in format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Chunks>,
    /// The appended dm-verity hash tree (format 3; optional there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity: Option<VerityParams>,
    /// The boot profile (`viver-kit profile`): chunks a boot reads, first read first; V-FIELD
    /// nodes prefetch them. Optional in every format with `[chunks]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// The signature section and the bytes it covers, when the file has one.
    #[serde(skip)]
    pub seal: Option<Seal>,
}

/// What a signature covers and what the signature section says (or why it is malformed:
/// that matters only when the boot requires signed images).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub signed: Vec<u8>,
    pub signature: Result<ManifestSignature, String>,
}

/// Splits a manifest's text at its last `[signature]` line: (the signed text, the
/// signature section), or the whole text and None.
pub fn split_signature(text: &str) -> (&str, Option<&str>) {
    let needle = format!("\n{SIGNATURE_HEADER}");
    let mut search_end = text.len();
    while let Some(at) = text.get(..search_end).and_then(|t| t.rfind(&needle)) {
        let rest = &text[at + 1..];
        let line_end = rest.find('\n').unwrap_or(rest.len());
        if rest[..line_end].trim_end() == SIGNATURE_HEADER {
            return (&text[..at + 1], Some(rest));
        }
        search_end = at;
    }
    (text, None)
}

/// `[chunks]`: see [`crate::image::chunks`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunks {
    /// Bytes per chunk (BEP 52 piece length).
    pub size: u64,
    /// `sha256:<64 hex>`: the Merkle root over all 16 KiB blocks (BEP 52 pieces root).
    pub root: String,
    /// 64 hex digits per chunk.
    pub hashes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("manifest {path} is not valid TOML for a VIVER manifest: {message}")]
    Parse { path: String, message: String },
    #[error("manifest {path} has format {found}, this VIVER reads formats {FORMAT_V1} and {FORMAT}")]
    Format { path: String, found: u32 },
    #[error("manifest {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Manifest {
    /// Parse and validate a manifest's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Manifest, ManifestError> {
        let (body, signature) = split_signature(text);
        let mut manifest: Manifest =
            toml::from_str(body).map_err(|e| ManifestError::Parse { path: path.to_string(), message: e.to_string() })?;
        manifest.seal = signature.map(|section| Seal {
            signed: body.as_bytes().to_vec(),
            signature: ManifestSignature::parse(section, &format!("{path} [signature]")).map_err(|e| e.to_string()),
        });
        if ![FORMAT_V1, FORMAT_V2, FORMAT].contains(&manifest.format) {
            return Err(ManifestError::Format { path: path.to_string(), found: manifest.format });
        }
        let invalid = |message: String| ManifestError::Invalid { path: path.to_string(), message };
        match (&manifest.chunks, manifest.format) {
            (Some(_), FORMAT_V1) => return Err(invalid("format 1 has no [chunks]; say format = 2".into())),
            (None, FORMAT_V2 | FORMAT) => return Err(invalid(format!("format {} needs [chunks]", manifest.format))),
            (Some(chunks), _) => chunks.validate(manifest.size).map_err(invalid)?,
            (None, _) => {}
        }
        match (&manifest.verity, manifest.format) {
            (Some(_), FORMAT_V1 | FORMAT_V2) => return Err(invalid(format!("format {} has no [verity]; say format = 3", manifest.format))),
            (Some(verity), _) => verity.validate(manifest.size).map_err(|e| invalid(format!("[verity]: {e}")))?,
            (None, _) => {}
        }
        match (&manifest.profile, &manifest.chunks) {
            (Some(_), None) => return Err(invalid("a [profile] counts chunks: it needs [chunks]".into())),
            (Some(profile), Some(chunks)) => {
                profile.validate(chunks.layout(manifest.size).count()).map_err(|e| invalid(format!("[profile]: {e}")))?
            }
            (None, _) => {}
        }
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

    /// The manifest's text: [`Manifest::to_toml`], then the signature section when a key is given.
    pub fn to_signed_text(&self, key: Option<&super::signature::SecretKey>) -> String {
        let body = self.to_toml();
        match key {
            Some(key) => {
                let signature = key.sign(body.as_bytes());
                format!("{body}{}", signature.to_text())
            }
            None => body,
        }
    }

    pub fn to_toml(&self) -> String {
        // Serialising a plain struct of strings and numbers cannot fail; fall back to an
        // empty string rather than panic should toml ever change its mind.
        toml::to_string(self).unwrap_or_default()
    }
}

impl Chunks {
    /// Sizes and counts agree with the image, every hash is 64 hex digits, and the root is
    /// the one the hashes give (so a mangled list is refused here, not at the boot).
    fn validate(&self, image_size: u64) -> Result<(), String> {
        if !self.size.is_power_of_two() || !(chunks::BLOCK..=chunks::MAX_CHUNK).contains(&self.size) {
            return Err(format!("chunks.size {} is not a power of two between {} and {}", self.size, chunks::BLOCK, chunks::MAX_CHUNK));
        }
        if image_size == 0 {
            return Err("size 0: an empty image has no chunks".into());
        }
        let layout = self.layout(image_size);
        if self.hashes.len() as u64 != layout.count() {
            return Err(format!(
                "chunks.hashes has {} entries, {} bytes in chunks of {} need {}",
                self.hashes.len(),
                image_size,
                self.size,
                layout.count()
            ));
        }
        let hashes = self.parsed_hashes().ok_or("chunks.hashes: every entry must be 64 hex digits")?;
        let root = self.root_hash().ok_or_else(|| format!("chunks.root {:?} is not sha256:<64 hex digits>", self.root))?;
        if layout.root(&hashes) != root {
            return Err("chunks.root is not the Merkle root of chunks.hashes".into());
        }
        Ok(())
    }

    pub fn layout(&self, image_size: u64) -> chunks::Layout {
        chunks::Layout { size: image_size, chunk: self.size }
    }

    pub fn parsed_hashes(&self) -> Option<Vec<chunks::Hash>> {
        self.hashes.iter().map(|h| chunks::parse_hex(h)).collect()
    }

    pub fn root_hash(&self) -> Option<chunks::Hash> {
        chunks::parse_hex(self.root.strip_prefix("sha256:")?)
    }

    pub fn from_digest(d: &chunks::Digest2) -> Chunks {
        Chunks { size: d.chunk, root: format!("sha256:{}", chunks::hex(&d.root)), hashes: d.hashes.iter().map(chunks::hex).collect() }
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
        let bytes: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let d = chunks::digest(&mut bytes.as_slice(), 256 << 10).unwrap();
        Manifest { format: FORMAT_V2, size: d.size, chunks: Some(Chunks::from_digest(&d)), ..sample_v1() }
    }

    fn sample_v1() -> Manifest {
        Manifest {
            format: FORMAT_V1,
            chunks: None,
            verity: None,
            profile: None,
            seal: None,
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
        let m = Manifest { format: FORMAT_V2, ..sample() };
        assert_eq!(Manifest::parse(&m.to_toml(), "x").unwrap(), m);
        let v1 = sample_v1();
        assert_eq!(Manifest::parse(&v1.to_toml(), "x").unwrap(), v1);
    }

    #[test]
    fn chunks_must_agree_with_the_image_and_the_format() {
        let good = Manifest { format: FORMAT_V2, ..sample() };
        let text = good.to_toml();
        assert!(text.contains("[chunks]"), "{text}");
        let invalid = |text: &str| matches!(Manifest::parse(text, "x"), Err(ManifestError::Invalid { .. }));
        // format 1 with chunks, format 2 without.
        assert!(invalid(&text.replace("format = 2", "format = 1")));
        let v2_without = sample_v1().to_toml().replace("format = 1", "format = 2");
        assert!(invalid(&v2_without));
        // A size the hashes do not cover, a chunk size that is no power of two or too small.
        assert!(invalid(&text.replace(&format!("size = {}", good.size), "size = 5000000")));
        assert!(invalid(&text.replace("size = 262144", "size = 262000")));
        assert!(invalid(&text.replace("size = 262144", "size = 8192")));
        // One hash changed: the root no longer matches.
        let first = &good.chunks.as_ref().unwrap().hashes[0];
        assert!(invalid(&text.replace(first.as_str(), &"0".repeat(64))));
        assert!(invalid(&text.replace(first.as_str(), "xyz")));
        // Unknown fields stay refused, in the table too.
        let extra = text.replace("[chunks]\n", "[chunks]\nextra = 1\n");
        assert!(matches!(Manifest::parse(&extra, "x"), Err(ManifestError::Parse { .. })), "{extra}");
    }

    #[test]
    fn a_profile_must_name_the_images_own_chunks() {
        let count = sample().chunks.as_ref().unwrap().hashes.len() as u32;
        let with = |chunks: Vec<u32>| Manifest { profile: Some(Profile { seconds: 30, chunks }), ..sample() };
        let good = with(vec![count - 1, 0]);
        assert_eq!(Manifest::parse(&good.to_toml(), "x").unwrap(), good, "a profile reads back");
        for bad in [with(vec![0, count]), with(vec![1, 1])] {
            let err = Manifest::parse(&bad.to_toml(), "x").unwrap_err().to_string();
            assert!(err.contains("[profile]: profile entry 1"), "{err}");
        }
        let v1 = Manifest { profile: Some(Profile { seconds: 1, chunks: vec![0] }), ..sample_v1() };
        assert!(Manifest::parse(&v1.to_toml(), "x").unwrap_err().to_string().contains("needs [chunks]"));
    }

    #[test]
    fn rejects_newer_format_and_bad_fields() {
        let text = sample_v1().to_toml().replace("format = 1", "format = 4");
        assert!(matches!(Manifest::parse(&text, "x"), Err(ManifestError::Format { found: 4, .. })));
        let text = sample_v1().to_toml().replace("sha256:", "md5:");
        assert!(matches!(Manifest::parse(&text, "x"), Err(ManifestError::Invalid { .. })));
        let text = sample_v1().to_toml().replace("debian.squashfs", "../etc/passwd");
        assert!(matches!(Manifest::parse(&text, "x"), Err(ManifestError::Invalid { .. })));
        assert!(matches!(Manifest::parse("not toml [", "x"), Err(ManifestError::Parse { .. })));
    }

    /// A format 3 manifest over an image with its verity tree appended.
    fn sample_v3() -> Manifest {
        use crate::image::verity_tree;
        let mut bytes: Vec<u8> = (0..40 * 4096u32).map(|i| (i % 251) as u8).collect();
        let salt = [3u8; 32];
        let tree = verity_tree::build(&mut bytes.as_slice(), 40, &salt, [0; 16]).unwrap();
        bytes.extend_from_slice(&tree.bytes);
        let d = chunks::digest(&mut bytes.as_slice(), 256 << 10).unwrap();
        Manifest {
            format: FORMAT,
            size: d.size,
            chunks: Some(Chunks::from_digest(&d)),
            verity: Some(VerityParams::of(&tree, &salt)),
            ..sample_v1()
        }
    }

    #[test]
    fn verity_belongs_to_format_3_and_must_fit_the_image() {
        let m = sample_v3();
        let text = m.to_toml();
        assert!(text.contains("[verity]"), "{text}");
        assert_eq!(Manifest::parse(&text, "x").unwrap(), m);
        let invalid = |text: &str| match Manifest::parse(text, "x") {
            Err(ManifestError::Invalid { message, .. }) => message,
            other => panic!("{other:?}"),
        };
        assert!(invalid(&text.replace("format = 3", "format = 2")).contains("format 2 has no [verity]"));
        let blocks = m.verity.as_ref().unwrap().data_blocks;
        let e = invalid(&text.replace(&format!("data_blocks = {blocks}"), &format!("data_blocks = {}", blocks + 1)));
        assert!(e.contains("[verity]"), "{e}");
    }

    #[test]
    fn a_signature_covers_every_byte_before_it() {
        use crate::image::signature::SecretKey;
        let key = SecretKey::generate().unwrap();
        let m = sample_v3();
        let text = m.to_signed_text(Some(&key));
        let parsed = Manifest::parse(&text, "x").unwrap();
        let seal = parsed.seal.clone().unwrap();
        assert_eq!(seal.signed, m.to_toml().as_bytes());
        let signature = seal.signature.unwrap();
        assert!(key.public(None).verifies(&seal.signed, &signature));
        // The signed bytes hold the chunk hashes and the verity root hash.
        let signed = String::from_utf8(seal.signed).unwrap();
        assert!(signed.contains(&m.verity.as_ref().unwrap().root) && signed.contains(&m.chunks.as_ref().unwrap().root));
        // One changed byte before the signature: parsed, but no longer verified.
        let changed = text.replacen("name = \"debian\"", "name = \"debiam\"", 1);
        let seal = Manifest::parse(&changed, "x").unwrap().seal.unwrap();
        assert!(!key.public(None).verifies(&seal.signed, &seal.signature.unwrap()));
        // Nothing after the signature reaches the manifest: a table there is the
        // signature section's problem, not a silently unsigned part.
        let appended = format!("{text}[verity]\nversion = 2\n");
        let seal = Manifest::parse(&appended, "x").unwrap().seal.unwrap();
        assert!(seal.signature.unwrap_err().contains("second section"));
        // A malformed signature leaves the manifest readable; the reason is kept.
        let malformed = text.replace("algorithm = \"ed25519\"", "algorithm = \"rsa\"");
        let seal = Manifest::parse(&malformed, "x").unwrap().seal.unwrap();
        assert!(seal.signature.unwrap_err().contains("only ed25519"));
        assert_eq!(split_signature("a = 1\n"), ("a = 1\n", None));
    }
}

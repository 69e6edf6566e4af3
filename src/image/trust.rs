//! The boot's trust decision: the keys the initrd trusts (`/etc/viver/trusted/*.pub`,
//! put there by `viver-kit initrd --trust`) and whether a candidate's manifest is signed
//! by one of them. No keys: every image is accepted, as before, and the report says it
//! was not authenticated. Keys: only a manifest signed by one of them; any other copy is
//! rejected with the reason, and the next copy is tried.

use super::manifest::Manifest;
use super::signature::{KeyId, PublicKey};
use std::path::Path;

/// Where the initrd carries its trusted keys.
pub const TRUSTED_DIR: &str = "/etc/viver/trusted";

#[derive(Debug, Default)]
pub struct TrustedKeys {
    pub keys: Vec<PublicKey>,
    /// Key files that could not be read (reported; they trust nothing).
    pub problems: Vec<String>,
    /// Were there key files at all? Then signatures are required, even when every file
    /// was unreadable: a damaged key file must not open the boot to any image.
    pub required: bool,
}

impl TrustedKeys {
    /// Reads every `*.pub` in `dir`; a missing directory means no keys.
    pub fn load(dir: &Path) -> TrustedKeys {
        let Ok(entries) = std::fs::read_dir(dir) else { return TrustedKeys::default() };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "pub")).collect();
        paths.sort();
        TrustedKeys::from_files(&paths)
    }

    /// The keys in these files (`--trust`); any file at all makes signatures required.
    pub fn from_files(paths: &[std::path::PathBuf]) -> TrustedKeys {
        let mut trusted = TrustedKeys::default();
        for path in paths {
            trusted.required = true;
            let shown = path.display().to_string();
            let parsed = std::fs::read(path)
                .map_err(|e| format!("{shown}: {e}"))
                .and_then(|bytes| String::from_utf8(bytes).map_err(|_| format!("{shown}: not UTF-8 text")))
                .and_then(|text| PublicKey::parse(&text, &shown).map_err(|e| e.to_string()));
            match parsed {
                Ok(key) if trusted.keys.iter().any(|k| k.id == key.id) => {}
                Ok(key) => trusted.keys.push(key),
                Err(e) => trusted.problems.push(format!("trusted key not used: {e}")),
            }
        }
        trusted
    }

    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.to_string()).collect()
    }
}

/// Why a copy is not accepted. The first words are what a person looks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unsigned: {0}")]
    Unsigned(String),
    #[error("signed by unknown key {0} (this initrd trusts {1})")]
    UnknownKey(KeyId, String),
    #[error("signature does not match: the manifest was changed after key {0} signed it")]
    Mismatch(KeyId),
    #[error("malformed signature: {0}")]
    Malformed(String),
}

/// What the boot knows about a copy it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No trusted keys in the initrd: nothing was checked.
    NotRequired,
    /// Signed by this trusted key.
    Signed(KeyId),
}

pub fn check(keys: &TrustedKeys, manifest: Option<&Manifest>) -> Result<Decision, Rejection> {
    if !keys.required {
        return Ok(Decision::NotRequired);
    }
    let trusted = if keys.keys.is_empty() { "no usable key: see the problems".to_string() } else { keys.ids().join(", ") };
    let Some(manifest) = manifest else {
        return Err(Rejection::Unsigned("no manifest beside the image, so nothing signed".into()));
    };
    let Some(seal) = &manifest.seal else {
        return Err(Rejection::Unsigned(format!("the manifest has no [signature]; this initrd trusts {trusted}")));
    };
    let signature = seal.signature.as_ref().map_err(|e| Rejection::Malformed(e.clone()))?;
    let Some(key) = keys.keys.iter().find(|k| k.id == signature.key_id) else {
        return Err(Rejection::UnknownKey(signature.key_id, trusted));
    };
    if key.verifies(&seal.signed, signature) {
        Ok(Decision::Signed(key.id))
    } else {
        Err(Rejection::Mismatch(key.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::signature::SecretKey;

    fn manifest_text() -> String {
        let bytes = vec![1u8; 20_000];
        let d = crate::image::chunks::digest(&mut bytes.as_slice(), 16 << 10).unwrap();
        let m = Manifest {
            format: 2,
            id: "0123456789abcdef".into(),
            name: "t".into(),
            image: "t.squashfs".into(),
            created: 0,
            size: d.size,
            checksum: format!("sha256:{}", crate::image::chunks::hex(&d.sha256)),
            compressor: "zstd".into(),
            kernels: vec![],
            chunks: Some(crate::image::manifest::Chunks::from_digest(&d)),
            verity: None,
            profile: None,
            seal: None,
        };
        m.to_toml()
    }

    fn signed_by(key: &SecretKey) -> Manifest {
        let body = manifest_text();
        Manifest::parse(&format!("{body}{}", key.sign(body.as_bytes()).to_text()), "m").unwrap()
    }

    #[test]
    fn each_copy_gets_its_reason() {
        let ours = SecretKey::generate().unwrap();
        let theirs = SecretKey::generate().unwrap();
        let keys = TrustedKeys { keys: vec![ours.public(None)], problems: vec![], required: true };
        assert_eq!(check(&keys, Some(&signed_by(&ours))), Ok(Decision::Signed(ours.public(None).id)));
        let unsigned = Manifest::parse(&manifest_text(), "m").unwrap();
        assert!(check(&keys, Some(&unsigned)).unwrap_err().to_string().starts_with("unsigned: "));
        assert!(check(&keys, None).unwrap_err().to_string().starts_with("unsigned: "));
        let e = check(&keys, Some(&signed_by(&theirs))).unwrap_err().to_string();
        assert!(e.starts_with(&format!("signed by unknown key {}", theirs.public(None).id)), "{e}");
        let mut changed = signed_by(&ours);
        if let Some(seal) = changed.seal.as_mut() {
            seal.signed[0] ^= 1;
        }
        assert!(check(&keys, Some(&changed)).unwrap_err().to_string().starts_with("signature does not match"));
        // Without keys nothing is required, whatever the manifest.
        assert_eq!(check(&TrustedKeys::default(), Some(&unsigned)), Ok(Decision::NotRequired));
        // Key files that were all unreadable still require signatures.
        let broken = TrustedKeys { keys: vec![], problems: vec!["x".into()], required: true };
        assert!(check(&broken, Some(&signed_by(&ours))).unwrap_err().to_string().contains("no usable key"));
    }

    #[test]
    fn loads_the_initrds_keys_and_reports_bad_files() {
        let dir = std::env::temp_dir().join(format!("viver-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = SecretKey::generate().unwrap().public(Some("ci".into()));
        std::fs::write(dir.join("a.pub"), key.to_text()).unwrap();
        std::fs::write(dir.join("b.pub"), "[public-key]\nkey = \"zz\"\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let keys = TrustedKeys::load(&dir);
        assert_eq!(keys.keys, vec![key]);
        assert_eq!(keys.problems.len(), 1, "{:?}", keys.problems);
        assert!(keys.required);
        assert!(!TrustedKeys::load(&dir.join("absent")).required);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

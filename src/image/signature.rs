//! Signing keys, trusted keys and manifest signatures: one small text format, one parser.
//!
//! Every such text is one section: a `[kind]` header line, then `name = "value"` lines
//! (`#` comments and blank lines anywhere). It is valid TOML, but read by this parser
//! alone, so that the bytes a signature covers never depend on a TOML library's idea of
//! the file:
//!
//! ```text
//! [public-key]                  # NAME.pub, what `viver-kit initrd --trust` takes
//! algorithm = "ed25519"
//! key-id = "3f9c0a6b5e7d1c24"   # first 16 hex digits of SHA-256 of the key's 32 bytes
//! key = "<64 hex digits>"
//!
//! [secret-key]                  # NAME.key, what `viver-kit image --sign` takes (mode 0600)
//! algorithm = "ed25519"
//! key-id = "3f9c0a6b5e7d1c24"
//! seed = "<64 hex digits>"
//!
//! [signature]                   # the last section of a signed manifest
//! algorithm = "ed25519"
//! key-id = "3f9c0a6b5e7d1c24"
//! value = "<128 hex digits>"
//! ```
//!
//! A manifest's signature covers [`SIGNED_PREFIX`] followed by every byte of the manifest
//! file before its `[signature]` line (see [`crate::image::manifest`]): the chunk hashes
//! and the dm-verity root hash are in those bytes.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Domain separation: a manifest signature can never be replayed as a signature over
/// anything else made with the same key.
pub const SIGNED_PREFIX: &[u8] = b"VIVER manifest signature 1\n";
/// Longer texts are refused before parsing (a key file is ~200 bytes).
pub const MAX_TEXT: usize = 16 << 10;
pub const ALGORITHM: &str = "ed25519";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("{origin}: {message}")]
    Malformed { origin: String, message: String },
    #[error("{origin}: a [{found}] section where a [{expected}] was expected")]
    Kind { origin: String, expected: String, found: String },
}

/// A key's short name: the first 16 hex digits of SHA-256 over its 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl KeyId {
    pub fn of(public: &[u8; 32]) -> KeyId {
        let digest = Sha256::digest(public);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

/// One parsed section: its kind and its fields in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    pub fields: Vec<(String, String)>,
}

/// The one parser: a `[kind]` header, then `name = "value"` lines. Values are plain
/// double-quoted strings without escapes; names are lower-case letters and dashes; a name
/// appears once; nothing follows the section.
pub fn parse(text: &str, origin: &str) -> Result<Section, SignatureError> {
    let bad = |line: usize, message: String| SignatureError::Malformed {
        origin: if line == 0 { origin.to_string() } else { format!("{origin}:{line}") },
        message,
    };
    if text.len() > MAX_TEXT {
        return Err(bad(0, format!("{} bytes, more than the {MAX_TEXT} a key or signature can take", text.len())));
    }
    let mut section: Option<Section> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(kind) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if section.is_some() {
                return Err(bad(number, format!("a second section [{kind}]: one section per text")));
            }
            if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
                return Err(bad(number, format!("section name {kind:?} is not lower-case letters and dashes")));
            }
            section = Some(Section { kind: kind.to_string(), fields: Vec::new() });
            continue;
        }
        let Some(current) = section.as_mut() else {
            return Err(bad(number, "expected a [section] header first".into()));
        };
        let Some((name, value)) = line.split_once('=') else {
            return Err(bad(number, "expected name = \"value\"".into()));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err(bad(number, format!("field name {name:?} is not lower-case letters and dashes")));
        }
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).filter(|v| !v.contains(['"', '\\'])).ok_or_else(|| {
            bad(number, format!("the value of {name} must be one double-quoted string without escapes (a comment after it is not allowed)"))
        })?;
        if value.chars().any(char::is_control) {
            return Err(bad(number, format!("the value of {name} has a control character")));
        }
        if current.fields.iter().any(|(n, _)| n == name) {
            return Err(bad(number, format!("{name} appears twice")));
        }
        current.fields.push((name.to_string(), value.to_string()));
    }
    section.ok_or_else(|| bad(0, "empty: no [section]".into()))
}

impl Section {
    fn expect_kind(&self, kind: &str, origin: &str) -> Result<(), SignatureError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(SignatureError::Kind { origin: origin.into(), expected: kind.into(), found: self.kind.clone() })
        }
    }

    /// The fields `allowed` only (`required` among them), as values in `required`'s order.
    fn take(&self, required: &[&str], optional: &[&str], origin: &str) -> Result<Vec<&str>, SignatureError> {
        let bad = |message: String| SignatureError::Malformed { origin: origin.into(), message };
        if let Some((name, _)) = self.fields.iter().find(|(n, _)| !required.contains(&n.as_str()) && !optional.contains(&n.as_str())) {
            return Err(bad(format!("unknown field {name} in [{}]", self.kind)));
        }
        required
            .iter()
            .map(|want| {
                self.fields
                    .iter()
                    .find(|(n, _)| n == want)
                    .map(|(_, v)| v.as_str())
                    .ok_or_else(|| bad(format!("[{}] needs {want}", self.kind)))
            })
            .collect()
    }
}

fn hex_bytes<const N: usize>(value: &str, what: &str, origin: &str) -> Result<[u8; N], SignatureError> {
    let bad = || SignatureError::Malformed { origin: origin.into(), message: format!("{what} must be {} hex digits", N * 2) };
    if value.len() != N * 2 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(value.get(i * 2..i * 2 + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_algorithm(value: &str, origin: &str) -> Result<(), SignatureError> {
    if value == ALGORITHM {
        Ok(())
    } else {
        Err(SignatureError::Malformed { origin: origin.into(), message: format!("algorithm {value:?}: only {ALGORITHM} is known") })
    }
}

fn check_id(claimed: &str, actual: KeyId, origin: &str) -> Result<(), SignatureError> {
    let claimed: [u8; 8] = hex_bytes(claimed, "key-id", origin)?;
    if KeyId(claimed) == actual {
        Ok(())
    } else {
        Err(SignatureError::Malformed {
            origin: origin.into(),
            message: format!("key-id {} is not the id of its key ({actual}): the file was edited", KeyId(claimed)),
        })
    }
}

/// A key the boot trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub id: KeyId,
    pub bytes: [u8; 32],
    pub comment: Option<String>,
}

impl PublicKey {
    pub fn parse(text: &str, origin: &str) -> Result<PublicKey, SignatureError> {
        let section = parse(text, origin)?;
        section.expect_kind("public-key", origin)?;
        let values = section.take(&["algorithm", "key-id", "key"], &["comment"], origin)?;
        check_algorithm(values[0], origin)?;
        let bytes: [u8; 32] = hex_bytes(values[2], "key", origin)?;
        // A point off the curve is refused now, not at the first signature check.
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| SignatureError::Malformed { origin: origin.into(), message: "key is not a valid ed25519 public key".into() })?;
        let id = KeyId::of(&bytes);
        check_id(values[1], id, origin)?;
        let comment = section.fields.iter().find(|(n, _)| n == "comment").map(|(_, v)| v.clone());
        Ok(PublicKey { id, bytes, comment })
    }

    pub fn to_text(&self) -> String {
        let comment = self.comment.as_ref().map(|c| format!("comment = \"{c}\"\n")).unwrap_or_default();
        format!("[public-key]\nalgorithm = \"{ALGORITHM}\"\nkey-id = \"{}\"\nkey = \"{}\"\n{comment}", self.id, hex(&self.bytes))
    }

    /// Does `signature` sign `signed` (the manifest bytes before its signature) with this key?
    pub fn verifies(&self, signed: &[u8], signature: &ManifestSignature) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.bytes) else { return false };
        let sig = ed25519_dalek::Signature::from_bytes(&signature.value);
        key.verify_strict(&message(signed), &sig).is_ok()
    }
}

fn message(signed: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNED_PREFIX.len() + signed.len());
    m.extend_from_slice(SIGNED_PREFIX);
    m.extend_from_slice(signed);
    m
}

/// A signing key (kept by whoever builds images; never in an initrd).
pub struct SecretKey {
    key: SigningKey,
}

impl SecretKey {
    /// A fresh key from the kernel's random numbers.
    pub fn generate() -> std::io::Result<SecretKey> {
        let mut seed = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut seed)?;
        Ok(SecretKey { key: SigningKey::from_bytes(&seed) })
    }

    pub fn parse(text: &str, origin: &str) -> Result<SecretKey, SignatureError> {
        let section = parse(text, origin)?;
        section.expect_kind("secret-key", origin)?;
        let values = section.take(&["algorithm", "key-id", "seed"], &["comment"], origin)?;
        check_algorithm(values[0], origin)?;
        let seed: [u8; 32] = hex_bytes(values[2], "seed", origin)?;
        let key = SecretKey { key: SigningKey::from_bytes(&seed) };
        check_id(values[1], key.public(None).id, origin)?;
        Ok(key)
    }

    pub fn public(&self, comment: Option<String>) -> PublicKey {
        let bytes = self.key.verifying_key().to_bytes();
        PublicKey { id: KeyId::of(&bytes), bytes, comment }
    }

    pub fn to_text(&self) -> String {
        format!(
            "# VIVER signing key: keep it secret; its .pub goes into initrds (viver-kit initrd --trust)\n\
             [secret-key]\nalgorithm = \"{ALGORITHM}\"\nkey-id = \"{}\"\nseed = \"{}\"\n",
            self.public(None).id,
            hex(self.key.as_bytes())
        )
    }

    pub fn sign(&self, signed: &[u8]) -> ManifestSignature {
        ManifestSignature { key_id: self.public(None).id, value: self.key.sign(&message(signed)).to_bytes() }
    }
}

/// The `[signature]` section of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSignature {
    pub key_id: KeyId,
    pub value: [u8; 64],
}

impl ManifestSignature {
    pub fn parse(text: &str, origin: &str) -> Result<ManifestSignature, SignatureError> {
        let section = parse(text, origin)?;
        section.expect_kind("signature", origin)?;
        let values = section.take(&["algorithm", "key-id", "value"], &[], origin)?;
        check_algorithm(values[0], origin)?;
        Ok(ManifestSignature { key_id: KeyId(hex_bytes(values[1], "key-id", origin)?), value: hex_bytes(values[2], "value", origin)? })
    }

    pub fn to_text(&self) -> String {
        format!("[signature]\nalgorithm = \"{ALGORITHM}\"\nkey-id = \"{}\"\nvalue = \"{}\"\n", self.key_id, hex(&self.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey { key: SigningKey::from_bytes(&[7u8; 32]) }
    }

    #[test]
    fn keys_and_signatures_round_trip() {
        let secret = key();
        let again = SecretKey::parse(&secret.to_text(), "k").unwrap();
        assert_eq!(again.public(None), secret.public(None));
        let public = secret.public(Some("build server".into()));
        assert_eq!(PublicKey::parse(&public.to_text(), "p").unwrap(), public);
        let sig = secret.sign(b"format = 3\n");
        assert_eq!(ManifestSignature::parse(&sig.to_text(), "s").unwrap(), sig);
        assert!(public.verifies(b"format = 3\n", &sig));
        assert!(!public.verifies(b"format = 2\n", &sig));
        // Another key's public half does not verify it.
        let other = SecretKey { key: SigningKey::from_bytes(&[8u8; 32]) }.public(None);
        assert!(!other.verifies(b"format = 3\n", &sig));
        assert_ne!(other.id, public.id);
    }

    #[test]
    fn the_text_is_valid_toml_too() {
        let public = key().public(Some("x".into()));
        let value: toml::Table = toml::from_str(&public.to_text()).unwrap();
        assert_eq!(value["public-key"]["key-id"].as_str().unwrap(), public.id.to_string());
    }

    #[test]
    fn malformed_texts_get_clear_messages() {
        let good = key().public(None).to_text();
        let err = |text: &str| PublicKey::parse(text, "t.pub").unwrap_err().to_string();
        assert!(err("").contains("empty"), "{}", err(""));
        assert!(err("key = \"1\"\n").contains("t.pub:1: expected a [section] header first"));
        assert!(err(&good.replace("[public-key]", "[signature]")).contains("a [signature] section where a [public-key]"));
        assert!(err(&format!("{good}extra = \"1\"\n")).contains("unknown field extra"));
        assert!(err(&format!("{good}key = \"1\"\n")).contains("key appears twice"));
        assert!(err(&good.replace("ed25519", "rsa")).contains("only ed25519"));
        assert!(err(&good.replace("key = \"", "key = \"0")).contains("key must be 64 hex digits"));
        assert!(err(&good.replace("key = \"", "key = '")).contains("double-quoted"));
        assert!(err(&format!("{good}[public-key]\n")).contains("second section"));
        // An edited key no longer has its id.
        let public = key().public(None);
        let mut bytes = public.bytes;
        bytes[0] ^= 1;
        let edited = good.replace(&hex(&public.bytes), &hex(&bytes));
        let e = err(&edited);
        assert!(e.contains("is not the id of its key") || e.contains("not a valid ed25519"), "{e}");
        let long = "#".repeat(MAX_TEXT + 1);
        assert!(err(&long).contains("more than"));
        let sig = ManifestSignature::parse("[signature]\nalgorithm = \"ed25519\"\nkey-id = \"00\"\nvalue = \"00\"\n", "m.toml");
        assert!(sig.unwrap_err().to_string().contains("key-id must be 16 hex digits"));
    }
}

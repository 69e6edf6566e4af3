#![no_main]
//! cargo fuzz run trust_file: arbitrary text as a public key, a secret key and a manifest
//! signature section (the one parser of `viver::image::signature`), and as a manifest
//! whose last section is a signature; refused with an error or accepted, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use viver::image::signature::{ManifestSignature, PublicKey, SecretKey};
    let text = String::from_utf8_lossy(data);
    let _ = viver::image::signature::parse(&text, "fuzz");
    if let Ok(key) = PublicKey::parse(&text, "fuzz") {
        // What parses must print back to the same key.
        assert_eq!(PublicKey::parse(&key.to_text(), "again").ok(), Some(key));
    }
    let _ = SecretKey::parse(&text, "fuzz");
    if let Ok(signature) = ManifestSignature::parse(&text, "fuzz") {
        assert_eq!(ManifestSignature::parse(&signature.to_text(), "again").ok(), Some(signature));
    }
    let (signed, section) = viver::image::manifest::split_signature(&text);
    assert!(text.starts_with(signed));
    if let Some(section) = section {
        assert!(section.starts_with(viver::image::manifest::SIGNATURE_HEADER));
    }
});

//! Does a kernel image carry an Authenticode signature? An x86 bzImage built with the
//! EFI stub is also a PE/COFF executable; a signed one (Debian's `linux-image-*-amd64`)
//! has a non-empty security directory (data directory 4 of the optional header) that
//! points at a WIN_CERTIFICATE holding the PKCS#7 signature. shim and GRUB refuse an
//! unsigned kernel under Secure Boot, so the kit says so before the firmware does.
//!
//! Only the headers are read (offsets checked against the file length): this is not a
//! signature verification, just "is there one".

/// What the kernel image is, as far as Secure Boot goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSignature {
    /// A PE image with an Authenticode certificate table of this many bytes.
    Signed { bytes: u32 },
    /// A PE image (boots on UEFI) without a signature.
    Unsigned,
    /// Not a PE image at all (no EFI stub): UEFI cannot start it through shim and GRUB.
    NotPe(String),
}

const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;
const SECURITY_DIRECTORY: u32 = 4;

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Reads the PE headers of `image` (the whole file) and looks for the certificate table.
pub fn kernel_signature(image: &[u8]) -> KernelSignature {
    let not_pe = |why: &str| KernelSignature::NotPe(why.to_string());
    if image.get(..2) != Some(b"MZ") {
        return not_pe("no MZ header");
    }
    let Some(pe) = u32_at(image, 0x3c).map(|v| v as usize) else { return not_pe("truncated DOS header") };
    if pe.checked_add(4).and_then(|end| image.get(pe..end)) != Some(b"PE\0\0") {
        return not_pe("no PE signature where the DOS header points");
    }
    // COFF header: 20 bytes after the signature; SizeOfOptionalHeader at offset 16.
    let coff = pe + 4;
    let Some(optional_size) = u16_at(image, coff + 16).map(usize::from) else { return not_pe("truncated COFF header") };
    let optional = coff + 20;
    let Some(magic) = u16_at(image, optional) else { return not_pe("no optional header") };
    // PE32 and PE32+ differ in where NumberOfRvaAndSizes and the directories sit.
    let (count_at, directories) = match magic {
        0x10b => (92, 96),
        0x20b => (108, 112),
        other => return not_pe(&format!("optional header magic {other:#x} is neither PE32 nor PE32+")),
    };
    let Some(count) = u32_at(image, optional + count_at) else { return not_pe("truncated optional header") };
    let entry = directories + 8 * SECURITY_DIRECTORY as usize;
    if count <= SECURITY_DIRECTORY || entry + 8 > optional_size {
        return KernelSignature::Unsigned;
    }
    let (Some(offset), Some(size)) = (u32_at(image, optional + entry), u32_at(image, optional + entry + 4)) else {
        return not_pe("truncated data directories");
    };
    if size == 0 {
        return KernelSignature::Unsigned;
    }
    // The security directory holds a file offset, not an RVA. A table that runs past
    // the end of the file, or whose first certificate is no PKCS#7 blob, signs nothing.
    let (offset, len) = (offset as usize, size as usize);
    if offset.checked_add(len).is_none_or(|end| end > image.len()) || len < 8 {
        return KernelSignature::Unsigned;
    }
    match (u32_at(image, offset), u16_at(image, offset + 6)) {
        (Some(cert_len), Some(WIN_CERT_TYPE_PKCS_SIGNED_DATA)) if cert_len > 8 && cert_len as usize <= len => {
            KernelSignature::Signed { bytes: size }
        }
        _ => KernelSignature::Unsigned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image: DOS header, PE header, optional header with 16 data
    /// directories, then (when `cert` is given) a certificate table at the end.
    pub(crate) fn fake_pe(cert: Option<&[u8]>) -> Vec<u8> {
        let mut img = vec![0u8; 0x200];
        img[..2].copy_from_slice(b"MZ");
        img[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        img[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        img[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        img[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        img[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        if let Some(cert) = cert {
            let offset = img.len() as u32;
            let mut table = Vec::new();
            table.extend_from_slice(&(8 + cert.len() as u32).to_le_bytes());
            table.extend_from_slice(&0x0200u16.to_le_bytes());
            table.extend_from_slice(&WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
            table.extend_from_slice(cert);
            let dir = opt + 112 + 8 * 4;
            img[dir..dir + 4].copy_from_slice(&offset.to_le_bytes());
            img[dir + 4..dir + 8].copy_from_slice(&(table.len() as u32).to_le_bytes());
            img.extend_from_slice(&table);
        }
        img
    }

    #[test]
    fn signed_and_unsigned_pe() {
        assert_eq!(kernel_signature(&fake_pe(Some(&[0x30; 64]))), KernelSignature::Signed { bytes: 72 });
        assert_eq!(kernel_signature(&fake_pe(None)), KernelSignature::Unsigned);
    }

    #[test]
    fn a_table_past_the_end_or_of_another_type_signs_nothing() {
        let mut img = fake_pe(Some(&[0x30; 64]));
        img.truncate(img.len() - 10);
        assert_eq!(kernel_signature(&img), KernelSignature::Unsigned);
        let mut img = fake_pe(Some(&[0x30; 64]));
        let at = 0x200 + 6;
        img[at..at + 2].copy_from_slice(&0x0001u16.to_le_bytes()); // X.509, not PKCS#7
        assert_eq!(kernel_signature(&img), KernelSignature::Unsigned);
    }

    #[test]
    fn not_a_pe_says_why_and_never_panics() {
        assert!(matches!(kernel_signature(b""), KernelSignature::NotPe(_)));
        assert!(matches!(kernel_signature(b"\x7fELF...."), KernelSignature::NotPe(_)));
        let img = fake_pe(None);
        for cut in 0..img.len() {
            let _ = kernel_signature(&img[..cut]);
        }
        let mut img = fake_pe(None);
        img[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(kernel_signature(&img), KernelSignature::NotPe(_)));
    }

    #[test]
    fn mutated_headers_never_panic() {
        // A small deterministic mutation run over the header bytes (the fuzz target
        // kernel_signature does this at length).
        let base = fake_pe(Some(&[0x30; 64]));
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut img = base.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % img.len();
                img[at] = (state >> 32) as u8;
            }
            let _ = kernel_signature(&img);
        }
    }
}

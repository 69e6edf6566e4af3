//! Checked little helpers to read superblock fields: every access may fall outside a
//! truncated buffer, so each returns an Option instead of indexing.

pub fn slice(buf: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    buf.get(offset..offset.checked_add(len)?)
}

pub fn le16(buf: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(slice(buf, offset, 2)?.try_into().ok()?))
}

pub fn le32(buf: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(slice(buf, offset, 4)?.try_into().ok()?))
}

pub fn le64(buf: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(slice(buf, offset, 8)?.try_into().ok()?))
}

pub fn be32(buf: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_be_bytes(slice(buf, offset, 4)?.try_into().ok()?))
}

pub fn u8_at(buf: &[u8], offset: usize) -> Option<u8> {
    buf.get(offset).copied()
}

/// A fixed-size label field: up to the first NUL, trailing spaces dropped (ISO and FAT
/// pad with spaces), `None` when empty.
pub fn label(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = String::from_utf8_lossy(field.get(..end)?);
    let text = text.trim_end_matches([' ', '\0']).trim_start();
    (!text.is_empty()).then(|| text.to_string())
}

/// A 16-byte UUID the way blkid prints it; `None` for the all-zero "no UUID".
pub fn uuid(field: &[u8]) -> Option<String> {
    let b: &[u8; 16] = field.try_into().ok()?;
    if b.iter().all(|&x| x == 0) {
        return None;
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!("{}-{}-{}-{}-{}", hex.get(0..8)?, hex.get(8..12)?, hex.get(12..16)?, hex.get(16..20)?, hex.get(20..32)?))
}

/// FAT and exFAT volume serial numbers, printed as blkid does: `ABCD-EF01`.
pub fn serial(value: u32) -> String {
    format!("{:04X}-{:04X}", value >> 16, value & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_outside_the_buffer_are_none() {
        let b = [1u8, 2, 3];
        assert_eq!(le16(&b, 1), Some(0x0302));
        assert_eq!(le16(&b, 2), None);
        assert_eq!(le32(&b, usize::MAX), None);
        assert_eq!(slice(&b, usize::MAX, 2), None);
    }

    #[test]
    fn labels_and_uuids_format_like_blkid() {
        assert_eq!(label(b"VIVER      "), Some("VIVER".into()));
        assert_eq!(label(b"AB\0garbage"), Some("AB".into()));
        assert_eq!(label(b"   \0"), None);
        assert_eq!(uuid(&[0; 16]), None);
        assert_eq!(uuid(&[0x11; 16]).as_deref(), Some("11111111-1111-1111-1111-111111111111"));
        assert_eq!(serial(0xdeadbeef), "DEAD-BEEF");
    }
}

//! ISO 9660: volume descriptors in 2 KiB sectors from sector 16 on, each starting with
//! a type byte and `CD001`. The primary one (type 1) holds the volume label; the UUID
//! is the modification (else creation) date, as blkid and GRUB print it:
//! `2026-11-28-06-46-49-00`.

use super::bytes::{label, slice, u8_at};
use super::{Filesystem, FsKind};

const SECTOR: usize = 2048;
const FIRST_DESCRIPTOR: usize = 16;
const TYPE_PRIMARY: u8 = 1;
const TYPE_TERMINATOR: u8 = 255;

pub fn probe(head: &[u8]) -> Option<Filesystem> {
    // Sectors 16..64 all lie within the probe window; real discs have a handful.
    for sector in FIRST_DESCRIPTOR..64 {
        let d = slice(head, sector * SECTOR, SECTOR)?;
        if slice(d, 1, 5)? != b"CD001" {
            return None;
        }
        match u8_at(d, 0)? {
            TYPE_PRIMARY => {
                let uuid = date_uuid(slice(d, 830, 17)?).or_else(|| date_uuid(slice(d, 813, 17)?));
                return Some(Filesystem::new(FsKind::Iso9660, label(slice(d, 40, 32)?), uuid));
            }
            TYPE_TERMINATOR => return None,
            _ => continue,
        }
    }
    None
}

/// A descriptor date: 16 ASCII digits `YYYYMMDDHHMMSScc` plus a timezone byte.
/// All zeros (or not digits) means unset.
fn date_uuid(date: &[u8]) -> Option<String> {
    let digits = date.get(..16)?;
    if !digits.iter().all(u8::is_ascii_digit) || digits.iter().all(|&b| b == b'0') {
        return None;
    }
    let s = std::str::from_utf8(digits).ok()?;
    Some(format!(
        "{}-{}-{}-{}-{}-{}-{}",
        s.get(0..4)?,
        s.get(4..6)?,
        s.get(6..8)?,
        s.get(8..10)?,
        s.get(10..12)?,
        s.get(12..14)?,
        s.get(14..16)?
    ))
}

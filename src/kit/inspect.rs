//! `viver kit inspect INITRD [--extract DIR]`: lists an initrd made of concatenated
//! segments (an uncompressed early-microcode cpio followed by a compressed one is the
//! usual shape), each gzip, zstd, xz or plain cpio, detected by magic number.

use super::error::{IoContext, KitError};
use super::tools;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub mode: u32,
    pub size: u64,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

#[derive(Debug)]
pub struct Segment {
    pub offset: usize,
    pub compression: Compression,
    pub entries: Vec<Entry>,
}

const CPIO_MAGIC: &[u8] = b"0707";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];

fn detect(data: &[u8]) -> Option<Compression> {
    if data.starts_with(b"070701") || data.starts_with(b"070702") {
        Some(Compression::None)
    } else if data.starts_with(GZIP_MAGIC) {
        Some(Compression::Gzip)
    } else if data.starts_with(ZSTD_MAGIC) {
        Some(Compression::Zstd)
    } else if data.starts_with(XZ_MAGIC) {
        Some(Compression::Xz)
    } else {
        None
    }
}

fn hex_field(header: &[u8], index: usize, file: &str, offset: usize) -> Result<u32, KitError> {
    let start = 6 + index * 8;
    let field =
        header.get(start..start + 8).ok_or_else(|| KitError::BadInput(format!("{file}: truncated cpio header at byte {offset}")))?;
    let text = std::str::from_utf8(field).unwrap_or("");
    u32::from_str_radix(text, 16).map_err(|_| KitError::BadInput(format!("{file}: bad cpio header field {text:?} at byte {offset}")))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses newc entries from `data` up to the trailer; returns entries and bytes used.
fn parse_cpio(data: &[u8], file: &str, base: usize) -> Result<(Vec<Entry>, usize), KitError> {
    let mut pos = 0usize;
    let mut entries = Vec::new();
    loop {
        let at = base + pos;
        let header = data.get(pos..pos + 110).ok_or_else(|| KitError::BadInput(format!("{file}: truncated cpio archive at byte {at}")))?;
        if !header.starts_with(CPIO_MAGIC) || !(header.starts_with(b"070701") || header.starts_with(b"070702")) {
            return Err(KitError::BadInput(format!("{file}: no newc cpio header at byte {at}")));
        }
        let mode = hex_field(header, 1, file, at)?;
        let size = hex_field(header, 6, file, at)? as usize;
        let rdev = (hex_field(header, 9, file, at)?, hex_field(header, 10, file, at)?);
        let namesize = hex_field(header, 11, file, at)? as usize;
        let name_bytes =
            data.get(pos + 110..pos + 110 + namesize).ok_or_else(|| KitError::BadInput(format!("{file}: truncated name at byte {at}")))?;
        let name = String::from_utf8_lossy(name_bytes).trim_end_matches('\0').to_string();
        let data_start = align4(pos + 110 + namesize);
        let body = data
            .get(data_start..data_start + size)
            .ok_or_else(|| KitError::BadInput(format!("{file}: entry {name} at byte {at} runs past the end")))?;
        pos = align4(data_start + size);
        if name == "TRAILER!!!" {
            return Ok((entries, pos));
        }
        entries.push(Entry { name, mode, size: size as u64, rdev, data: body.to_vec() });
    }
}

fn decompress_external(tool: &str, data: &[u8], file: &str) -> Result<Vec<u8>, KitError> {
    let exe = tools::find(tool)?;
    let scratch = super::atomic::ScratchDir::new("inspect")?;
    let input = scratch.path.join("segment");
    std::fs::write(&input, data).at(&input)?;
    let mut cmd = Command::new(exe);
    cmd.arg("-dc").arg(&input);
    tools::run_captured(tool, &mut cmd).map_err(|e| KitError::BadInput(format!("{file}: cannot decompress {tool} segment: {e}")))
}

/// Splits an initrd into its segments and lists their entries.
pub fn read_initrd(path: &Path) -> Result<Vec<Segment>, KitError> {
    let data = std::fs::read(path).at(path)?;
    let file = path.display().to_string();
    let mut segments = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let rest = data.get(pos..).unwrap_or_default();
        // Segments are padded with zeros to 4-byte (often 512-byte) boundaries.
        if rest.first() == Some(&0) {
            pos += 1;
            continue;
        }
        let compression =
            detect(rest).ok_or_else(|| KitError::BadInput(format!("{file}: unknown data at byte {pos} (not cpio, gzip, zstd or xz)")))?;
        let (entries, used) = match compression {
            Compression::None => parse_cpio(rest, &file, pos)?,
            Compression::Gzip => {
                let mut decoder = flate2::bufread::GzDecoder::new(rest);
                let mut plain = Vec::new();
                decoder.read_to_end(&mut plain).map_err(|e| KitError::BadInput(format!("{file}: bad gzip segment at byte {pos}: {e}")))?;
                let remaining = decoder.into_inner().len();
                let (entries, _) = parse_cpio(&plain, &file, 0)?;
                (entries, rest.len() - remaining)
            }
            // The external tools read to the end; such a segment is taken to be the last.
            Compression::Zstd => (parse_cpio(&decompress_external("zstd", rest, &file)?, &file, 0)?.0, rest.len()),
            Compression::Xz => (parse_cpio(&decompress_external("xz", rest, &file)?, &file, 0)?.0, rest.len()),
        };
        segments.push(Segment { offset: pos, compression, entries });
        pos += used.max(1);
    }
    if segments.is_empty() {
        return Err(KitError::BadInput(format!("{file}: empty initrd")));
    }
    Ok(segments)
}

pub fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '-',
    };
    let mut s = String::from(kind);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

/// A path inside DIR for an archive name, refusing absolute or `..` escapes.
fn safe_target(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = Path::new(name.trim_start_matches("./"));
    let mut out = dir.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (out != dir).then_some(out)
}

/// Unpacks all segments into `dir` (later segments overwrite earlier ones, as the kernel does).
pub fn extract(segments: &[Segment], dir: &Path) -> Result<usize, KitError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).at(dir)?;
    let mut count = 0;
    for entry in segments.iter().flat_map(|s| &s.entries) {
        let target = safe_target(dir, &entry.name)
            .ok_or_else(|| KitError::BadInput(format!("refusing entry {:?}: it escapes {}", entry.name, dir.display())))?;
        // A symlink planted earlier must not redirect later writes outside DIR.
        if let Some(parent) = target.parent() {
            let mut p = parent.to_path_buf();
            while p.starts_with(dir) && p != dir {
                if p.symlink_metadata().map(|m| m.file_type().is_symlink()).unwrap_or(false) {
                    return Err(KitError::BadInput(format!("refusing entry {:?}: its parent is a symlink", entry.name)));
                }
                if !p.pop() {
                    break;
                }
            }
            std::fs::create_dir_all(parent).at(parent)?;
        }
        let perm = std::fs::Permissions::from_mode(entry.mode & 0o7777);
        match entry.mode & 0o170000 {
            0o040000 => {
                std::fs::create_dir_all(&target).at(&target)?;
                std::fs::set_permissions(&target, perm).at(&target)?;
            }
            0o120000 => {
                let _ = std::fs::remove_file(&target);
                let link = String::from_utf8_lossy(&entry.data).to_string();
                std::os::unix::fs::symlink(&link, &target).at(&target)?;
            }
            0o100000 => {
                let _ = std::fs::remove_file(&target);
                std::fs::write(&target, &entry.data).at(&target)?;
                std::fs::set_permissions(&target, perm).at(&target)?;
            }
            // Device nodes need root and mean nothing outside the booted system.
            _ => {
                log::info!("skipping special file {}", entry.name);
                continue;
            }
        }
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escaping_names() {
        let d = Path::new("/x");
        assert!(safe_target(d, "../etc/passwd").is_none());
        assert!(safe_target(d, "/etc/passwd").is_none());
        assert!(safe_target(d, "a/../../b").is_none());
        assert_eq!(safe_target(d, "./lib/a.ko"), Some(PathBuf::from("/x/lib/a.ko")));
    }

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(0o040755), "drwxr-xr-x");
        assert_eq!(mode_string(0o020600), "crw-------");
        assert_eq!(mode_string(0o100644), "-rw-r--r--");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_cpio(b"070701zz", "t", 0).is_err());
        assert!(parse_cpio(b"", "t", 0).is_err());
        assert!(detect(b"hello").is_none());
    }
}

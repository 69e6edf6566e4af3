//! Reading a module's `.modinfo` ELF section (alias, depends, softdep, name ...),
//! so the tables can be built from the .ko files without depmod.

use super::error::HwError;
use goblin::elf::section_header::SectionHeader;
use std::io::Read;
use std::path::Path;

/// The compression a module file is stored with, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

/// File name endings kmod accepts as modules, longest first.
pub const MODULE_EXTENSIONS: [(&str, Compression); 4] =
    [(".ko.gz", Compression::Gzip), (".ko.xz", Compression::Xz), (".ko.zst", Compression::Zstd), (".ko", Compression::None)];

pub fn compression_of(file_name: &str) -> Option<Compression> {
    MODULE_EXTENSIONS.iter().find(|(ext, _)| file_name.len() > ext.len() && file_name.ends_with(ext)).map(|(_, c)| *c)
}

/// kmod's module name for a path: file name without the module extension, '-' as '_'.
pub fn module_name_from_path(path: &str) -> Option<String> {
    let base = path.trim_end().rsplit('/').next()?;
    let (ext, _) = MODULE_EXTENSIONS.iter().find(|(ext, _)| base.len() > ext.len() && base.ends_with(ext))?;
    Some(normalize_module_name(&base[..base.len() - ext.len()]))
}

/// Module names are compared with '-' and '_' treated alike; kmod stores '_'.
pub fn normalize_module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The uncompressed bytes of a module file. Debian's 6.1 kernel has no
/// MODULE_DECOMPRESS, so whatever the compression, it is undone here (pure Rust:
/// flate2 for gzip, lzma-rs for xz, ruzstd for zstd; all build into the static /init).
pub fn read_module_bytes(path: &Path) -> Result<Vec<u8>, HwError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let raw = std::fs::read(path).map_err(|e| HwError::io(path, e))?;
    let compression = compression_of(name).unwrap_or(Compression::None);
    decompress(compression, raw).map_err(|reason| HwError::NotAModule { path: path.into(), reason })
}

/// Undoes `compression` on a whole module image; the error names the format.
pub fn decompress(compression: Compression, raw: Vec<u8>) -> Result<Vec<u8>, String> {
    // Modules shrink to about a third; reserving that avoids most reallocations.
    let mut out = Vec::with_capacity(raw.len().saturating_mul(3));
    match compression {
        Compression::None => return Ok(raw),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(|e| format!("gzip: {e}"))?;
        }
        Compression::Xz => {
            let mut input = std::io::BufReader::new(raw.as_slice());
            lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| format!("xz: {e}"))?;
        }
        Compression::Zstd => {
            let mut decoder = ruzstd::decoding::StreamingDecoder::new(raw.as_slice()).map_err(|e| format!("zstd: {e}"))?;
            decoder.read_to_end(&mut out).map_err(|e| format!("zstd: {e}"))?;
        }
    }
    Ok(out)
}

/// The key=value strings of the `.modinfo` section, in section order.
pub fn parse_modinfo(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    let elf = ModuleElf::open(bytes)?;
    let section = elf.section(".modinfo").ok_or("no .modinfo section")??;
    Ok(split_modinfo(section))
}

/// [`parse_module`] on a file. Uncompressed modules are memory-mapped, so only the
/// pages holding headers, .modinfo and the symbol tables are touched (that is how
/// indexing all modules beats depmod); compressed ones are inflated first.
pub fn parse_module_file(path: &Path) -> Result<ModuleFacts, String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if compression_of(name) != Some(Compression::None) {
        let bytes = read_module_bytes(path).map_err(|e| e.to_string())?;
        return parse_module(&bytes);
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    match Mapping::new(&file) {
        Some(map) => parse_module(map.bytes()),
        None => {
            let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
            parse_module(&bytes)
        }
    }
}

/// A read-only private mapping of a whole file, unmapped on drop.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(file: &std::fs::File) -> Option<Mapping> {
        use std::os::fd::AsRawFd;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh read-only private mapping of an open file; checked for failure.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(Mapping { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: ptr/len describe a live mapping owned by self (module files are not
        // modified while indexed; a concurrent truncation would be a broken tree anyway).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap returned.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// What the indexer needs from one module file.
#[derive(Debug, Clone, Default)]
pub struct ModuleFacts {
    pub modinfo: Vec<(String, String)>,
    /// Symbols the module exports (from __ksymtab_strings).
    pub exports: Vec<String>,
    /// Undefined symbols in .symtab order: depmod derives dependencies (and their
    /// order) from these, so we do too.
    pub undefined: Vec<String>,
}

/// Reads .modinfo, exported and undefined symbols through the section headers only.
pub fn parse_module(bytes: &[u8]) -> Result<ModuleFacts, String> {
    let elf = ModuleElf::open(bytes)?;
    let modinfo = split_modinfo(elf.section(".modinfo").ok_or("no .modinfo section")??);
    let exports = match elf.section("__ksymtab_strings") {
        Some(sec) => sec?.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).to_string()).collect(),
        None => Vec::new(),
    };
    let mut undefined = Vec::new();
    if let Some(symtab_sh) = elf.sections.iter().find(|sh| sh.sh_type == goblin::elf::section_header::SHT_SYMTAB) {
        let strtab_sh = elf.sections.get(symtab_sh.sh_link as usize).ok_or("symbol table without string table")?;
        let strtab = section_bytes(bytes, strtab_sh).ok_or("string table lies outside the file")?;
        let entsize = goblin::elf::sym::Sym::size(elf.ctx.container);
        let count = usize::try_from(symtab_sh.sh_size).unwrap_or(0) / entsize.max(1);
        let offset = usize::try_from(symtab_sh.sh_offset).map_err(|_| "bad symtab offset")?;
        if offset.checked_add(count.saturating_mul(entsize)).is_none_or(|end| end > bytes.len()) {
            return Err("symbol table lies outside the file (truncated?)".into());
        }
        let syms = goblin::elf::sym::Symtab::parse(bytes, offset, count, elf.ctx).map_err(|e| format!("bad symbol table ({e})"))?;
        for sym in syms.iter().skip(1) {
            if sym.st_shndx as u32 != goblin::elf::section_header::SHN_UNDEF {
                continue;
            }
            let Some(rest) = strtab.get(sym.st_name..) else { continue };
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            if end > 0 {
                undefined.push(String::from_utf8_lossy(&rest[..end]).to_string());
            }
        }
    }
    Ok(ModuleFacts { modinfo, exports, undefined })
}

/// Splits a raw .modinfo section: NUL-separated "key=value" strings (padding NULs skipped).
pub fn split_modinfo(section: &[u8]) -> Vec<(String, String)> {
    section
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let text = String::from_utf8_lossy(s);
            let (k, v) = text.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// An ELF file seen through its section headers only (no full goblin parse: that
/// is what makes indexing 4,000 modules fast).
struct ModuleElf<'a> {
    bytes: &'a [u8],
    ctx: goblin::container::Ctx,
    sections: Vec<SectionHeader>,
    names: &'a [u8],
}

impl<'a> ModuleElf<'a> {
    fn open(bytes: &'a [u8]) -> Result<ModuleElf<'a>, String> {
        if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err("not an ELF file (bad magic)".into());
        }
        let header = goblin::elf::Elf::parse_header(bytes).map_err(|e| format!("not an ELF file ({e})"))?;
        let container = header.container().map_err(|e| format!("bad ELF class ({e})"))?;
        let le = header.endianness().map_err(|e| format!("bad ELF endianness ({e})"))?;
        let ctx = goblin::container::Ctx { container, le };
        let shoff = usize::try_from(header.e_shoff).map_err(|_| "section header offset out of range".to_string())?;
        if shoff >= bytes.len() {
            return Err("section headers lie past the end of the file (truncated?)".into());
        }
        let sections =
            SectionHeader::parse(bytes, shoff, header.e_shnum as usize, ctx).map_err(|e| format!("bad section headers ({e})"))?;
        let names = sections.get(header.e_shstrndx as usize).ok_or("no section name table")?;
        let names = section_bytes(bytes, names).ok_or("section name table lies outside the file")?;
        Ok(ModuleElf { bytes, ctx, sections, names })
    }

    /// The named section's bytes; Some(Err) when it lies outside the file.
    fn section(&self, wanted: &str) -> Option<Result<&'a [u8], String>> {
        for sh in &self.sections {
            let Some(rest) = self.names.get(sh.sh_name..) else { continue };
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            if &rest[..end] == wanted.as_bytes() {
                return Some(section_bytes(self.bytes, sh).ok_or_else(|| format!("{wanted} lies outside the file (truncated?)")));
            }
        }
        None
    }
}

fn section_bytes<'a>(bytes: &'a [u8], sh: &SectionHeader) -> Option<&'a [u8]> {
    if sh.sh_type == goblin::elf::section_header::SHT_NOBITS {
        return Some(&[]);
    }
    let start = usize::try_from(sh.sh_offset).ok()?;
    let len = usize::try_from(sh.sh_size).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_follow_kmod() {
        assert_eq!(module_name_from_path("kernel/drivers/ata/ata_piix.ko").as_deref(), Some("ata_piix"));
        assert_eq!(module_name_from_path("kernel/sound/snd-pcm.ko.xz").as_deref(), Some("snd_pcm"));
        assert_eq!(module_name_from_path("a/b.txt"), None);
        assert_eq!(module_name_from_path(".ko"), None);
    }

    #[test]
    fn modinfo_strings_split_on_nul() {
        let raw = b"alias=pci:v*\0\0depends=a,b\0name=x\0garbage\0";
        let kv = split_modinfo(raw);
        assert_eq!(kv, vec![("alias".into(), "pci:v*".into()), ("depends".into(), "a,b".into()), ("name".into(), "x".into())]);
    }

    #[test]
    fn garbage_in_each_compression_is_an_error_naming_the_format() {
        for (c, tag) in [(Compression::Gzip, "gzip"), (Compression::Xz, "xz"), (Compression::Zstd, "zstd")] {
            let err = decompress(c, b"definitely not compressed data".to_vec()).unwrap_err();
            assert!(err.starts_with(tag), "{err}");
            let err = decompress(c, Vec::new()).unwrap_err();
            assert!(err.starts_with(tag), "{err}");
        }
    }

    #[test]
    fn gzip_round_trip() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"\x7fELF module bytes").unwrap();
        let packed = gz.finish().unwrap();
        assert_eq!(decompress(Compression::Gzip, packed).unwrap(), b"\x7fELF module bytes");
    }

    #[test]
    fn non_elf_is_refused_with_reason() {
        let err = parse_modinfo(b"hello world, not elf").unwrap_err();
        assert!(err.contains("not an ELF"), "{err}");
        let err = parse_modinfo(b"\x7fELF\x02\x01\x01").unwrap_err();
        assert!(!err.is_empty());
    }
}

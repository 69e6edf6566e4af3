//! The files `exec` of init needs from the image: init itself (symlinks followed), the
//! interpreter of a `#!` script, an ELF's interpreter (PT_INTERP) and its DT_NEEDED
//! libraries, transitively, found through RUNPATH/RPATH (`$ORIGIN` expanded) and the
//! standard library directories, the way ld.so finds them on a Debian-like system.

use super::squashfs::{Archive, Inode, InodeKind, SquashError, Source};

/// ld.so's default search path (after ld.so.cache, which lists these on Debian).
const LIB_DIRS_64: &[&str] = &["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];
const LIB_DIRS_32: &[&str] = &["/lib/i386-linux-gnu", "/usr/lib/i386-linux-gnu", "/lib32", "/usr/lib32", "/lib", "/usr/lib"];
/// No real init needs more; a damaged chain of scripts or libraries must end.
const MAX_FILES: usize = 256;
const MAX_SCRIPT_DEPTH: usize = 4;

#[derive(Debug, Default)]
pub struct Needs {
    /// Resolved paths inside the image with their inodes, init first.
    pub files: Vec<(String, Inode)>,
    /// Libraries or interpreters named but not found (exec or ld.so will say more).
    pub missing: Vec<String>,
}

/// What an ELF file asks of the loader.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ElfNeeds {
    pub is64: bool,
    pub interp: Option<String>,
    pub needed: Vec<String>,
    pub runpath: Vec<String>,
    pub rpath: Vec<String>,
}

/// Reads what `init` needs (a path inside the image).
pub fn resolve<S: Source + ?Sized>(archive: &Archive<'_, S>, init: &str, mut on_file: impl FnMut(&Inode) -> Result<(), SquashError>) -> Result<Needs, SquashError> {
    let mut needs = Needs::default();
    let mut queue: Vec<(String, usize)> = vec![(init.to_string(), 0)];
    while let Some((wanted, depth)) = queue.pop() {
        if needs.files.len() >= MAX_FILES {
            break;
        }
        let (path, inode) = match archive.lookup(&wanted) {
            Ok(found) => found,
            Err(SquashError::NotFound(_)) => {
                needs.missing.push(wanted);
                continue;
            }
            Err(e) => return Err(e),
        };
        if needs.files.iter().any(|(p, _)| *p == path) {
            continue;
        }
        let InodeKind::File { file_size, .. } = inode.kind else {
            needs.missing.push(format!("{wanted} (not a regular file)"));
            continue;
        };
        // Its bytes are checked before any of them is parsed.
        on_file(&inode)?;
        let head = archive.read_file(&inode, 0, 256.min(file_size as usize))?;
        needs.files.push((path.clone(), inode.clone()));
        if let Some(interpreter) = shebang(&head) {
            if depth < MAX_SCRIPT_DEPTH {
                queue.push((interpreter, depth + 1));
            }
            continue;
        }
        let Some(elf) = elf_needs(&|offset, len| archive.read_file(&inode, offset, len), file_size)? else { continue };
        if let Some(interp) = &elf.interp {
            queue.push((interp.clone(), depth));
        }
        let origin = path.rsplit_once('/').map(|(dir, _)| if dir.is_empty() { "/" } else { dir }).unwrap_or("/").to_string();
        let expand = |dirs: &[String]| -> Vec<String> {
            dirs.iter().map(|d| d.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin)).collect()
        };
        let mut dirs = if elf.runpath.is_empty() { expand(&elf.rpath) } else { expand(&elf.runpath) };
        let defaults = if elf.is64 { LIB_DIRS_64 } else { LIB_DIRS_32 };
        dirs.extend(defaults.iter().map(|d| d.to_string()));
        for lib in &elf.needed {
            if lib.contains('/') {
                queue.push((lib.clone(), depth));
                continue;
            }
            // Already loaded under that name (ld.so matches the soname of loaded objects).
            let loaded = |p: &String| p.rsplit('/').next() == Some(lib.as_str());
            if needs.files.iter().any(|(p, _)| loaded(p)) || queue.iter().any(|(p, _)| loaded(p)) {
                continue;
            }
            let found = dirs.iter().map(|d| format!("{}/{lib}", d.trim_end_matches('/'))).find(|candidate| {
                matches!(archive.lookup(candidate), Ok((_, Inode { kind: InodeKind::File { .. }, .. })))
            });
            match found {
                Some(candidate) => queue.push((candidate, depth)),
                None => needs.missing.push(lib.clone()),
            }
        }
    }
    Ok(needs)
}

/// The interpreter named by a `#!` line.
pub fn shebang(head: &[u8]) -> Option<String> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|b| *b == b'\n').next()?;
    let text = String::from_utf8_lossy(line);
    text.split_whitespace().next().map(str::to_string)
}

/// Parses just enough of an ELF file (read through `read(offset, len)`) to know what the
/// loader needs; None when it is no ELF. Bounds are checked against `size`.
pub fn elf_needs(read: &dyn Fn(u64, usize) -> Result<Vec<u8>, SquashError>, size: u64) -> Result<Option<ElfNeeds>, SquashError> {
    let bad = |what: &str| SquashError::corrupt(format!("ELF file: {what}"));
    let header = read(0, 64)?;
    if header.len() < 52 || &header[..4] != b"\x7fELF" || header[5] != 1 {
        return Ok(None); // not ELF, or big-endian (not an x86 init)
    }
    let is64 = match header[4] {
        2 => true,
        1 => false,
        _ => return Ok(None),
    };
    let u16_at = |b: &[u8], o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as u64);
    let u32_at = |b: &[u8], o: usize| b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64);
    let u64_at = |b: &[u8], o: usize| b.get(o..o + 8).map(|s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]));
    let word = |b: &[u8], o64: usize, o32: usize| if is64 { u64_at(b, o64) } else { u32_at(b, o32) };
    let phoff = word(&header, 32, 28).ok_or_else(|| bad("short header"))?;
    let phentsize = u16_at(&header, if is64 { 54 } else { 42 }).ok_or_else(|| bad("short header"))?;
    let phnum = u16_at(&header, if is64 { 56 } else { 44 }).ok_or_else(|| bad("short header"))?;
    let min_ent = if is64 { 56 } else { 32 };
    if phentsize < min_ent || phnum > 512 || phoff.saturating_add(phentsize * phnum) > size {
        return Err(bad("program headers out of bounds"));
    }
    let table = read(phoff, (phentsize * phnum) as usize)?;
    let mut loads = Vec::new();
    let mut needs = ElfNeeds { is64, ..ElfNeeds::default() };
    let mut dynamic = None;
    for i in 0..phnum as usize {
        let Some(ph) = table.get(i * phentsize as usize..(i + 1) * phentsize as usize) else { break };
        let p_type = u32_at(ph, 0).unwrap_or(0);
        let (offset, vaddr, filesz) = if is64 {
            (u64_at(ph, 8), u64_at(ph, 16), u64_at(ph, 32))
        } else {
            (u32_at(ph, 4), u32_at(ph, 8), u32_at(ph, 16))
        };
        let (offset, vaddr, filesz) = (offset.unwrap_or(0), vaddr.unwrap_or(0), filesz.unwrap_or(0));
        if offset.saturating_add(filesz) > size {
            return Err(bad("a segment lies past the end of the file"));
        }
        match p_type {
            1 => loads.push((vaddr, offset, filesz)),
            2 => dynamic = Some((offset, filesz)),
            3 if filesz <= 4096 => {
                let raw = read(offset, filesz as usize)?;
                let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
                needs.interp = Some(String::from_utf8_lossy(&raw[..end]).into_owned());
            }
            _ => {}
        }
    }
    let Some((dyn_offset, dyn_size)) = dynamic else { return Ok(Some(needs)) };
    if dyn_size > 1 << 20 {
        return Err(bad("dynamic section too large"));
    }
    let entries = read(dyn_offset, dyn_size as usize)?;
    let entry_size = if is64 { 16 } else { 8 };
    let (mut strtab, mut strsz) = (None, None);
    let (mut needed, mut runpath, mut rpath) = (Vec::new(), Vec::new(), Vec::new());
    for entry in entries.chunks_exact(entry_size) {
        let (tag, value) = if is64 { (u64_at(entry, 0), u64_at(entry, 8)) } else { (u32_at(entry, 0), u32_at(entry, 4)) };
        let (tag, value) = (tag.unwrap_or(0), value.unwrap_or(0));
        match tag {
            0 => break,
            1 => needed.push(value),
            5 => strtab = Some(value),
            10 => strsz = Some(value),
            15 => rpath.push(value),
            29 => runpath.push(value),
            _ => {}
        }
    }
    let (Some(strtab), Some(strsz)) = (strtab, strsz) else { return Ok(Some(needs)) };
    let strtab_offset = loads
        .iter()
        .find(|(vaddr, _, filesz)| strtab >= *vaddr && strtab < vaddr.saturating_add(*filesz))
        .map(|(vaddr, offset, _)| strtab - vaddr + offset)
        .ok_or_else(|| bad("string table outside the loaded segments"))?;
    if strsz > 1 << 20 || strtab_offset.saturating_add(strsz) > size {
        return Err(bad("string table out of bounds"));
    }
    let strings = read(strtab_offset, strsz as usize)?;
    let string_at = |index: u64| -> Option<String> {
        let rest = strings.get(index as usize..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    needs.needed = needed.into_iter().filter_map(string_at).collect();
    let split = |list: Vec<u64>| -> Vec<String> {
        list.into_iter().filter_map(string_at).flat_map(|s| s.split(':').map(str::to_string).collect::<Vec<_>>()).filter(|s| !s.is_empty()).collect()
    };
    needs.runpath = split(runpath);
    needs.rpath = split(rpath);
    Ok(Some(needs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_host(path: &str) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }

    #[test]
    fn host_binaries_need_what_readelf_says() {
        // The machine's own dynamically linked tools: compare with readelf's view.
        for path in ["/usr/bin/ls", "/usr/lib/systemd/systemd"] {
            let Some(bytes) = read_host(path) else { continue };
            let read = |offset: u64, len: usize| -> Result<Vec<u8>, SquashError> {
                let start = (offset as usize).min(bytes.len());
                Ok(bytes[start..(start + len).min(bytes.len())].to_vec())
            };
            let needs = elf_needs(&read, bytes.len() as u64).unwrap().unwrap();
            let Ok(out) = std::process::Command::new("readelf").args(["-d", "-l", "-W", path]).output() else { continue };
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines().filter(|l| l.contains("(NEEDED)")) {
                let name = line.split('[').nth(1).and_then(|s| s.split(']').next()).unwrap();
                assert!(needs.needed.contains(&name.to_string()), "{path}: {name} not in {needs:?}");
            }
            assert_eq!(needs.needed.len(), text.lines().filter(|l| l.contains("(NEEDED)")).count(), "{path}");
            let interp = text.lines().find_map(|l| l.split("interpreter: ").nth(1)).map(|s| s.trim_end_matches(']').to_string());
            assert_eq!(needs.interp, interp, "{path}");
            if path.contains("systemd") {
                assert!(needs.runpath.iter().any(|r| r.contains("systemd")), "{needs:?}");
            }
        }
    }

    #[test]
    fn scripts_and_junk() {
        assert_eq!(shebang(b"#!/bin/sh -e\necho"), Some("/bin/sh".into()));
        assert_eq!(shebang(b"#! /usr/bin/env python3\n"), Some("/usr/bin/env".into()));
        assert_eq!(shebang(b"\x7fELF"), None);
        let junk = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec();
        let read = |offset: u64, len: usize| -> Result<Vec<u8>, SquashError> {
            let start = (offset as usize).min(junk.len());
            Ok(junk[start..(start + len).min(junk.len())].to_vec())
        };
        assert!(elf_needs(&read, junk.len() as u64).is_err());
    }
}

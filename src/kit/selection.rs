//! The initrd's module selection, read from data files (initramfs/modules.d/*.list,
//! embedded at build time so the installed binary needs no data directory; a directory
//! of lists can be given instead).

use super::error::{IoContext, KitError};
use std::path::Path;

/// The lists shipped with VIVER, in the order they are read.
pub const BUILTIN_LISTS: [(&str, &str); 5] = [
    ("storage.list", include_str!("../../initramfs/modules.d/storage.list")),
    ("usb.list", include_str!("../../initramfs/modules.d/usb.list")),
    ("mmc.list", include_str!("../../initramfs/modules.d/mmc.list")),
    ("fs.list", include_str!("../../initramfs/modules.d/fs.list")),
    ("net.list", include_str!("../../initramfs/modules.d/net.list")),
];
/// The list --host-only keeps (filesystems and image mounting) besides the host's drivers.
pub const HOST_ONLY_LISTS: [&str; 1] = ["fs.list"];
pub const BUILTIN_FILES_LIST: &str = include_str!("../../initramfs/files.list");

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A module name (dashes and underscores are the same).
    Module(String),
    /// A glob on module paths relative to the release directory.
    PathGlob(String),
    /// A modalias resolved through the module tables.
    Alias(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorLine {
    pub selector: Selector,
    /// `file:line`, for messages.
    pub origin: String,
}

pub fn parse_list(text: &str, file: &str) -> Result<Vec<SelectorLine>, KitError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let origin = format!("{file}:{}", i + 1);
        if line.split_whitespace().count() != 1 {
            return Err(KitError::BadInput(format!("{origin}: one module, glob or alias: a line, got {raw:?}")));
        }
        let selector = if let Some(alias) = line.strip_prefix("alias:") {
            Selector::Alias(alias.to_string())
        } else if line.contains('/') || line.contains('*') || line.contains('?') {
            Selector::PathGlob(line.to_string())
        } else {
            Selector::Module(line.replace('-', "_"))
        };
        out.push(SelectorLine { selector, origin });
    }
    Ok(out)
}

/// The selectors of the shipped lists (or of `dir/*.list`), optionally only `only` files.
pub fn load_lists(dir: Option<&Path>, only: Option<&[&str]>) -> Result<Vec<SelectorLine>, KitError> {
    let keep = |name: &str| only.is_none_or(|o| o.contains(&name));
    let mut out = Vec::new();
    match dir {
        None => {
            for (name, text) in BUILTIN_LISTS.iter().filter(|(n, _)| keep(n)) {
                out.extend(parse_list(text, &format!("initramfs/modules.d/{name}"))?);
            }
        }
        Some(dir) => {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .at(dir)?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".list"))
                .collect();
            names.sort();
            for name in names.iter().filter(|n| keep(n)) {
                let path = dir.join(name);
                let text = std::fs::read_to_string(&path).at(&path)?;
                out.extend(parse_list(&text, &path.display().to_string())?);
            }
        }
    }
    Ok(out)
}

/// Shell-style glob on '/'-separated paths: `*` and `?` stay within one component,
/// `**` matches across components.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = p.get(2..).unwrap_or_default();
                (0..=t.len()).any(|i| go(rest, t.get(i..).unwrap_or_default()))
            }
            Some(b'*') => {
                let rest = p.get(1..).unwrap_or_default();
                for i in 0..=t.len() {
                    if go(rest, t.get(i..).unwrap_or_default()) {
                        return true;
                    }
                    if t.get(i) == Some(&b'/') {
                        break;
                    }
                }
                false
            }
            Some(b'?') => matches!(t.first(), Some(c) if *c != b'/') && go(p.get(1..).unwrap_or_default(), t.get(1..).unwrap_or_default()),
            Some(c) => t.first() == Some(c) && go(p.get(1..).unwrap_or_default(), t.get(1..).unwrap_or_default()),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// One extra file from files.list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    pub source: String,
    pub dest: String,
    pub mode: Option<u32>,
}

pub fn parse_files_list(text: &str, file: &str) -> Result<Vec<ExtraFile>, KitError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let bad = |why: &str| KitError::BadInput(format!("{file}:{}: {why}: {raw:?}", i + 1));
        let (source, dest) = match (f.first(), f.get(1)) {
            (Some(s), Some(d)) if f.len() <= 3 => (s.to_string(), d.trim_start_matches('/').to_string()),
            _ => return Err(bad("expected SOURCE DEST [MODE]")),
        };
        if dest.is_empty() || dest.split('/').any(|c| c == "..") {
            return Err(bad("DEST must be a path inside the initrd"));
        }
        let mode = match f.get(2) {
            Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| bad("MODE must be octal"))?),
            None => None,
        };
        out.push(ExtraFile { source, dest, mode });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("kernel/drivers/ata/**", "kernel/drivers/ata/ahci.ko"));
        assert!(glob_match("kernel/drivers/ata/**", "kernel/drivers/ata/x/y.ko"));
        assert!(glob_match("kernel/drivers/ata/pata_*.ko*", "kernel/drivers/ata/pata_via.ko"));
        assert!(!glob_match("kernel/drivers/ata/*.ko", "kernel/drivers/ata/x/y.ko"));
        assert!(!glob_match("kernel/drivers/ata/**", "kernel/drivers/atax/y.ko"));
        assert!(glob_match("kernel/fs/?fs/*", "kernel/fs/xfs/xfs.ko"));
    }

    #[test]
    fn parses_lists_with_comments() {
        let l = parse_list("# c\nvirtio-blk\n  kernel/drivers/ata/** # all\nalias:fs-vfat\n\n", "t.list").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].selector, Selector::Module("virtio_blk".into()));
        assert_eq!(l[1].selector, Selector::PathGlob("kernel/drivers/ata/**".into()));
        assert_eq!(l[2].selector, Selector::Alias("fs-vfat".into()));
        assert_eq!(l[2].origin, "t.list:4");
        assert!(parse_list("a b\n", "t.list").unwrap_err().to_string().contains("t.list:1"));
    }

    #[test]
    fn shipped_lists_parse_and_cover_the_basics() {
        let all = load_lists(None, None).unwrap();
        for name in [
            "virtio_blk",
            "nvme",
            "ahci",
            "xhci_pci",
            "usb_storage",
            "sdhci_pci",
            "sr_mod",
            "isofs",
            "squashfs",
            "overlay",
            "loop",
            "vfat",
            "virtio_net",
        ] {
            assert!(all.iter().any(|s| s.selector == Selector::Module(name.into())), "{name}");
        }
        assert!(parse_files_list(BUILTIN_FILES_LIST, "files.list").unwrap().is_empty());
    }

    #[test]
    fn files_list_rejects_escapes() {
        assert!(parse_files_list("/a ../etc/x\n", "f").is_err());
        assert!(parse_files_list("/a\n", "f").is_err());
        assert_eq!(parse_files_list("/etc/x etc/x 600\n", "f").unwrap()[0].mode, Some(0o600));
    }
}

//! Coldplug: the devices that exist before we start, found by walking
//! /sys/devices/**/modalias (without following sysfs's symlinks, which loop).

use std::path::{Path, PathBuf};

/// (device directory relative to sysfs, modalias) for every device with a non-empty modalias.
pub fn walk_modaliases(sysfs: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![sysfs.join("devices")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut children: Vec<PathBuf> = Vec::new();
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                children.push(entry.path());
            } else if ft.is_file() && entry.file_name() == "modalias" {
                if let Ok(text) = std::fs::read(entry.path()) {
                    let alias = String::from_utf8_lossy(&text).trim_end_matches(['\n', '\0']).to_string();
                    if !alias.is_empty() {
                        let dev = dir.strip_prefix(sysfs).unwrap_or(&dir).to_string_lossy().to_string();
                        out.push((format!("/{}", dev.trim_start_matches('/')), alias));
                    }
                }
            }
        }
        // Depth-first in name order: parents (controllers) come before their children.
        children.sort();
        stack.extend(children.into_iter().rev());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_modalias_files_and_skips_symlinks() {
        let root = std::env::temp_dir().join(format!("viver-coldplug-{}", std::process::id()));
        let dev = root.join("devices/pci0000:00/0000:00:1f.2");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("modalias"), "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01\n").unwrap();
        std::fs::create_dir_all(root.join("devices/virtual/empty")).unwrap();
        std::fs::write(root.join("devices/virtual/empty/modalias"), "\n").unwrap();
        std::os::unix::fs::symlink(root.join("devices"), dev.join("loop")).unwrap();
        let found = walk_modaliases(&root);
        assert_eq!(
            found,
            vec![("/devices/pci0000:00/0000:00:1f.2".to_string(), "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".to_string())]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}

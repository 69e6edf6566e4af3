//! Compressed modules (.ko.xz, .ko.zst, .ko.gz) compressed by the real `xz`, `zstd` and
//! `gzip` tools: the tables built from them equal those built from the same modules
//! uncompressed, and every one decompresses to the exact original bytes (what /init
//! hands to init_module, since Debian's 6.1 kernel cannot decompress modules itself).

mod hardware_common;

use hardware_common::release_dir;
use std::path::{Path, PathBuf};
use std::process::Command;
use viver::hardware::modinfo::read_module_bytes;
use viver::hardware::ModuleTables;

/// Real module directories: btrfs and what it needs (crypto, lib), disk drivers.
const SUBTREES: &[&str] = &["kernel/fs/btrfs", "kernel/lib", "kernel/crypto", "kernel/drivers/ata", "kernel/drivers/block"];

fn modules_under(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir.join(rel)).unwrap().flatten() {
        let child = rel.join(entry.file_name());
        if entry.path().is_dir() {
            modules_under(dir, &child, out);
        } else if child.to_string_lossy().ends_with(".ko") {
            out.push(child);
        }
    }
}

fn compress(tool: &str, file: &Path) {
    // The tools' own defaults, as distributions run them (xz needs crc32 for the kernel).
    let args: &[&str] = match tool {
        "xz" => &["-q", "--check=crc32", "--lzma2=dict=1MiB"],
        "zstd" => &["-q", "--rm", "-19"],
        _ => &["-q", "-9"],
    };
    let st = Command::new(tool).args(args).arg(file).status().unwrap_or_else(|e| panic!("{tool}: {e} (apt-get install xz-utils zstd)"));
    assert!(st.success(), "{tool} {} failed", file.display());
}

/// Two trees with the same modules: `plain` (.ko) and `packed` (each third xz, zstd, gzip).
fn trees() -> (PathBuf, PathBuf, Vec<PathBuf>) {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("compressed-{}", std::process::id()));
    let (plain, packed) = (base.join("plain"), base.join("packed"));
    let src = release_dir();
    let mut files = Vec::new();
    for sub in SUBTREES {
        modules_under(&src, Path::new(sub), &mut files);
    }
    files.sort();
    assert!(files.len() > 150, "only {} modules under {SUBTREES:?}", files.len());
    for root in [&plain, &packed] {
        for f in ["modules.order", "modules.builtin", "modules.builtin.modinfo"] {
            std::fs::create_dir_all(root).unwrap();
            std::fs::copy(src.join(f), root.join(f)).unwrap();
        }
    }
    for (i, rel) in files.iter().enumerate() {
        for root in [&plain, &packed] {
            std::fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
            std::fs::copy(src.join(rel), root.join(rel)).unwrap();
        }
        compress(["xz", "zstd", "gzip"][i % 3], &packed.join(rel));
    }
    (plain, packed, files)
}

#[test]
fn compressed_tree_gives_the_same_tables_and_the_same_bytes() {
    let (plain, packed, files) = trees();
    let (a, warn_a) = ModuleTables::build(&plain).unwrap();
    let (b, warn_b) = ModuleTables::build(&packed).unwrap();
    assert!(warn_b.len() == warn_a.len(), "compressed tree warns more: {warn_b:?}");
    assert_eq!(a.modules().count(), files.len());
    assert_eq!(b.modules().count(), files.len(), "some compressed modules were not indexed: {warn_b:?}");
    assert_eq!(a.modules_alias_text(), b.modules_alias_text());
    // modules.dep names the files as they are (x.ko.xz); apart from that, identical.
    let strip = |text: String| text.replace(".ko.xz", ".ko").replace(".ko.zst", ".ko").replace(".ko.gz", ".ko");
    let dep_b = b.modules_dep_text();
    assert!(dep_b.contains(".ko.xz") && dep_b.contains(".ko.zst") && dep_b.contains(".ko.gz"));
    assert_eq!(a.modules_dep_text(), strip(dep_b));
    assert_eq!(a.load_order("btrfs"), b.load_order("btrfs"));
    assert!(b.load_order("btrfs").iter().any(|m| m == "libcrc32c"), "{:?}", b.load_order("btrfs"));
    assert_eq!(b.resolve("crypto-crc32c"), a.resolve("crypto-crc32c"));

    for m in b.modules() {
        let path = packed.join(b.module_path(m).unwrap());
        let original = plain.join(a.module_path(m).unwrap());
        let bytes = read_module_bytes(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(bytes == std::fs::read(&original).unwrap(), "{} does not decompress to {}", path.display(), original.display());
    }
}

#[test]
fn a_broken_compressed_module_is_skipped_with_its_name() {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("compressed-broken-{}", std::process::id()));
    let dir = base.join("kernel/drivers/ata");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["ahci.ko", "libahci.ko"] {
        std::fs::copy(release_dir().join("kernel/drivers/ata").join(name), dir.join(name)).unwrap();
    }
    compress("zstd", &dir.join("ahci.ko"));
    compress("xz", &dir.join("libahci.ko"));
    // Cut the xz file in half: the index must go on without it and say which file.
    let xz = dir.join("libahci.ko.xz");
    let len = std::fs::metadata(&xz).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&xz).unwrap().set_len(len / 2).unwrap();
    let (t, warnings) = ModuleTables::build(&base).unwrap();
    assert_eq!(t.modules().collect::<Vec<_>>(), vec!["ahci"]);
    let w = warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("\n");
    assert!(w.contains("libahci.ko.xz") && w.contains("xz"), "{w}");
}

//! The reader against real images made by mksquashfs, checked with unsquashfs.

use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-version").output().is_ok()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("viver-sqfs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tree with what the reader must handle: fragments, full and partial blocks, an
/// incompressible file (stored blocks), a sparse file, hard links (extended inodes),
/// symlinks (absolute, relative, chained, dangling), a directory of 600 entries
/// (several headers, an extended directory inode).
fn sample_tree(root: &Path) {
    let write = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    let text = |n: usize| -> Vec<u8> { (0..n).map(|i| b"abcdefghij\n"[i % 11]).collect() };
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let random: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    write("empty", b"");
    write("etc/hostname", b"viver\n");
    write("usr/lib/x86_64-linux-gnu/libbig.so.1", &text(131072 * 3 + 777));
    write("usr/lib/x86_64-linux-gnu/exact", &text(131072));
    write("usr/bin/random", &random);
    write("usr/bin/tool", &text(5000));
    let sparse = root.join("var/sparse");
    std::fs::create_dir_all(sparse.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(1 << 20).unwrap();
    std::fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-link")).unwrap();
    std::fs::create_dir_all(root.join("sbin")).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/systemd", root.join("sbin/init")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    write("usr/lib/systemd/systemd", &text(70_000));
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    std::os::unix::fs::symlink("../bin/tool", root.join("usr/lib/tool-rel")).unwrap();
    std::os::unix::fs::symlink("/nowhere", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("loop-b", root.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", root.join("loop-b")).unwrap();
    for i in 0..600 {
        write(&format!("many/entry-with-a-longish-name-{i:04}"), format!("{i}\n").as_bytes());
    }
}

fn mksquashfs(root: &Path, out: &Path, comp: &str) {
    let status = Command::new("mksquashfs")
        .arg(root)
        .arg(out)
        .args(["-noappend", "-no-progress", "-quiet", "-comp", comp, "-all-root"])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `unsquashfs -ll`: path -> (type char, size, symlink target).
fn unsquashfs_listing(image: &Path) -> Vec<(String, char, u64, Option<String>)> {
    let out = Command::new("unsquashfs").args(["-ll", "-d", "R"]).arg(image).output().unwrap();
    assert!(out.status.success());
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || !fields[5].starts_with('R') {
            continue;
        }
        let path = fields[5].strip_prefix('R').unwrap();
        let path = if path.is_empty() { "/".to_string() } else { path.to_string() };
        let target = (fields.len() >= 8 && fields[6] == "->").then(|| fields[7].to_string());
        rows.push((path, fields[0].chars().next().unwrap(), fields[2].parse().unwrap_or(0), target));
    }
    rows.sort();
    rows
}

fn our_listing(archive: &Archive<'_, Vec<u8>>) -> Vec<(String, char, u64, Option<String>)> {
    fn walk(a: &Archive<'_, Vec<u8>>, dir: &Inode, path: &str, rows: &mut Vec<(String, char, u64, Option<String>)>) {
        for entry in a.list(dir).unwrap() {
            let name = String::from_utf8(entry.name.clone()).unwrap();
            let full = format!("{}/{name}", if path == "/" { "" } else { path });
            let inode = a.inode(entry.inode).unwrap();
            match &inode.kind {
                InodeKind::Dir { file_size, .. } => {
                    rows.push((full.clone(), 'd', u64::from(*file_size), None));
                    walk(a, &inode, &full, rows);
                }
                InodeKind::File { file_size, .. } => rows.push((full, '-', *file_size, None)),
                InodeKind::Symlink { target } => {
                    let t = String::from_utf8(target.clone()).unwrap();
                    rows.push((full, 'l', t.len() as u64, Some(t)))
                }
                InodeKind::Other(_) => rows.push((full, '?', 0, None)),
            }
        }
    }
    let mut rows = Vec::new();
    let root = archive.root().unwrap();
    if let InodeKind::Dir { file_size, .. } = root.kind {
        rows.push(("/".to_string(), 'd', u64::from(file_size), None));
    }
    walk(archive, &root, "/", &mut rows);
    rows.sort();
    rows
}

fn cross_check(comp: &str) {
    if !have("mksquashfs") || !have("unsquashfs") {
        eprintln!("squashfs-tools missing: skipped");
        return;
    }
    let dir = scratch(comp);
    let root = dir.join("root");
    sample_tree(&root);
    let image_path = dir.join("image.squashfs");
    mksquashfs(&root, &image_path, comp);
    let image = std::fs::read(&image_path).unwrap();
    let archive = Archive::open(&image).unwrap();
    assert_eq!(archive.sb.compressor.name(), comp);
    assert_eq!(archive.sb.bytes_used as usize, image.len().min(archive.sb.bytes_used as usize));

    // Same names, kinds, sizes and link targets as unsquashfs -ll (directory sizes
    // aside: unsquashfs prints its own idea of them).
    let strip_dirs = |rows: Vec<(String, char, u64, Option<String>)>| -> Vec<(String, char, u64, Option<String>)> {
        rows.into_iter().map(|(p, k, s, t)| (p, k, if k == 'd' { 0 } else { s }, t)).collect()
    };
    assert_eq!(strip_dirs(our_listing(&archive)), strip_dirs(unsquashfs_listing(&image_path)));

    // Same bytes as unsquashfs -cat, for every regular file.
    for (path, kind, _, _) in unsquashfs_listing(&image_path) {
        if kind != '-' {
            continue;
        }
        let (_, inode) = archive.lookup(&path).unwrap();
        let InodeKind::File { file_size, .. } = inode.kind else { panic!("{path}") };
        let ours = archive.read_file(&inode, 0, file_size as usize).unwrap();
        let cat = Command::new("unsquashfs").args(["-cat"]).arg(&image_path).arg(&path).output().unwrap();
        assert!(cat.status.success(), "{path}");
        assert_eq!(ours, cat.stdout, "{path} ({comp})");
        // A range inside it too.
        if file_size > 200_000 {
            assert_eq!(archive.read_file(&inode, 140_000, 1000).unwrap(), cat.stdout[140_000..141_000]);
        }
        // Its extents lie in the data area, before the metadata.
        for e in archive.extents(&inode).unwrap() {
            assert!(e.start >= 96 && e.start + e.len <= archive.sb.metadata_start(), "{path}: {e:?}");
        }
    }

    // Symlinks: absolute, through a symlinked directory, relative, dangling, loops.
    let (resolved, init) = archive.lookup("/sbin/init").unwrap();
    assert_eq!(resolved, "/usr/lib/systemd/systemd");
    assert!(matches!(init.kind, InodeKind::File { file_size: 70_000, .. }));
    assert_eq!(archive.lookup("/lib/tool-rel").unwrap().0, "/usr/bin/tool");
    assert!(matches!(archive.lookup("/dangling"), Err(SquashError::NotFound(_))));
    assert!(matches!(archive.lookup("/loop-a"), Err(SquashError::Loop(_))));
    assert!(matches!(archive.lookup("/etc/hostname/x"), Err(SquashError::NotFound(_))));
    let (_, link) = archive.lookup_from("/sbin/init", false).unwrap();
    assert!(matches!(link.kind, InodeKind::Symlink { .. }));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reads_gzip_images_like_unsquashfs() {
    cross_check("gzip");
}

#[test]
fn reads_xz_images_like_unsquashfs() {
    cross_check("xz");
}

#[test]
fn reads_zstd_images_like_unsquashfs() {
    cross_check("zstd");
}

#[test]
fn lz4_and_lzo_are_reported_unsupported() {
    for comp in ["lz4", "lzo"] {
        let dir = scratch(comp);
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "x".repeat(10_000)).unwrap();
        let image_path = dir.join("image.squashfs");
        if !have("mksquashfs") {
            return;
        }
        mksquashfs(&root, &image_path, comp);
        let image = std::fs::read(&image_path).unwrap();
        let archive = Archive::open(&image).unwrap();
        assert!(!archive.sb.compressor.supported());
        assert!(matches!(archive.lookup("/etc/hostname"), Err(SquashError::Unsupported(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn damaged_images_give_errors_not_panics() {
    if !have("mksquashfs") {
        return;
    }
    let dir = scratch("damaged");
    let root = dir.join("root");
    sample_tree(&root);
    let image_path = dir.join("image.squashfs");
    mksquashfs(&root, &image_path, "gzip");
    let good = std::fs::read(&image_path).unwrap();
    let start = Archive::open(&good).unwrap().sb.metadata_start() as usize;
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for round in 0..400 {
        let mut bytes = good.clone();
        for _ in 0..(1 + round % 5) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = start + (x as usize % (bytes.len() - start));
            bytes[i] ^= (x >> 40) as u8 | 1;
        }
        if let Ok(archive) = Archive::open(&bytes) {
            for path in ["/sbin/init", "/usr/lib/x86_64-linux-gnu/libbig.so.1", "/many/entry-with-a-longish-name-0599"] {
                if let Ok((_, inode)) = archive.lookup(path) {
                    let _ = archive.extents(&inode);
                    let _ = archive.read_file(&inode, 0, 1 << 20);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

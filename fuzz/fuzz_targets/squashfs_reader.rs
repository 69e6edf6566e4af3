#![no_main]
//! cargo fuzz run squashfs_reader: arbitrary bytes as a SquashFS image. Opening it,
//! listing the root, looking up init (with everything exec of it needs), finding its
//! blocks and reading it must give a result or an error, never panic or hang.
use viver::image::squashfs::{Archive, InodeKind};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(archive) = Archive::open(data) else { return };
    if let Ok(root) = archive.root() {
        if let Ok(entries) = archive.list(&root) {
            for entry in entries.iter().take(64) {
                if let Ok(inode) = archive.inode(entry.inode) {
                    let _ = archive.extents(&inode);
                    if let InodeKind::File { .. } = inode.kind {
                        let _ = archive.read_file(&inode, 0, 1 << 16);
                    }
                }
            }
        }
    }
    let _ = archive.lookup("/sbin/init");
    let _ = viver::image::needs::resolve(&archive, "/sbin/init", |inode| archive.extents(inode).map(|_| ()));
});

//! What a boot-server node serves: the kernel and initrd it booted with, found on its
//! boot medium (where `viver kit media` writes them, on ISO and USB media alike:
//! `/boot/vmlinuz`, `/boot/initrd.img`), else inside the image's `/boot` (read with
//! VIVER's own SquashFS reader, symlinks followed, copied into memory), else an error
//! naming every place looked at. The iPXE binaries come from the medium's
//! `/viver/ipxe/`, else Debian's `/usr/lib/ipxe`.
//!
//! Everything is opened or read here, before the hand-over: the server then serves
//! from these descriptors and bytes and never opens a path again.

use super::files::{Input, Ipxe};
use super::ServeError;
use crate::image::squashfs::{self, Archive, InodeKind, SquashError};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// On the medium (relative to its root).
pub const MEDIUM_KERNEL: &str = "boot/vmlinuz";
pub const MEDIUM_INITRD: &str = "boot/initrd.img";
pub const MEDIUM_IPXE_DIR: &str = "viver/ipxe";
/// Debian's `ipxe` package.
pub const SYSTEM_IPXE_DIR: &str = "/usr/lib/ipxe";
/// Inside the image, in order (Debian keeps `/vmlinuz` and `/initrd.img` symlinks at
/// the root too, or in /boot with `link_in_boot`).
pub const IMAGE_KERNELS: [&str; 2] = ["/boot/vmlinuz", "/vmlinuz"];
pub const IMAGE_INITRDS: [&str; 2] = ["/boot/initrd.img", "/initrd.img"];
/// Larger "kernels" or initrds in an image are refused rather than copied into memory.
const MAX_IN_MEMORY: u64 = 512 << 20;

/// An image file as the SquashFS reader's byte source (pread).
struct ImageFile<'a>(&'a File);

impl squashfs::Source for ImageFile<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SquashError> {
        use std::os::unix::fs::FileExt;
        self.0.read_exact_at(buf, offset).map_err(|e| SquashError::Read { offset, len: buf.len(), message: e.to_string() })
    }
}

pub struct BootFiles {
    pub kernel: Input,
    pub initrd: Input,
}

/// One file from the image: (path looked up, content) or why not.
fn from_image(archive: &Archive<ImageFile>, path: &str) -> Result<(String, Vec<u8>), String> {
    let (resolved, inode) = archive.lookup(path).map_err(|e| e.to_string())?;
    let InodeKind::File { file_size, .. } = &inode.kind else {
        return Err(format!("{resolved} is not a regular file"));
    };
    if *file_size > MAX_IN_MEMORY {
        return Err(format!("{resolved} has {file_size} bytes (more than {MAX_IN_MEMORY})"));
    }
    let bytes = archive.read_file(&inode, 0, *file_size as usize).map_err(|e| e.to_string())?;
    Ok((resolved, bytes))
}

/// Finds the kernel and initrd to serve (see the module doc). `medium` is the boot
/// medium's mount point, if the node booted from one; `image` the open image file
/// (`image_label` names it in messages).
pub fn find(medium: Option<&Path>, image: &File, image_label: &str) -> Result<BootFiles, ServeError> {
    let mut looked = Vec::new();
    if let Some(root) = medium {
        let (kernel, initrd) = (root.join(MEDIUM_KERNEL), root.join(MEDIUM_INITRD));
        match (Input::open("kernel", &kernel), Input::open("initrd", &initrd)) {
            (Ok(kernel), Ok(initrd)) => return Ok(BootFiles { kernel, initrd }),
            (k, i) => {
                for (path, result) in [(&kernel, k.err()), (&initrd, i.err())] {
                    looked.push(format!("{} ({})", path.display(), result.map(|e| e.to_string()).unwrap_or_else(|| "found".into())));
                }
            }
        }
    } else {
        looked.push("no boot medium".to_string());
    }
    let source = ImageFile(image);
    match Archive::open(&source) {
        Err(e) => looked.push(format!("the image {image_label} ({e})")),
        Ok(archive) => {
            let mut pick = |paths: &[&str]| {
                for path in paths {
                    match from_image(&archive, path) {
                        Ok(found) => return Some(found),
                        Err(why) => looked.push(format!("{path} in {image_label} ({why})")),
                    }
                }
                None
            };
            if let (Some((kpath, kernel)), Some((ipath, initrd))) = (pick(&IMAGE_KERNELS), pick(&IMAGE_INITRDS)) {
                log::info!("serve: kernel {kpath} and initrd {ipath} from the image {image_label}");
                return Ok(BootFiles {
                    kernel: Input::bytes(kernel, format!("{kpath} in {image_label}")),
                    initrd: Input::bytes(initrd, format!("{ipath} in {image_label}")),
                });
            }
        }
    }
    Err(ServeError::Missing(format!("no kernel and initrd to serve; looked at: {}", looked.join("; "))))
}

/// Where the iPXE binaries are looked for: the medium's `/viver/ipxe/`, then
/// [`SYSTEM_IPXE_DIR`].
pub fn ipxe_dirs(medium: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = medium.map(|m| m.join(MEDIUM_IPXE_DIR)).into_iter().collect();
    dirs.push(PathBuf::from(SYSTEM_IPXE_DIR));
    dirs
}

/// Everything a boot-server node serves, read or opened now: the image (already
/// open), the kernel and initrd found by [`find`], the manifest if given, the iPXE
/// binaries loaded from [`ipxe_dirs`].
pub fn for_node(
    medium: Option<&Path>,
    image: Arc<File>,
    image_path: &Path,
    manifest: Option<Input>,
    cmdline: String,
) -> Result<super::files::Served, ServeError> {
    let label = image_path.display().to_string();
    let found = find(medium, &image, &label)?;
    Ok(super::files::Served {
        image: Input { source: super::files::Source::Open(image), label },
        image_name: super::files::image_name(image_path),
        kernel: found.kernel,
        initrd: found.initrd,
        manifest,
        ipxe: Ipxe::load(&ipxe_dirs(medium)),
        cmdline,
    })
}

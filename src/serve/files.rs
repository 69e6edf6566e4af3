//! What is served, and under which names: the kernel, the initrd, the image and its
//! manifest (HTTP), the iPXE script (HTTP, generated), the iPXE binaries (TFTP and
//! HTTP). Only these exact names answer: no request path ever reaches the filesystem.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The iPXE binaries looked for in the iPXE directory (Debian's `ipxe` package:
/// /usr/lib/ipxe): BIOS PXE, UEFI with all drivers, UEFI with the firmware's driver.
pub const IPXE_BINARIES: [&str; 3] = ["undionly.kpxe", "ipxe.efi", "snponly.efi"];

pub const SCRIPT_PATH: &str = "/boot.ipxe";
pub const KERNEL_PATH: &str = "/vmlinuz";
pub const INITRD_PATH: &str = "/initrd.img";

/// The bytes behind a URL or TFTP name. Nothing is opened by path once serving has
/// begun: a boot-server node serves from files it opened before switch_root.
#[derive(Clone, Debug)]
pub enum Source {
    /// A whole open file, read with pread (connections share the descriptor).
    Open(Arc<File>),
    /// `len` bytes of an open file from `start` (a file stored uncompressed inside an image).
    Region {
        file: Arc<File>,
        start: u64,
        len: u64,
    },
    Bytes(Arc<Vec<u8>>),
    /// A block device's bytes as VIVER serves them (a netbooted node that took over the
    /// boot server serves the image it reads through V-FIELD: every byte verified).
    Blocks(Blocks),
}

#[derive(Clone)]
pub struct Blocks(pub Arc<dyn crate::nbd::source::BlockSource>);

impl std::fmt::Debug for Blocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blocks({} bytes)", self.0.size())
    }
}

/// A reader over a [`Blocks`] source with its own position.
struct BlockWindow {
    blocks: Blocks,
    pos: u64,
}

impl Read for BlockWindow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.blocks.0.size();
        // One chunk's worth at most per call: a read waits for what it asks.
        let n = (buf.len() as u64).min(size.saturating_sub(self.pos)).min(256 << 10) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.blocks.0.read_at(self.pos, &mut buf[..n]).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlockWindow {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let size = self.blocks.0.size();
        let target = match to {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::End(d) => size.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

/// One thing to serve and what to call it in the report and log.
#[derive(Clone, Debug)]
pub struct Input {
    pub source: Source,
    /// Where it came from, in words (`/run/medium/boot/vmlinuz`, `/boot/vmlinuz in IMAGE`).
    pub label: String,
}

impl Input {
    /// Opens `path` now (a regular file, else an error naming `what`).
    pub fn open(what: &str, path: &Path) -> Result<Input, crate::serve::ServeError> {
        let input = |source| crate::serve::ServeError::Input { what: what.into(), path: path.to_path_buf(), source };
        let file = File::open(path).map_err(input)?;
        let meta = file.metadata().map_err(input)?;
        if !meta.is_file() {
            return Err(input(std::io::Error::other("not a regular file")));
        }
        Ok(Input { source: Source::Open(Arc::new(file)), label: path.display().to_string() })
    }

    pub fn bytes(bytes: Vec<u8>, label: String) -> Input {
        Input { source: Source::Bytes(Arc::new(bytes)), label }
    }

    /// The whole content in memory (TFTP serves from memory).
    pub fn read_all(&self) -> std::io::Result<Arc<Vec<u8>>> {
        if let Source::Bytes(bytes) = &self.source {
            return Ok(bytes.clone());
        }
        let mut body = Resource { source: self.source.clone(), content_type: "", label: String::new() }.open()?;
        let mut out = Vec::with_capacity(body.size as usize);
        body.reader.read_to_end(&mut out)?;
        Ok(Arc::new(out))
    }
}

#[derive(Clone, Debug)]
pub struct Resource {
    pub source: Source,
    pub content_type: &'static str,
    /// For the report and log.
    pub label: String,
}

pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

pub struct Body {
    pub reader: Box<dyn ReadSeek>,
    pub size: u64,
}

/// A window of a shared open file with its own position (pread: no shared offset).
struct FileWindow {
    file: Arc<File>,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for FileWindow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for FileWindow {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

impl Resource {
    pub fn open(&self) -> std::io::Result<Body> {
        match &self.source {
            Source::Open(file) => {
                let size = file.metadata()?.len();
                Ok(Body { reader: Box::new(FileWindow { file: file.clone(), start: 0, len: size, pos: 0 }), size })
            }
            Source::Region { file, start, len } => {
                Ok(Body { reader: Box::new(FileWindow { file: file.clone(), start: *start, len: *len, pos: 0 }), size: *len })
            }
            Source::Bytes(bytes) => Ok(Body { size: bytes.len() as u64, reader: Box::new(Cursor::new(BytesRef(bytes.clone()))) }),
            Source::Blocks(blocks) => Ok(Body { size: blocks.0.size(), reader: Box::new(BlockWindow { blocks: blocks.clone(), pos: 0 }) }),
        }
    }

    pub fn describe(&self) -> String {
        self.label.clone()
    }
}

struct BytesRef(Arc<Vec<u8>>);
impl AsRef<[u8]> for BytesRef {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// URL path -> resource.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    entries: BTreeMap<String, Resource>,
}

impl Catalogue {
    pub fn get(&self, path: &str) -> Option<&Resource> {
        self.entries.get(path)
    }
    pub fn insert(&mut self, path: &str, resource: Resource) {
        self.entries.insert(path.to_string(), resource);
    }
    pub fn paths(&self) -> impl Iterator<Item = (&String, &Resource)> {
        self.entries.iter()
    }
}

/// The image's name in URLs: its file name without `.squashfs`, reduced to
/// characters that need no escaping.
pub fn image_name(image: &Path) -> String {
    let stem = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = stem.strip_suffix(".squashfs").unwrap_or(&stem);
    let clean: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if clean.is_empty() {
        "image".into()
    } else {
        clean
    }
}

/// The iPXE script: kernel and initrd over HTTP, and a command line that makes the
/// client a netbooted VIVER node. `${netX/mac:hexhyp}` is the MAC of the interface
/// iPXE booted from (net0 is only the first one), in the pxelinux `BOOTIF=01-...` form.
pub fn ipxe_script(base: &str, name: &str, extra: &str) -> String {
    let extra = if extra.trim().is_empty() { String::new() } else { format!(" {}", extra.trim()) };
    format!(
        "#!ipxe\n\
         echo VIVER: booting {name} from {base}\n\
         kernel {base}{KERNEL_PATH} initrd=initrd.img viver.net={base}/image/{name}.squashfs BOOTIF=01-${{netX/mac:hexhyp}}{extra}\n\
         initrd {base}{INITRD_PATH}\n\
         boot\n"
    )
}

/// The iPXE binaries: directories to read them from at start (in order: the first
/// that has a binary gives it), or binaries already read (a boot-server node reads
/// them before the hand-over).
#[derive(Clone, Debug)]
pub enum Ipxe {
    Dirs(Vec<PathBuf>),
    Loaded { files: BTreeMap<String, Arc<Vec<u8>>>, missing: Vec<String> },
}

impl Ipxe {
    /// Reads every binary of [`IPXE_BINARIES`] from the first of `dirs` that has it.
    pub fn load(dirs: &[PathBuf]) -> Ipxe {
        let mut files = BTreeMap::new();
        let mut missing = Vec::new();
        for binary in IPXE_BINARIES {
            let found = dirs.iter().find_map(|dir| std::fs::read(dir.join(binary)).ok().map(|bytes| (dir, bytes)));
            match found {
                Some((dir, bytes)) => {
                    log::info!("serve: {binary} from {}", dir.display());
                    files.insert(binary.to_string(), Arc::new(bytes));
                }
                None => {
                    let looked = dirs.iter().map(|d| d.join(binary).display().to_string()).collect::<Vec<_>>().join(", ");
                    log::warn!("serve: no {binary} (looked at {looked}): clients that need it cannot boot");
                    missing.push(binary.to_string());
                }
            }
        }
        Ipxe::Loaded { files, missing }
    }
}

/// What is served.
#[derive(Clone, Debug)]
pub struct Served {
    pub image: Input,
    /// The image's name in URLs ([`image_name`] of its file name).
    pub image_name: String,
    pub kernel: Input,
    pub initrd: Input,
    pub manifest: Option<Input>,
    pub ipxe: Ipxe,
    pub cmdline: String,
}

pub struct Built {
    pub catalogue: Catalogue,
    /// TFTP name -> contents.
    pub tftp: BTreeMap<String, Arc<Vec<u8>>>,
    pub name: String,
    pub script: String,
    /// iPXE binaries not found.
    pub missing: Vec<String>,
}

/// Builds the catalogue for a server reachable at `base` (`http://ADDRESS:PORT`).
/// Missing iPXE binaries are reported (the clients that need them cannot boot) but not
/// fatal.
pub fn build(served: &Served, base: &str) -> Built {
    let mut catalogue = Catalogue::default();
    let resource = |input: &Input, content_type| Resource { source: input.source.clone(), content_type, label: input.label.clone() };
    let name = served.image_name.clone();
    catalogue.insert(KERNEL_PATH, resource(&served.kernel, "application/octet-stream"));
    catalogue.insert(INITRD_PATH, resource(&served.initrd, "application/octet-stream"));
    catalogue.insert(&format!("/image/{name}.squashfs"), resource(&served.image, "application/octet-stream"));
    if let Some(manifest) = &served.manifest {
        catalogue.insert(&format!("/image/{name}.toml"), resource(manifest, "application/toml"));
    }
    let script = ipxe_script(base, &name, &served.cmdline);
    catalogue.insert(
        SCRIPT_PATH,
        Resource {
            source: Source::Bytes(Arc::new(script.clone().into_bytes())),
            content_type: "text/plain",
            label: "generated iPXE script".into(),
        },
    );
    let (tftp, missing) = match &served.ipxe {
        Ipxe::Loaded { files, missing } => (files.clone(), missing.clone()),
        Ipxe::Dirs(dirs) => match Ipxe::load(dirs) {
            Ipxe::Loaded { files, missing } => (files, missing),
            Ipxe::Dirs(_) => (BTreeMap::new(), IPXE_BINARIES.iter().map(|b| b.to_string()).collect()),
        },
    };
    for (binary, bytes) in &tftp {
        catalogue.insert(
            &format!("/ipxe/{binary}"),
            Resource {
                source: Source::Bytes(bytes.clone()),
                content_type: "application/efi",
                label: format!("{binary} ({} bytes in memory)", bytes.len()),
            },
        );
    }
    Built { catalogue, tftp, name, script, missing }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_script() {
        assert_eq!(image_name(Path::new("/x/debian 12.squashfs")), "debian_12");
        assert_eq!(image_name(Path::new("/x/.squashfs")), "image");
        let s = ipxe_script("http://10.0.0.1:80", "deb", "console=ttyS0");
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains(
            "kernel http://10.0.0.1:80/vmlinuz initrd=initrd.img viver.net=http://10.0.0.1:80/image/deb.squashfs BOOTIF=01-${netX/mac:hexhyp} console=ttyS0\n"
        ));
        assert!(s.contains("initrd http://10.0.0.1:80/initrd.img\n"));
    }

    #[test]
    fn a_region_of_an_open_file_reads_and_seeks_within_itself() {
        let path = std::env::temp_dir().join(format!("viver-region-{}", std::process::id()));
        std::fs::write(&path, b"0123456789abcdef").unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
        let r = Resource { source: Source::Region { file, start: 4, len: 6 }, content_type: "", label: String::new() };
        let mut body = r.open().unwrap();
        assert_eq!(body.size, 6);
        let mut s = String::new();
        body.reader.read_to_string(&mut s).unwrap();
        assert_eq!(s, "456789");
        body.reader.seek(std::io::SeekFrom::End(-2)).unwrap();
        s.clear();
        body.reader.read_to_string(&mut s).unwrap();
        assert_eq!(s, "89");
        assert!(body.reader.seek(std::io::SeekFrom::Current(-100)).is_err());
    }

    #[test]
    fn bytes_resource_seeks() {
        let r = Resource { source: Source::Bytes(Arc::new(b"hello".to_vec())), content_type: "text/plain", label: String::new() };
        let mut body = r.open().unwrap();
        assert_eq!(body.size, 5);
        body.reader.seek(std::io::SeekFrom::Start(3)).unwrap();
        let mut s = String::new();
        body.reader.read_to_string(&mut s).unwrap();
        assert_eq!(s, "lo");
    }
}

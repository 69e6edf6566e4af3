//! Device-mapper through its ioctls on /dev/mapper/control (include/uapi/linux/dm-ioctl.h,
//! interface version 4): create a device, load its table, resume it. No libdevmapper,
//! no dmsetup, no udev: /init does this before anything else runs.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// `sizeof(struct dm_ioctl)`.
const DM_IOCTL_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const DM_SPEC_SIZE: usize = 40;
const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
const DM_MAX_TYPE_NAME: usize = 16;
/// Interface major version 4; minor 0 asks for nothing newer than every 4.x kernel has.
const VERSION: [u32; 3] = [4, 0, 0];
const DM_READONLY_FLAG: u32 = 1 << 0;

const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_TABLE_LOAD: u8 = 9;

const CONTROL: &str = "/dev/mapper/control";

#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error("cannot open the device-mapper control device {path}: {source} (is dm_mod loaded?)")]
    Control { path: String, source: std::io::Error },
    #[error("device-mapper {command} for {name}: {source}")]
    Ioctl { command: &'static str, name: String, source: std::io::Error },
    #[error("device-mapper name {0:?} must be 1 to 127 bytes without '/'")]
    Name(String),
    #[error("device-mapper target {target}: its parameters are too long or hold a NUL byte")]
    Params { target: String },
}

/// One line of a table: `length` sectors from `start` mapped by `target` with `params`.
pub struct Target<'a> {
    pub start: u64,
    pub length: u64,
    pub target: &'a str,
    pub params: &'a str,
}

/// A buffer for one ioctl: `struct dm_ioctl`, then the payload. Backed by u64s so the
/// kernel reads the struct's u64 fields aligned.
struct Request {
    words: Vec<u64>,
}

impl Request {
    fn new(name: &str, payload: usize) -> Result<Request, DmError> {
        if name.is_empty() || name.len() >= DM_NAME_LEN || name.contains('/') || name.contains('\0') {
            return Err(DmError::Name(name.to_string()));
        }
        let size = (DM_IOCTL_SIZE + payload).next_multiple_of(8);
        let mut r = Request { words: vec![0; size / 8] };
        for (i, v) in VERSION.iter().enumerate() {
            r.put_u32(i * 4, *v);
        }
        r.put_u32(12, size as u32); // data_size
        r.put_u32(16, DM_IOCTL_SIZE as u32); // data_start
        r.bytes_mut()[48..48 + name.len()].copy_from_slice(name.as_bytes());
        Ok(r)
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: a u64 slice viewed as bytes, same length in bytes, u8 has no alignment.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.words.len() * 8) }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: as above, read-only.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.words.len() * 8) }
    }

    fn put_u32(&mut self, at: usize, v: u32) {
        self.bytes_mut()[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    fn put_u64(&mut self, at: usize, v: u64) {
        self.bytes_mut()[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }

    fn get_u64(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes()[at..at + 8]);
        u64::from_ne_bytes(b)
    }

    fn call(&mut self, control: &File, nr: u8, command: &'static str, name: &str) -> Result<(), DmError> {
        let size = DM_IOCTL_SIZE;
        // _IOWR(0xfd, nr, struct dm_ioctl)
        let request = nix::request_code_readwrite!(0xfd, nr, size);
        // SAFETY: the buffer is at least data_size bytes and lives across the call; the
        // kernel reads data_size bytes and writes at most that many back.
        let rc = unsafe { libc::ioctl(control.as_raw_fd(), request as _, self.words.as_mut_ptr()) };
        if rc < 0 {
            return Err(DmError::Ioctl { command, name: name.to_string(), source: std::io::Error::last_os_error() });
        }
        Ok(())
    }
}

fn control() -> Result<File, DmError> {
    let path = Path::new(CONTROL);
    if !path.exists() {
        // devtmpfs names it mapper/control; make it by hand if /dev is no devtmpfs.
        let _ = make_control_node(path);
    }
    std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|source| DmError::Control { path: CONTROL.into(), source })
}

fn make_control_node(path: &Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string("/sys/class/misc/device-mapper/dev")?;
    let (major, minor) = text.trim().split_once(':').ok_or_else(|| std::io::Error::other("bad dev"))?;
    let (major, minor): (u64, u64) = (major.parse().map_err(std::io::Error::other)?, minor.parse().map_err(std::io::Error::other)?);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        libc::makedev(major as u32, minor as u32),
    )
    .map_err(std::io::Error::from)
}

/// The kernel's `huge_encode_dev` of a device number, decoded.
fn decode_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// A device-mapper device, removed on drop unless [`Device::keep`] was called.
pub struct Device {
    pub name: String,
    pub major: u32,
    pub minor: u32,
    keep: bool,
}

impl Device {
    /// `/dev/dm-N`: devtmpfs creates it; made by hand when it does not show up.
    pub fn node(&self) -> Result<PathBuf, std::io::Error> {
        let path = PathBuf::from(format!("/dev/dm-{}", self.minor));
        for _ in 0..100 {
            if path.exists() {
                return Ok(path);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            libc::makedev(self.major, self.minor),
        )
        .map_err(std::io::Error::from)?;
        Ok(path)
    }

    /// Leave the device in place (it is mounted, or about to be).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if !self.keep {
            let _ = remove(&self.name);
        }
    }
}

/// Creates device `name`, loads `targets` as its table (read-only when `read_only`) and
/// resumes it: the device then serves reads through the table.
pub fn create(name: &str, uuid: &str, targets: &[Target], read_only: bool) -> Result<Device, DmError> {
    let control = control()?;
    let mut create = Request::new(name, 0)?;
    let uuid = &uuid.as_bytes()[..uuid.len().min(DM_UUID_LEN - 1)];
    create.bytes_mut()[176..176 + uuid.len()].copy_from_slice(uuid);
    create.call(&control, DM_DEV_CREATE, "DM_DEV_CREATE", name)?;
    let (major, minor) = decode_dev(create.get_u64(40));
    let device = Device { name: name.to_string(), major, minor, keep: false };

    let mut payload = Vec::new();
    for t in targets {
        if t.target.len() >= DM_MAX_TYPE_NAME || t.params.contains('\0') {
            return Err(DmError::Params { target: t.target.to_string() });
        }
        let spec_len = (DM_SPEC_SIZE + t.params.len() + 1).next_multiple_of(8);
        let mut spec = vec![0u8; spec_len];
        spec[0..8].copy_from_slice(&t.start.to_ne_bytes());
        spec[8..16].copy_from_slice(&t.length.to_ne_bytes());
        // next: from this spec to the next one.
        spec[20..24].copy_from_slice(&(spec_len as u32).to_ne_bytes());
        spec[24..24 + t.target.len()].copy_from_slice(t.target.as_bytes());
        spec[DM_SPEC_SIZE..DM_SPEC_SIZE + t.params.len()].copy_from_slice(t.params.as_bytes());
        payload.extend_from_slice(&spec);
    }
    if payload.len() > (1 << 20) {
        return Err(DmError::Params { target: "table".into() });
    }
    let mut load = Request::new(name, payload.len())?;
    load.put_u32(20, targets.len() as u32); // target_count
    load.put_u32(28, if read_only { DM_READONLY_FLAG } else { 0 });
    load.bytes_mut()[DM_IOCTL_SIZE..DM_IOCTL_SIZE + payload.len()].copy_from_slice(&payload);
    load.call(&control, DM_TABLE_LOAD, "DM_TABLE_LOAD", name)?;

    // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table becomes live.
    let mut resume = Request::new(name, 0)?;
    resume.put_u64(40, 0);
    resume.call(&control, DM_DEV_SUSPEND, "DM_DEV_SUSPEND (resume)", name)?;
    Ok(device)
}

/// Removes device `name` (after a failed set-up).
pub fn remove(name: &str) -> Result<(), DmError> {
    let control = control()?;
    Request::new(name, 0)?.call(&control, DM_DEV_REMOVE, "DM_DEV_REMOVE", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_header_is_laid_out_as_the_kernel_reads_it() {
        let r = Request::new("viver-image", 48).unwrap();
        let b = r.bytes();
        assert_eq!(b.len(), 312 + 48);
        assert_eq!(&b[0..4], &4u32.to_ne_bytes());
        assert_eq!(&b[12..16], &(360u32).to_ne_bytes());
        assert_eq!(&b[16..20], &(312u32).to_ne_bytes());
        assert_eq!(&b[48..59], b"viver-image");
        assert!(Request::new("a/b", 0).is_err());
        assert!(Request::new(&"x".repeat(128), 0).is_err());
        assert_eq!(nix::request_code_readwrite!(0xfd, DM_DEV_CREATE, DM_IOCTL_SIZE), 0xc138fd03);
    }

    #[test]
    fn device_numbers_decode() {
        // new_encode_dev(MKDEV(254, 3)) and a minor above 255.
        assert_eq!(decode_dev((254 << 8) | 3), (254, 3));
        assert_eq!(decode_dev((254 << 8) | 0x34 | (0x12 << 20)), (254, 0x1234));
    }
}

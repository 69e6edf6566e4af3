//! What a boot-server node serves, found the way the daemon will find it: the kernel and
//! initrd on the boot medium, else inside a real SquashFS image (mksquashfs, Debian's
//! symlinks /boot/vmlinuz -> vmlinuz-RELEASE), else an error naming every place; then
//! the library entry point serving them on 127.0.0.1 from descriptors opened before
//! the files were removed from disk (a node serves after switch_root), and stopping.

mod net;

use net::{free_port, random_bytes, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use viver::serve::{boot_files, files, ServeConfig, Stop};

fn squashfs(root: &Path, out: &Path) {
    let status = Command::new("mksquashfs")
        .arg(root)
        .arg(out)
        .args(["-noappend", "-quiet", "-no-progress", "-comp", "xz", "-all-root"])
        .status()
        .expect("mksquashfs (squashfs-tools)");
    assert!(status.success());
}

struct Lab {
    dir: PathBuf,
    image: PathBuf,
    kernel: Vec<u8>,
    initrd: Vec<u8>,
}

fn lab(name: &str) -> Lab {
    let dir = scratch(name);
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("boot")).unwrap();
    let kernel = random_bytes(1_500_001, 11);
    let initrd = random_bytes(700_000, 12);
    std::fs::write(root.join("boot/vmlinuz-6.1.0-test"), &kernel).unwrap();
    std::fs::write(root.join("boot/initrd.img-6.1.0-test"), &initrd).unwrap();
    std::os::unix::fs::symlink("vmlinuz-6.1.0-test", root.join("boot/vmlinuz")).unwrap();
    std::os::unix::fs::symlink("boot/initrd.img-6.1.0-test", root.join("initrd.img")).unwrap();
    let image = dir.join("lan.squashfs");
    squashfs(&root, &image);
    Lab { dir, image, kernel, initrd }
}

fn bytes_of(input: &files::Input) -> Vec<u8> {
    input.read_all().unwrap().to_vec()
}

#[test]
fn kernel_and_initrd_come_from_the_image_when_no_medium_has_them() {
    let lab = lab("boot-files-image");
    let image = std::fs::File::open(&lab.image).unwrap();
    let found = boot_files::find(None, &image, "lan.squashfs").unwrap();
    assert_eq!(bytes_of(&found.kernel), lab.kernel);
    assert_eq!(bytes_of(&found.initrd), lab.initrd);
    assert!(found.kernel.label.contains("vmlinuz-6.1.0-test in lan.squashfs"), "{}", found.kernel.label);

    // A medium without them is looked at first, then the image.
    let medium = lab.dir.join("medium");
    std::fs::create_dir_all(medium.join("boot")).unwrap();
    let found = boot_files::find(Some(&medium), &image, "lan.squashfs").unwrap();
    assert_eq!(bytes_of(&found.kernel), lab.kernel);

    // The medium's own files win.
    std::fs::write(medium.join(boot_files::MEDIUM_KERNEL), b"medium kernel").unwrap();
    std::fs::write(medium.join(boot_files::MEDIUM_INITRD), b"medium initrd").unwrap();
    let found = boot_files::find(Some(&medium), &image, "lan.squashfs").unwrap();
    assert_eq!(bytes_of(&found.kernel), b"medium kernel");
    assert_eq!(found.initrd.label, medium.join("boot/initrd.img").display().to_string());
}

#[test]
fn nothing_found_names_every_place_looked_at() {
    let dir = scratch("boot-files-none");
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"x\n").unwrap();
    let image = dir.join("empty.squashfs");
    squashfs(&root, &image);
    let medium = dir.join("medium");
    std::fs::create_dir_all(&medium).unwrap();
    let file = std::fs::File::open(&image).unwrap();
    let err = boot_files::find(Some(&medium), &file, "empty.squashfs").err().expect("an error").to_string();
    for place in ["medium/boot/vmlinuz", "medium/boot/initrd.img", "/boot/vmlinuz in empty.squashfs", "/vmlinuz in empty.squashfs"] {
        assert!(err.contains(place), "{place} missing from: {err}");
    }
    assert!(err.contains("/initrd.img in empty.squashfs"), "{err}");
    // Not a SquashFS at all.
    let junk = dir.join("junk.img");
    std::fs::write(&junk, random_bytes(8192, 1)).unwrap();
    let err = boot_files::find(None, &std::fs::File::open(&junk).unwrap(), "junk.img").err().expect("an error").to_string();
    assert!(err.contains("no boot medium") && err.contains("the image junk.img"), "{err}");
}

fn curl(url: &str) -> Vec<u8> {
    let out = Command::new("curl").args(["-sf", "--max-time", "10", url]).output().expect("curl");
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn library_entry_point_serves_from_open_files_and_stops() {
    let lab = lab("boot-files-serve");
    let medium = lab.dir.join("medium");
    std::fs::create_dir_all(medium.join(boot_files::MEDIUM_IPXE_DIR)).unwrap();
    let ipxe = random_bytes(70_000, 21);
    std::fs::write(medium.join(boot_files::MEDIUM_IPXE_DIR).join("undionly.kpxe"), &ipxe).unwrap();
    let image = Arc::new(std::fs::File::open(&lab.image).unwrap());
    let served = boot_files::for_node(Some(&medium), image, &lab.image, None, "console=ttyS0".into()).unwrap();
    // After the hand-over the paths are gone: everything must come from what is open.
    std::fs::remove_dir_all(&medium).unwrap();
    let image_bytes = std::fs::read(&lab.image).unwrap();
    std::fs::remove_file(&lab.image).unwrap();

    let http_port = free_port();
    let config = ServeConfig {
        served,
        interface: None,
        address: Some(std::net::Ipv4Addr::LOCALHOST),
        auto_address: false,
        address_wait: Duration::from_secs(1),
        dhcp: viver::serve::dhcp::probe::Setting::Off,
        range: None,
        router: None,
        lease_secs: 3600,
        state_dir: lab.dir.join("state"),
        http_port,
        tftp_port: free_port(),
        survey_wait: Duration::from_millis(100),
        survey_interval: Duration::from_secs(60),
        http_limits: Default::default(),
        vfield_port: None,
    };
    let stop = Stop::new();
    let running = viver::serve::start(config, stop.clone()).unwrap();
    let base = format!("http://127.0.0.1:{http_port}");
    assert_eq!(curl(&format!("{base}/vmlinuz")), lab.kernel);
    assert_eq!(curl(&format!("{base}/initrd.img")), lab.initrd);
    assert_eq!(curl(&format!("{base}/image/lan.squashfs")), image_bytes);
    assert_eq!(curl(&format!("{base}/ipxe/undionly.kpxe")), ipxe);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&running.report).unwrap()).unwrap();
    // undionly.kpxe from the medium (the bytes above); the others from /usr/lib/ipxe if
    // the ipxe package is installed, else reported missing.
    assert!(report["tftp_files"].as_array().unwrap().iter().any(|f| f == "undionly.kpxe"), "{report:#}");
    let missing = report["missing_ipxe"].as_array().unwrap();
    for binary in ["ipxe.efi", "snponly.efi"] {
        let system = Path::new(boot_files::SYSTEM_IPXE_DIR).join(binary).is_file();
        assert_eq!(missing.iter().any(|m| m == binary), !system, "{binary}: {report:#}");
    }
    assert_eq!(report["dhcp"]["mode"], "off");
    let sources: Vec<&str> = report["files"].as_array().unwrap().iter().filter_map(|f| f["source"].as_str()).collect();
    assert!(sources.iter().any(|s| s.contains("vmlinuz-6.1.0-test in")), "{sources:?}");

    let t = Instant::now();
    running.stop();
    assert!(t.elapsed() < Duration::from_secs(3), "stop took {:?}", t.elapsed());
    assert!(std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err(), "HTTP still listening after stop");
}

//! What a medium's `viver.conf` may do, and which image wins, as a person would check
//! it: a real boot under QEMU, the booted root's `/run/viver/boot.json` and mount table.
//!
//! - A medium's file counts from the moment it is read: its `timeout`, `settle`,
//!   `media_wait` for the rest of the search, its `modules` loaded at once.
//! - It may keep changes on the medium itself, never on another device, and may not set
//!   what is decided before any medium can be read (`blacklist`, `parallel`, `break`).
//! - A newer build on a slower medium does not take over: the named image first (the kit's
//!   media name theirs), else the fastest medium's.

mod qemu;

use qemu::{SerialLog, Vm};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

struct Artifacts {
    initrd: PathBuf,
    /// `viver/testroot.squashfs` + `.toml`.
    layout: PathBuf,
    id: String,
    /// A different image, built later than the test root's (`viver/other.squashfs`).
    newer_layout: PathBuf,
    newer_id: String,
    dir: PathBuf,
}

fn manifest(path: &Path) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let dir = qemu::temp_dir("media-conf-artifacts");
        let (initrd, layout) = qemu::kit_initrd_and_testroot_layout(&dir);
        let first = manifest(&layout.join("viver/testroot.toml"));
        let id = first["id"].as_str().unwrap().to_string();
        let created = first["created"].as_integer().unwrap();

        let newer_root = dir.join("newer-root");
        qemu::run_ok(Command::new("cp").arg("-a").arg(qemu::testroot_dir()).arg(&newer_root));
        std::fs::write(newer_root.join("etc/which-image"), "newer\n").unwrap();
        let newer_layout = dir.join("newer-layout");
        let newer = newer_layout.join("viver/other.squashfs");
        std::fs::create_dir_all(newer.parent().unwrap()).unwrap();
        qemu::run_ok(
            Command::new(qemu::viver_bin())
                .args(["kit", "image"])
                .arg(&newer_root)
                .arg("-o")
                .arg(&newer)
                .args(["--name", "other"])
                .env("SOURCE_DATE_EPOCH", (created + 86_400).to_string()),
        );
        let newer_manifest = manifest(&newer.with_extension("toml"));
        assert!(newer_manifest["created"].as_integer().unwrap() > created, "the second image must be the newer one");
        let newer_id = newer_manifest["id"].as_str().unwrap().to_string();
        Artifacts { initrd, layout, id, newer_layout, newer_id, dir }
    })
}

/// A copy of `layout` with `viver.conf` at the medium's root.
fn layout_with_conf(name: &str, layout: &Path, conf: &str) -> PathBuf {
    let out = artifacts().dir.join(name);
    if out.exists() {
        std::fs::remove_dir_all(&out).unwrap();
    }
    qemu::run_ok(Command::new("cp").arg("-a").arg(layout).arg(&out));
    std::fs::write(out.join("viver.conf"), conf).unwrap();
    out
}

fn disk(test: &str, kind: &str, dir: &Path, label: Option<&str>) -> PathBuf {
    let out = qemu::target_dir().join("qemu-tmp").join(format!("{test}-{kind}.img"));
    let mut args = vec![kind, dir.to_str().unwrap(), out.to_str().unwrap(), "--mbr"];
    if let Some(label) = label {
        args.extend(["--label", label]);
    }
    qemu::mkdisk_ok(&args);
    out
}

fn vm(test: &str) -> Vm {
    Vm::new(test).kernel(qemu::kernel()).initrd(&artifacts().initrd).memory_mb(768)
}

fn boot_ok(vm: Vm) -> (SerialLog, Value) {
    let log = vm.run(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("VIVER-TESTROOT-UP"), "the test root never started:\n{}", log.tail(60));
    let report = log.boot_json().unwrap_or_else(|e| panic!("{e}\n{}", log.tail(60)));
    (log, report)
}

fn problems(report: &Value) -> Vec<String> {
    report["problems"].as_array().unwrap().iter().filter_map(|p| p.as_str().map(String::from)).collect()
}

#[test]
fn a_mediums_conf_tunes_the_search_and_is_refused_what_it_may_not_set() {
    let a = artifacts();
    let conf = "timeout = 45\nsettle = 0.4\nmedia_wait = 0\nmodules = [\"e1000\"]\n\
                blacklist = [\"e1000e\"]\nparallel = false\nbreak = \"image\"\ncow = \"LABEL=DATA:/cow\"\n";
    let medium = disk("mconf", "ext4", &layout_with_conf("mconf-layout", &a.layout, conf), None);
    // The machine's own disk, which the stick's file names for its writes.
    let data_dir = a.dir.join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("precious"), "the owner's data\n").unwrap();
    let data = disk("mconf-data", "ext4", &data_dir, Some("DATA"));
    let data_before = std::fs::read(&data).unwrap();

    let (log, report) = boot_ok(vm("mconf").disk_virtio(&medium).disk_virtio(&data));
    let settings = &report["settings"];
    assert_eq!(settings["timeout"].as_f64(), Some(45.0), "{settings}");
    assert_eq!(settings["settle"].as_f64(), Some(0.4), "{settings}");
    assert_eq!(settings["media_wait"].as_f64(), Some(0.0), "{settings}");
    assert_eq!(settings["origins"]["timeout"], "/dev/vda1:/viver.conf key timeout", "{settings}");
    // The module it named was loaded, because of it.
    let loaded = report["hardware"]["loaded"].as_array().unwrap();
    let e1000 = loaded.iter().find(|l| l["module"] == "e1000").unwrap_or_else(|| panic!("e1000 not loaded: {loaded:?}"));
    assert!(e1000["error"].is_null(), "{e1000}");
    assert_eq!(e1000["reason"], "/dev/vda1:/viver.conf key modules");
    // Refused, each with its reason; nothing of them took effect.
    let problems = problems(&report);
    for key in ["blacklist", "parallel", "break"] {
        assert!(
            problems.iter().any(|p| p.contains(&format!("key {key}: refused, a medium's viver.conf may not set {key}"))),
            "{key} not refused: {problems:?}"
        );
    }
    assert!(problems.iter().any(|p| p.contains("key cow: refused") && p.contains("another device")), "cow not refused: {problems:?}");
    assert_eq!(settings["parallel"], true);
    assert!(report["cow"].as_str().unwrap_or_default().starts_with("tmpfs"), "{}", report["cow"]);
    // The other disk was never mounted writable (if the search looked at it at all), and
    // its bytes are unchanged.
    for mount in log.mounts().iter().filter(|m| m.device == "/dev/vdb1") {
        assert!(mount.options.split(',').any(|o| o == "ro"), "{mount:?}");
    }
    assert!(log.contains("WRITE-OK"), "{}", log.tail(30));
    assert_eq!(std::fs::read(&data).unwrap(), data_before, "the machine's disk was written to");
}

#[test]
fn a_mediums_conf_may_keep_changes_on_the_medium_itself() {
    let a = artifacts();
    let medium = disk("mconf-cow", "ext4", &layout_with_conf("mconf-cow-layout", &a.layout, "cow = \"LABEL=viver:/cow\"\n"), None);
    let (log, report) = boot_ok(vm("mconf-cow-1").disk_virtio(&medium));
    assert_eq!(log.line_after("PERSIST: ").as_deref(), Some("none"));
    assert!(report["cow"].as_str().unwrap_or_default().starts_with("persistent"), "{}", report["cow"]);
    assert_eq!(report["settings"]["cow"]["device"], "/dev/vda1", "pinned to the medium's own device");
    let (log, _) = boot_ok(vm("mconf-cow-2").disk_virtio(&medium));
    assert_eq!(log.line_after("PERSIST: ").as_deref(), Some("boot-1"));
}

#[test]
fn a_newer_image_on_a_slower_disk_does_not_take_over_the_boot() {
    let a = artifacts();
    let hdd = disk("newer", "ext4", &a.layout, None);
    // The newer build on a SATA disk: slower than virtio, but there from the controller's
    // own probe, so it is weighed (a USB stick that shows up after the search is not).
    let sata = disk("newer-sata", "ext4", &a.newer_layout, None);
    // An empty NVMe disk: its controller could bring a faster medium than virtio, so the
    // search cannot end early and weighs every copy.
    let nvme_dir = a.dir.join("empty");
    std::fs::create_dir_all(&nvme_dir).unwrap();
    let nvme = disk("newer-nvme", "ext4", &nvme_dir, None);
    let (log, report) =
        boot_ok(vm("newer").disk_virtio(&hdd).disk_ahci(&sata).disk_nvme(&nvme).append("testroot.cmd=cat,/etc/which-image"));
    assert_eq!(report["image"]["id"], a.id.as_str(), "{}", report["image"]);
    assert_eq!(report["image"]["media"], "virtio");
    assert!(!log.contains("\nnewer"), "the newer image was booted:\n{}", log.tail(20));
    let ids: Vec<&str> = report["candidates"].as_array().unwrap().iter().filter_map(|c| c["id"].as_str()).collect();
    assert!(ids.contains(&a.newer_id.as_str()), "the newer copy was not weighed: {ids:?}");

    // The image the boot names (as the kit's media do, by id) wins wherever it is.
    let (log, report) = boot_ok(
        vm("newer-named")
            .disk_virtio(&hdd)
            .disk_ahci(&sata)
            .append(&format!("viver.image={} testroot.cmd=cat,/etc/which-image", a.newer_id)),
    );
    assert_eq!(report["image"]["id"], a.newer_id.as_str());
    assert_ne!(report["image"]["media"], "virtio");
    assert!(log.contains("\nnewer"), "{}", log.tail(20));
}

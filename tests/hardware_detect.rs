//! The detector's logic with an injected loader (the host kernel cannot load
//! modules): ordering, parallel scheduling, blacklist, params, once-only, builtins,
//! failures, settling, unmatched modaliases.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use viver::hardware::detect::{DetectOptions, Detector, Settled};
use viver::hardware::loader::LoadModule;
use viver::hardware::{HwError, ModuleTables};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hardware").join(name)
}

#[derive(Default)]
struct FakeLoader {
    calls: Mutex<Vec<(String, String, Instant)>>,
    delay: Duration,
    /// Loads running now, and the most that ever ran at once.
    in_flight: std::sync::atomic::AtomicUsize,
    most_at_once: std::sync::atomic::AtomicUsize,
}

impl LoadModule for FakeLoader {
    fn load(&self, module: &str, _path: &Path, params: &str) -> Result<(), HwError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most_at_once.fetch_max(now, SeqCst);
        std::thread::sleep(self.delay);
        self.in_flight.fetch_sub(1, SeqCst);
        self.calls.lock().unwrap().push((module.to_string(), params.to_string(), Instant::now()));
        match module {
            "broken" => Err(HwError::LoadFailed { module: module.into(), errno: nix::errno::Errno::ENOEXEC }),
            "already" => Err(HwError::LoadFailed { module: module.into(), errno: nix::errno::Errno::EEXIST }),
            _ => Ok(()),
        }
    }
}

fn fake_sysfs(tag: &str, devices: &[(&str, &str)]) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("sysfs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (dev, alias) in devices {
        let d = root.join("devices").join(dev);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("modalias"), format!("{alias}\n")).unwrap();
    }
    std::fs::create_dir_all(root.join("devices")).unwrap();
    root
}

fn opts(sysfs: PathBuf) -> DetectOptions {
    let mut o = DetectOptions::new(fixture("mini"), sysfs);
    o.quiet = Duration::from_millis(100);
    o.cap = Duration::from_secs(10);
    o
}

const AHCI: &str = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01";
const E1000: &str = "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00";
const XHCI: &str = "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30";

#[test]
fn coldplug_loads_deps_first_each_module_once() {
    let sysfs = fake_sysfs(
        "order",
        &[
            ("pci0000:00/0000:00:1f.2", AHCI),
            ("pci0000:00/0000:00:1f.3", AHCI), // same modalias twice: handled once
            ("pci0000:00/0000:00:02.0", E1000),
            ("pci0000:00/0000:00:04.0", XHCI),
            ("pci0000:00/0000:00:05.0", "pci:v0000DEADd00000001sv00000000sd00000000bc00sc00i00"),
            ("pci0000:00/0000:00:06.0", "pci:v0000BEEFd00000001sv00000000sd00000000bc00sc00i00"),
            ("platform/i8042/serio0", "serio:ty01pr00id00ex00"),
            ("pnp0/00:02", "acpi:PNP0303:"),
        ],
    );
    let (tables, _) = ModuleTables::load(&fixture("mini")).unwrap();
    let loader = Arc::new(FakeLoader { delay: Duration::from_millis(5), ..Default::default() });
    let mut o = opts(sysfs);
    o.params.insert("e1000".into(), "debug=1".into());
    let det = Detector::start_with(o, tables, loader.clone(), None);
    assert_eq!(det.wait_settled(), Settled::Quiet);

    let calls = loader.calls.lock().unwrap().clone();
    let names: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    let pos = |m: &str| names.iter().position(|n| *n == m).unwrap_or_else(|| panic!("{m} not loaded: {names:?}"));
    assert!(pos("scsi_mod") < pos("libata") && pos("libata") < pos("libahci") && pos("libahci") < pos("ahci"));
    assert!(pos("xhci_hcd") < pos("xhci_pci"));
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "a module loaded twice: {names:?}");
    assert_eq!(calls.iter().find(|c| c.0 == "e1000").unwrap().1, "debug=1");

    let report = det.report();
    assert_eq!(report.unmatched, vec!["serio:ty01pr00id00ex00".to_string()]);
    assert!(report.builtin_skipped.contains(&"atkbd_builtin".to_string()));
    let broken = report.loaded.iter().find(|r| r.module == "broken").unwrap();
    assert!(broken.error.as_deref().unwrap().contains("ENOEXEC"), "{broken:?}");
    assert!(report.loaded.iter().find(|r| r.module == "already").unwrap().error.is_none(), "EEXIST counts as success");
    assert_eq!(report.modaliases, 7);
}

#[test]
fn blacklist_and_force_load_from_cmdline() {
    let sysfs = fake_sysfs("blacklist", &[("pci0000:00/0000:00:02.0", E1000), ("pci0000:00/0000:00:1f.2", AHCI)]);
    let (tables, _) = ModuleTables::load(&fixture("mini")).unwrap();
    let loader = Arc::new(FakeLoader::default());
    let mut o = opts(sysfs);
    o.apply_cmdline(
        "quiet root=/dev/x modprobe.blacklist=e1000,foo viver.modules=usb-storage ahci.mobile_lpm_policy=1 libata.force=\"1:noncq 2:udma\"",
    );
    assert_eq!(o.params.get("libata").map(String::as_str), Some("force=\"1:noncq 2:udma\""));
    let det = Detector::start_with(o, tables, loader.clone(), None);
    assert_eq!(det.wait_settled(), Settled::Quiet);
    let calls = loader.calls.lock().unwrap().clone();
    let names: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    assert!(!names.contains(&"e1000"), "{names:?}");
    assert!(names.contains(&"usb_storage"));
    assert_eq!(calls.iter().find(|c| c.0 == "ahci").unwrap().1, "mobile_lpm_policy=1");
    assert_eq!(det.report().blacklisted, vec!["e1000".to_string()]);
}

#[test]
fn load_module_by_alias_waits_and_handles_softdeps() {
    let sysfs = fake_sysfs("explicit", &[]);
    let (tables, _) = ModuleTables::load(&fixture("mini")).unwrap();
    let loader = Arc::new(FakeLoader::default());
    let det = Detector::start_with(opts(sysfs), tables, loader.clone(), None);
    let g = det.generation();
    det.load_module("fs-ext4").unwrap();
    assert!(det.generation() > g);
    let names: Vec<String> = loader.calls.lock().unwrap().iter().map(|c| c.0.clone()).collect();
    assert_eq!(names, vec!["jbd2".to_string(), "ext4".to_string()]);
    assert!(det.report().builtin_skipped.contains(&"crc32c_generic".to_string()), "softdep crc32c is builtin");
    assert!(det.load_module("no-such-thing").is_err());
    assert!(det.load_module("broken").is_err());
    det.load_module("ext4").unwrap();
    assert_eq!(loader.calls.lock().unwrap().len(), 3, "ext4 not loaded twice");
}

#[test]
fn independent_modules_load_in_parallel() {
    let sysfs = fake_sysfs("parallel", &[("a", AHCI), ("b", E1000), ("c", XHCI)]);
    let (tables, _) = ModuleTables::load(&fixture("mini")).unwrap();
    let loader = Arc::new(FakeLoader { delay: Duration::from_millis(150), ..Default::default() });
    let det = Detector::start_with(opts(sysfs), tables, loader.clone(), None);
    det.wait_settled();
    // 7 loads of 150 ms each; the three devices' drivers do not depend on each other,
    // so more than one load must have been in progress at some moment (no clock read).
    assert_eq!(loader.calls.lock().unwrap().len(), 7);
    let most = loader.most_at_once.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most >= 2, "loads never overlapped (at most {most} at once): modules were loaded one at a time");
}

#[test]
fn settling_is_capped() {
    let sysfs = fake_sysfs("cap", &[("a", AHCI)]);
    let (tables, _) = ModuleTables::load(&fixture("mini")).unwrap();
    let loader = Arc::new(FakeLoader { delay: Duration::from_millis(400), ..Default::default() });
    let mut o = opts(sysfs);
    o.cap = Duration::from_millis(200);
    o.parallel = false;
    let det = Detector::start_with(o, tables, loader, None);
    assert_eq!(det.wait_settled(), Settled::Capped);
}

#[test]
fn malformed_tables_warn_with_file_and_line_and_go_on() {
    let (tables, warnings) = ModuleTables::load(&fixture("bad")).unwrap();
    let text: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    let has = |needle: &str| text.iter().any(|w| w.contains(needle));
    assert!(has("modules.dep:2:"), "{text:#?}");
    assert!(has("modules.dep:4:"), "{text:#?}");
    assert!(has("missing.ko"), "{text:#?}");
    assert!(has("modules.dep:6:"), "{text:#?}");
    assert!(has("modules.alias:3:") && has("modules.alias:4:") && has("modules.alias:5:"), "{text:#?}");
    assert!(has("modules.pcimap:3:") && has("modules.pcimap:4:"), "{text:#?}");
    assert!(has("modules.usbmap:2:"), "{text:#?}");
    assert_eq!(tables.resolve("pci:v1d2"), vec!["a".to_string()]);
    assert_eq!(tables.load_order("a"), vec!["b".to_string(), "a".to_string()]);
    let _ = HashMap::<String, String>::new();
}

#[test]
fn devices_appearing_without_uevent_are_found_before_settling() {
    let sysfs = fake_sysfs("late", &[("a", AHCI)]);
    let (tables, _) = ModuleTables::load(&fixture("mini")).unwrap();
    let loader = Arc::new(FakeLoader { delay: Duration::from_millis(50), ..Default::default() });
    let det = Detector::start_with(opts(sysfs.clone()), tables, loader.clone(), None);
    // A disk shows up behind the controller while its driver loads (no uevent socket here).
    let d = sysfs.join("devices/a/host0/target0:0:0/0:0:0:0");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("modalias"), "scsi:t-0x00\n").unwrap();
    assert_eq!(det.wait_settled(), Settled::Quiet);
    assert!(loader.calls.lock().unwrap().iter().any(|c| c.0 == "sd_mod"));
}
